"""The capture lock: one writer of captured history at a time (a drainer, `lmm init`, `lmm ingest`).

An flock on ``drain.lock`` in the store folder. The kernel drops it when the holder dies, so a
killed drainer never leaves the store locked. ``drain.pid`` names the holder for hooks, which skip
starting a drainer while that process is alive: it holds ``PID STARTTIME``, the start time being
field 22 of ``/proc/PID/stat`` (empty where there is no /proc), because a pid alone is recycled — a
dead drainer's pid may belong to any process by the next commit, and the hook must not trust it.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from ..errors import StoreLocked, StoreUnwritable

__all__ = ["CaptureLock", "lock_is_held", "process_start", "process_alive"]


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (field 22 of /proc/PID/stat, clock ticks since boot), or None
    when there is no such process (or no /proc). A zombie counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid … (comm may hold spaces)
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def process_alive(pid: int, start: str | None) -> bool:
    """Whether ``pid`` is still the process that started at ``start`` (``process_start``'s value)."""
    if os.path.isdir("/proc/self"):
        now = process_start(pid)
        return now is not None and (start is None or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class CaptureLock:
    """``name``: the lock's file stem; "drain" (captured history) unless another single-runner job
    of the store (the background tune: "tune") uses the same mechanism."""

    def __init__(self, store_dir: Path, name: str = "drain") -> None:
        self.path = store_dir / f"{name}.lock"
        self.pidfile = store_dir / f"{name}.pid"
        self.fd: int | None = None

    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lock; wait up to ``wait`` seconds. False if another process holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreUnwritable(str(self.path.parent), e.strerror or str(e)) from None
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        self.fd = fd
        tmp = self.pidfile.with_name(f"{self.pidfile.name}.{os.getpid()}")
        try:
            tmp.write_text(f"{os.getpid()} {process_start(os.getpid()) or ''}\n")
            os.replace(tmp, self.pidfile)
        except OSError as e:
            self.release()
            raise StoreUnwritable(str(self.path.parent), e.strerror or str(e)) from None
        return True

    def acquire_or_raise(self, wait: float | None = None) -> CaptureLock:
        if wait is None:  # LMM_LOCK_TIMEOUT (seconds) bounds every wait on another lmm process
            try:
                wait = float(os.environ.get("LMM_LOCK_TIMEOUT", "60"))
            except ValueError:
                wait = 60.0
        if not self.acquire(wait):
            raise StoreLocked(str(self.path.parent))
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        # The pidfile goes first: a hook that still sees it also queued its event before we look again.
        try:
            self.pidfile.unlink()
        except FileNotFoundError:
            pass
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> CaptureLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_is_held(store_dir: Path, name: str = "drain") -> bool:
    path = store_dir / f"{name}.lock"
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDONLY)  # flock needs no write access: a read-only store still answers
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if we got it
    return False
