"""The drainer: captures queued hook events into the store, in the background.

Started detached by a git hook as ``python -m lmm_cli.capture.drain STORE_DIR``. At most one runs at
a time (the capture lock); a second one exits at once. After releasing the lock it looks at the
queue once more and takes the lock again if an event arrived meanwhile: together with the hooks'
order (queue first, then check for a live drainer) no event waits for a next commit to be captured.

It logs to ``logs/drain.log`` (times, counts, errors; never captured text) and exits 0.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..workspace import Workspace
from . import queue as q
from .lock import CaptureLock

__all__ = ["drain", "DrainResult", "main"]

MAX_EVENTS_PER_BATCH = 2000
WAIT_FOR_WRITERS = 2.0  # seconds a drainer waits for a hook to finish writing its event
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass
class DrainResult:
    events: int = 0
    commits: int = 0
    bad: int = 0
    waiting: int = 0  # events a hook was still writing at the last look
    ran: bool = False


def _log(ws: Workspace, msg: str) -> None:
    try:
        ws.logs.mkdir(exist_ok=True)
        with open(ws.logs / "drain.log", "a", encoding="utf-8") as f:
            f.write(f"{time.time():.6f} {os.getpid()} {msg}\n")
    except OSError:
        pass


def _process(ws: Workspace, db: sqlite3.Connection, paths: list[Path], result: DrainResult) -> None:
    from .ingest import capture_commits, record_checkout, record_rewrite

    events: list[q.Event] = []
    for p in paths:
        try:
            events.append(q.read_event(p))
        except FileNotFoundError:
            continue
        except q.NotReady:
            result.waiting += 1
            continue
        except (ValueError, OSError, UnicodeError):
            q.quarantine(p)
            result.bad += 1
            _log(ws, f"bad-event {p.name}")
    if not events:
        return
    wanted: list[str] = []
    for ev in events:
        if ev.head:
            wanted.append(ev.head)
        if ev.hook == "post-rewrite":
            for line in ev.stdin:
                wanted.extend(line.split()[:2])
        elif ev.hook == "post-checkout" and len(ev.args) >= 2:
            wanted.append(ev.args[1])
    wanted = [w for w in dict.fromkeys(wanted) if _SHA.fullmatch(w) and set(w) != {"0"}]
    result.commits += capture_commits(ws, db, wanted, capture="hook").new
    db.execute("BEGIN IMMEDIATE")
    try:
        for ev in events:
            if ev.hook == "post-rewrite":
                kind = ev.args[0] if ev.args else "rewrite"
                pairs = [tuple(line.split()[:2]) for line in ev.stdin if len(line.split()) >= 2]
                record_rewrite(db, ev.id, kind, pairs, ev.ts)  # type: ignore[arg-type]
            elif ev.hook == "post-checkout" and len(ev.args) >= 3 and ev.args[2] == "1":
                record_checkout(db, ev.id, ev.args[0], ev.args[1], ev.ref, ev.cwd, ev.ts)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    # Only now, with everything committed, do the events leave the queue.
    for ev in events:
        q.remove(ev.path)
    result.events += len(events)


def _refresh_indexes(ws: Workspace, db: sqlite3.Connection) -> None:
    """Bring the code index and embeddings up to date after new commits (incremental: only what
    changed is re-parsed or embedded). A failure here is logged; the capture itself stands."""
    try:
        from ..core import build

        # Embeddings only where the store already has them: `init --no-embed` stays that way.
        build(ws, db, embed=db.execute("SELECT 1 FROM vectors LIMIT 1").fetchone() is not None)
    except Exception as e:  # noqa: BLE001 - recall rebuilds what is missing; never lose the drain
        _log(ws, f"index-error {type(e).__name__}: {str(e)[:200]}")


def drain(ws: Workspace, *, wait: float = 0.0) -> DrainResult:
    """Capture everything queued. Returns at once (ran=False) if another drainer holds the lock,
    unless ``wait`` seconds are given to wait for it."""
    result = DrainResult()
    lock = CaptureLock(ws.dir)
    while True:
        if not q.pending(ws.queue) or (result.ran and result.waiting):
            return result
        if not lock.acquire(wait):
            return result
        result.ran = True
        _log(ws, "start")
        try:
            db = ws.connect()
            try:
                deadline = time.monotonic() + WAIT_FOR_WRITERS
                while batch := q.pending(ws.queue)[:MAX_EVENTS_PER_BATCH]:
                    result.waiting = 0
                    _process(ws, db, batch, result)
                    if result.waiting and len(batch) == result.waiting:
                        # Only half-written events left: their hooks finish in microseconds,
                        # unless they died, and then the events wait for STALE_SECONDS.
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.01)
                if result.events:
                    _refresh_indexes(ws, db)
                if result.commits:
                    from ..bench.autotune import maybe_start

                    if maybe_start(ws, db):
                        _log(ws, "tune-started")
            finally:
                db.close()
            _log(ws, f"end events={result.events} commits={result.commits} bad={result.bad}")
        except BaseException as e:
            _log(ws, f"error {type(e).__name__}: {str(e)[:300]}")
            raise
        finally:
            lock.release()
        wait = 0.0  # the recheck only takes a free lock; a busy one means another drainer runs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        return 0
    try:
        os.setsid()  # own session: a terminal's hangup or Ctrl-C in the git command never reaches us
    except OSError:
        pass
    try:
        os.nice(10)
    except OSError:
        pass
    store = Path(argv[0])
    try:
        from ..workspace import workspace_from_store

        ws = workspace_from_store(store)
        drain(ws)
    except Exception:
        try:
            with open(store / "logs" / "drain.log", "a", encoding="utf-8") as f:
                f.write(f"{time.time():.6f} {os.getpid()} crash {traceback.format_exc(limit=3)!r}\n")
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
