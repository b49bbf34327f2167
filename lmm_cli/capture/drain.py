"""Draining the hook queue: captures queued hook events into the store.

Run in the background by ``jobs.drain`` (started detached by a git hook), and by `lmm init` and
`lmm ingest` for events queued while they held the lock. At most one drainer runs at a time (the
capture lock); a second one returns at once. After releasing the lock it looks at the queue once
more and takes the lock again if an event arrived meanwhile: together with the hooks' order (queue
first, then check for a live drainer) no event waits for a next commit to be captured.

What follows a capture (refreshing the indexes, maybe starting a fit) is the caller's ``after``:
capture does not know the stages above it. It logs to ``logs/drain.log`` (times, counts, errors;
never captured text).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..store.db import transaction
from ..store.lock import CaptureLock
from ..store.logs import append
from ..workspace import Workspace
from . import queue as q

__all__ = ["drain", "DrainResult", "After"]

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
    append(ws.dir, "drain", msg)


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
    with transaction(db):
        for ev in events:
            if ev.hook == "post-rewrite":
                kind = ev.args[0] if ev.args else "rewrite"
                pairs = [(p[0], p[1]) for p in (line.split() for line in ev.stdin) if len(p) >= 2]
                record_rewrite(db, ev.id, kind, pairs, ev.ts)
            elif ev.hook == "post-checkout" and len(ev.args) >= 3 and ev.args[2] == "1":
                record_checkout(db, ev.id, ev.args[0], ev.args[1], ev.ref, ev.cwd, ev.ts)
    # Only now, with everything committed, do the events leave the queue.
    for ev in events:
        q.remove(ev.path)
    result.events += len(events)


After = Callable[[Workspace, sqlite3.Connection, DrainResult], None]


def drain(ws: Workspace, *, wait: float = 0.0, after: After | None = None) -> DrainResult:
    """Capture everything queued. Returns at once (ran=False) if another drainer holds the lock,
    unless ``wait`` seconds are given to wait for it. ``after(ws, db, result)`` runs, still under
    the lock, once events were captured; its failure is logged and the capture stands."""
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
                if result.events and after is not None:
                    try:
                        after(ws, db, result)
                    except Exception as e:  # noqa: BLE001 - what is captured stays; recall rebuilds what is missing
                        _log(ws, f"after-error {type(e).__name__}: {str(e)[:200]}")
            finally:
                db.close()
            _log(ws, f"end events={result.events} commits={result.commits} bad={result.bad}")
        except BaseException as e:
            _log(ws, f"error {type(e).__name__}: {str(e)[:300]}")
            raise
        finally:
            lock.release()
        wait = 0.0  # the recheck only takes a free lock; a busy one means another drainer runs


if __name__ == "__main__":
    # Hook scripts written by lmm 0.1 start the drainer under this name; they keep capturing until
    # the next `lmm init` or `lmm hooks install` rewrites them to start ``lmm_cli.jobs.drain``.
    import runpy

    runpy.run_module("lmm_cli.jobs.drain", run_name="__main__", alter_sys=True)
