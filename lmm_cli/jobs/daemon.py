"""`lmm daemon`: one background process per repository that keeps its memory up to date and learning.

``python -m lmm_cli.jobs.daemon start|status|stop|run STORE_DIR [--json]`` (`lmm daemon …` runs this).
``run`` is the daemon itself; ``start`` launches it detached and returns once it is up.

What it does, at low priority (nice 15) and on a bounded number of threads (``embed.THREADS``):

- watches (``jobs.watch.Watcher``: assistant transcripts, and edited files as recall's working set),
  unless an `lmm watch` already does, then leaves it to that one;
- drains the hook queue when events wait (hook-started drainers still run; the capture lock keeps
  them one at a time);
- keeps the session brief made ahead (``core.refresh_session_brief``), so that a new day or a config
  file edited does not leave the next session's SessionStart hook to make it;
- embeds what a new store has not embedded yet (``jobs.embed``), fits recall's fusion weights when a
  fit is due (``model.fusion.due``) and, once the repository has been quiet for ``IDLE`` seconds,
  runs a training round when ``model.rounds.round_due`` says so.

While it runs, captures leave embedding, fits and rounds to it (``core.daemon_running``) instead of
starting detached jobs of their own. One daemon per repository: it holds the store's ``daemon`` lock
for its life (``daemon.pid``: pid and process start time, as ``drain.pid``), so a daemon killed with
-9 is seen as gone at once. What it does is recorded in ``state`` (key ``daemon``) for `lmm daemon
status` and `lmm status`. SIGTERM (what ``stop`` sends) stops it cleanly: a round or an embedding in
progress is interrupted (each keeps what it committed and resumes next time; nothing is left half
written) and the watcher is stopped. Logs to ``logs/daemon.log``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from ..errors import LmmError
from ..store.lock import CaptureLock, lock_is_held, process_alive
from ..workspace import Workspace, workspace_from_store
from ._run import detach, log
from .embed import LOCK_NAME as EMBED_LOCK
from .embed import Stopped, fit_if_due, limit_threads, train_if_due

__all__ = ["main", "serve", "start", "status", "stop", "LOCK_NAME", "STATE_KEY"]

LOCK_NAME = "daemon"  # daemon.lock / daemon.pid in the store
STATE_KEY = "daemon"  # what it does, in the state table
POLL = 0.5            # seconds between looks at the hook queue
STOP_WAIT = 60.0      # seconds `stop` waits for a clean exit before it kills


def _env_seconds(name: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return default


def _record(ws: Workspace, **fields: Any) -> None:
    """Merge ``fields`` into the daemon's state row. Never raises: the record is for people."""
    from ..store.db import transaction

    try:
        db = ws.connect()
        try:
            with transaction(db):
                row = db.execute("SELECT value FROM state WHERE key = ?", (STATE_KEY,)).fetchone()
                try:
                    st = json.loads(row[0]) if row else {}
                except ValueError:
                    st = {}
                st = {**(st if isinstance(st, dict) else {}), **fields}
                db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                           "value = excluded.value", (STATE_KEY, json.dumps(st, sort_keys=True, default=str)))
        finally:
            db.close()
    except Exception:  # noqa: BLE001
        pass


def _summary(out: dict[str, Any] | None) -> dict[str, Any] | None:
    """The few fields of a fit's or a round's outcome worth keeping in the daemon's record."""
    if not isinstance(out, dict):
        return None
    keep = ("status", "outcome", "promoted", "version", "active", "back_to_base", "reason", "queries", "pairs",
            "seconds")
    return {"at": time.time(), **{k: out[k] for k in keep if k in out and not isinstance(out[k], dict | list)}}


class Daemon:
    """The daemon's loop (main thread) and its watcher (a thread of its own)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.stop = threading.Event()
        self.busy = False  # heavy work running: SIGTERM interrupts it
        self.check_every = _env_seconds("LMM_DAEMON_CHECK", 10.0)  # seconds between looks at what is due
        self.idle = _env_seconds("LMM_DAEMON_IDLE", 60.0)          # quiet seconds before a training round
        self.last_capture = time.monotonic()
        self.watcher: Any = None
        self.watch_lock: CaptureLock | None = None
        self.thread: threading.Thread | None = None

    def say(self, msg: str) -> None:
        log(self.ws.dir, "daemon", msg)

    def doing(self, what: str) -> None:
        _record(self.ws, doing=what, since=time.time())

    # -- the watcher -----------------------------------------------------------------------------
    def start_watcher(self) -> bool:
        """Watch in a thread, unless another watcher (`lmm watch`) holds the repository."""
        from .watch import Watcher

        lock = CaptureLock(self.ws.dir, "watch")
        if not lock.acquire(0):
            self.say("watch: another `lmm watch` runs; leaving the watching to it")
            return False

        def event(ev: dict[str, Any]) -> None:
            if ev.get("event") in ("sessions", "activity"):
                self.last_capture = time.monotonic()
            self.say("watch " + json.dumps(ev, ensure_ascii=False)[:300])

        try:
            self.watcher = Watcher(self.ws, event)
        except Exception as e:  # noqa: BLE001 - the daemon still drains and trains without it
            lock.release()
            self.say(f"watch: cannot start: {type(e).__name__}: {str(e)[:200]}")
            return False
        self.watch_lock = lock

        def run() -> None:
            try:
                self.watcher.run()
            except Exception as e:  # noqa: BLE001
                self.say(f"watch crashed: {type(e).__name__}: {str(e)[:200]}")

        self.thread = threading.Thread(target=run, name="lmm-watch", daemon=True)
        self.thread.start()
        return True

    def stop_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        if self.watch_lock is not None:
            self.watch_lock.release()

    # -- the work --------------------------------------------------------------------------------
    def drain(self) -> None:
        from ..capture import queue as q
        from ..capture.drain import DrainResult, drain

        if not q.pending(self.ws.queue):
            return

        def after(ws: Workspace, db: Any, result: DrainResult) -> None:
            from ..core import after_capture

            after_capture(ws, db, new_commits=result.commits)

        res = drain(self.ws, after=after)
        if res.events:
            self.last_capture = time.monotonic()
            self.say(f"drained events={res.events} commits={res.commits}")
            _record(self.ws, drained={"at": time.time(), "events": res.events, "commits": res.commits})

    def heavy(self, what: str, fn: Any) -> Any:
        """Run ``fn(starting)`` as interruptible work (SIGTERM raises ``Stopped`` inside it);
        ``starting()`` records that the daemon is doing ``what`` now."""
        started = [False]

        def starting() -> None:
            started[0] = True
            self.doing(what)

        self.busy = True
        try:
            return fn(starting)
        finally:
            self.busy = False
            if started[0] and not self.stop.is_set():
                self.doing("idle")

    def due_work(self) -> None:
        from ..core import embedding_pending, refresh_session_brief

        db = self.ws.connect()
        try:
            if refresh_session_brief(self.ws, db):  # a new day, a config file edited: the next session finds it made
                self.say("session brief made ahead")
            pending = embedding_pending(db)
        finally:
            db.close()
        if pending:
            lock = CaptureLock(self.ws.dir, EMBED_LOCK)
            if lock.acquire(0):  # else a detached job started before the daemon is at it
                try:
                    from .embed import embed_pending

                    def embedding(starting: Any) -> Any:
                        starting()
                        return embed_pending(self.ws, say=self.say, stop=self.stop)

                    self.heavy("embedding", embedding)
                finally:
                    lock.release()
            return  # the fit and the rounds want the vectors first
        fit = self.heavy("fitting", lambda starting: fit_if_due(self.ws, self.say, starting))
        if fit is not None:
            _record(self.ws, last_fit=_summary(fit))
        if self.stop.is_set() or time.monotonic() - self.last_capture < self.idle:
            return
        out = self.heavy("training", lambda starting: train_if_due(self.ws, self.say, starting))
        if out is not None:
            _record(self.ws, last_round=_summary(out))

    def run(self) -> int:
        watching = self.start_watcher()
        _record(self.ws, pid=os.getpid(), started=time.time(), doing="idle", since=time.time(), watching=watching,
                stopped=None, last_error=None)
        self.say(f"start watching={int(watching)} check={self.check_every}s idle={self.idle}s")
        next_check = time.monotonic()  # at once: a new store's embedding should not wait
        try:
            while not self.stop.is_set():
                try:
                    self.drain()
                    if time.monotonic() >= next_check:
                        self.due_work()
                        next_check = time.monotonic() + self.check_every
                except Stopped:
                    break
                except Exception as e:  # noqa: BLE001 - one failure does not end the daemon
                    self.say(f"error {type(e).__name__}: {str(e)[:300]} {traceback.format_exc(limit=4)!r}")
                    _record(self.ws, last_error={"at": time.time(), "error": f"{type(e).__name__}: {str(e)[:200]}"})
                    next_check = time.monotonic() + max(self.check_every, 30.0)
                self.stop.wait(POLL)
        finally:
            self.stop_watcher()
            _record(self.ws, doing="stopped", since=time.time(), stopped=time.time())
            self.say("stop")
        return 0


def serve(ws: Workspace) -> int:
    """Be the daemon of ``ws`` until SIGTERM, SIGINT or SIGHUP; 0 at once when one already runs."""
    lock = CaptureLock(ws.dir, LOCK_NAME)
    if not lock.acquire(0):
        log(ws.dir, "daemon", "busy: a daemon already runs for this store")
        return 0
    d = Daemon(ws)

    def on_signal(_signum: int, _frame: Any) -> None:
        d.stop.set()
        if d.busy:
            d.busy = False  # once: the unwinding itself is not interrupted again
            raise Stopped()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        return d.run()
    except Stopped:
        return 0
    finally:
        lock.release()


# -- start, status, stop: what `lmm daemon` calls --------------------------------------------------

def _owner(ws: Workspace) -> tuple[int, str | None] | None:
    """The live daemon's (pid, process start), or None when none runs."""
    if not lock_is_held(ws.dir, LOCK_NAME):
        return None
    try:
        parts = (ws.dir / f"{LOCK_NAME}.pid").read_text().split()
        pid, started = int(parts[0]), (parts[1] if len(parts) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None
    return (pid, started) if process_alive(pid, started) else None


def _state(ws: Workspace) -> dict[str, Any]:
    try:
        db = ws.connect()
    except LmmError:
        return {}
    try:
        row = db.execute("SELECT value FROM state WHERE key = ?", (STATE_KEY,)).fetchone()
        out = json.loads(row[0]) if row else {}
    except ValueError:
        out = {}
    finally:
        db.close()
    return out if isinstance(out, dict) else {}


def status(ws: Workspace) -> dict[str, Any]:
    """{running, pid, started, uptime, doing, since, watching, last_round, last_fit, last_error, …}."""
    owner = _owner(ws)
    st = _state(ws)
    out: dict[str, Any] = {"repo": str(ws.repo.root), "running": owner is not None, "pid": owner[0] if owner else None}
    keep = ("started", "doing", "since", "watching", "last_round", "last_fit", "last_error", "drained", "stopped")
    out.update({k: st.get(k) for k in keep})
    if owner is None:
        out["doing"] = None
    out["uptime"] = round(time.time() - st["started"], 1) if owner and st.get("started") else None
    return out


def start(ws: Workspace, *, wait: float = 20.0) -> dict[str, Any]:
    """Start the daemon detached unless one runs; returns once it holds its lock ({started, pid, …})."""
    import subprocess

    owner = _owner(ws)
    if owner is not None:
        return {**status(ws), "started": False, "already": True}
    ws.logs.mkdir(exist_ok=True)
    p = subprocess.Popen([sys.executable, "-m", "lmm_cli.jobs.daemon", "run", str(ws.dir)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True, cwd=str(ws.dir))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        owner = _owner(ws)
        if owner is not None:
            mine = owner[0] == p.pid
            return {**status(ws), "started": mine, "already": not mine}
        if p.poll() is not None:  # it exited: another start won the race, or it could not run
            owner = _owner(ws)
            if owner is not None:
                return {**status(ws), "started": False, "already": True}
            raise LmmError(f"the daemon exited at once (code {p.returncode}); see {ws.logs / 'daemon.log'}")
        time.sleep(0.05)
    raise LmmError(f"the daemon did not come up within {wait:.0f}s; see {ws.logs / 'daemon.log'}")


def stop(ws: Workspace, *, wait: float = STOP_WAIT) -> dict[str, Any]:
    """Stop the daemon (SIGTERM, then SIGKILL after ``wait`` seconds); idempotent."""
    owner = _owner(ws)
    if owner is None:
        return {"repo": str(ws.repo.root), "stopped": False, "was_running": False, "pid": None}
    pid = owner[0]
    t0 = time.monotonic()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    killed = False
    while process_alive(*owner):  # gone, not only its lock released: `start` may follow at once
        if time.monotonic() - t0 > wait:
            try:
                os.kill(pid, signal.SIGKILL)
                killed = True
            except ProcessLookupError:
                pass
            break
        time.sleep(0.05)
    return {"repo": str(ws.repo.root), "stopped": True, "was_running": True, "pid": pid, "killed": killed,
            "seconds": round(time.monotonic() - t0, 2)}


def _ago(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    return f"{s // 3600}h {s % 3600 // 60}m"


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def _outcome(o: dict[str, Any] | None) -> str:
    if not o:
        return "none yet"
    what = o.get("status") or o.get("outcome") or "done"
    extra = ", ".join(f"{k.replace('_', ' ')} {o[k]}" for k in ("version", "promoted", "back_to_base", "queries",
                                                                "pairs", "reason") if o.get(k))
    return f"{_when(o.get('at'))}: {what}" + (f" ({extra})" if extra else "")


def text(cmd: str, out: dict[str, Any]) -> str:
    """What `lmm daemon CMD` prints."""
    if cmd == "stop":
        if not out["was_running"]:
            return "no daemon was running for this repository"
        how = "killed (it did not stop in time)" if out.get("killed") else "stopped"
        return f"{how} the daemon (pid {out['pid']}) in {out['seconds']:.1f}s"
    if cmd == "start":
        if out.get("already"):
            return f"a daemon already runs for this repository (pid {out['pid']}, up {_ago(out['uptime'] or 0)})"
        return (f"daemon started (pid {out['pid']}): watching, capturing, and embedding, fitting and training when "
                "due, at low priority; `lmm daemon status` says what it does, `lmm daemon stop` stops it")
    if not out["running"]:
        last = f"; it stopped {_when(out['stopped'])}" if out.get("stopped") else ""
        return f"no daemon runs for this repository{last} (`lmm daemon start` starts one)"
    since = f" since {time.strftime('%H:%M:%S', time.localtime(out['since']))}" if out.get("since") else ""
    lines = [
        f"daemon      running, pid {out['pid']}, up {_ago(out['uptime'] or 0)}",
        f"doing       {out.get('doing') or 'idle'}{since}",
        "watching    " + ("yes" if out.get("watching") else "no (another `lmm watch` does)"),
        f"last round  {_outcome(out.get('last_round'))}",
        f"last fit    {_outcome(out.get('last_fit'))}",
    ]
    if out.get("drained"):
        d = out["drained"]
        lines.append(f"captured    {d['events']} hook event(s), {d['commits']} commit(s) at {_when(d['at'])}")
    if out.get("last_error"):
        lines.append(f"last error  {_when(out['last_error'].get('at'))}: {out['last_error'].get('error')}")
    return "\n".join(lines)


USAGE = "usage: python -m lmm_cli.jobs.daemon start|status|stop|run STORE_DIR [--json]"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ("start", "status", "stop", "run"):
        print(USAGE, file=sys.stderr)
        return 2
    cmd, store = argv[0], Path(argv[1])
    if cmd == "run":
        limit_threads()  # before anything loads numpy or torch
        detach(15)
        try:
            return serve(workspace_from_store(store))
        except Exception as e:  # noqa: BLE001 - the log says why
            log(store, "daemon", f"crash {type(e).__name__}: {str(e)[:300]} {traceback.format_exc(limit=4)!r}")
            return 1
    try:
        ws = workspace_from_store(store)
        out = {"start": start, "status": status, "stop": stop}[cmd](ws)
    except LmmError as e:
        print(f"lmm: {e}", file=sys.stderr)
        return e.exit_code
    if "--json" in argv[2:]:
        print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    else:
        print(text(cmd, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
