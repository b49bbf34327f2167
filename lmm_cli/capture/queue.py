"""The hook event queue: one small file per event in ``<store>/queue/``.

A hook creates ``ev.<pid>.<n>.q`` exclusively and fills it with one write ending in an ``end``
line (no mktemp or mv: each fork is time git waits); an event without its ``end`` is still being
written and is left for a moment. post-rewrite's stdin goes beside it as ``….in``, written first.
Files are deleted only after the transaction that captured them has committed, so a crash anywhere
leaves the event to be captured again (capture is idempotent). A file that cannot be parsed is
moved to ``queue/bad/``, never dropped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Event", "NotReady", "pending", "read_event", "remove", "quarantine", "STALE_SECONDS"]

MAGIC = "lmm-event-1"
# An event still without its "end" line after this long was left by a hook that died mid-write:
# take what it has (or quarantine it) rather than wait forever.
STALE_SECONDS = 120.0


class NotReady(Exception):
    """The hook is still writing this event."""


@dataclass
class Event:
    path: Path
    id: str
    hook: str
    cwd: str
    head: str
    ref: str
    args: list[str]
    ts: float
    stdin: list[str] = field(default_factory=list)


def pending(queue: Path) -> list[Path]:
    """Event files, oldest first."""
    out: list[tuple[int, str, Path]] = []
    try:
        entries = list(os.scandir(queue))
    except FileNotFoundError:
        return []
    for e in entries:
        if e.name.startswith("ev.") and e.name.endswith(".q"):
            try:
                out.append((e.stat().st_mtime_ns, e.name, Path(e.path)))
            except FileNotFoundError:
                continue
    out.sort()
    return [p for _, _, p in out]


def read_event(path: Path) -> Event:
    """Parse an event file; raises ValueError when it is not one."""
    raw = path.read_bytes().decode("utf-8", "surrogateescape")
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines and lines[-1] == "end":
        lines.pop()
    elif time.time() - path.stat().st_mtime < STALE_SECONDS:
        raise NotReady(path.name)
    if len(lines) < 5 or lines[0] != MAGIC:
        raise ValueError(f"not an lmm event: {path.name}")
    stem = path.name[:-2]
    stdin_path = path.with_name(stem + ".in")
    stdin: list[str] = []
    if stdin_path.exists():
        stdin = [line for line in stdin_path.read_text("utf-8", "replace").splitlines() if line.strip()]
    st = path.stat()
    # The id keys the episode an event becomes: the file name alone (hook pid, counter) repeats once
    # pids are recycled, and a later event would then be dropped as "already stored". With the
    # file's mtime it is unique, and still the same when a crashed drainer reads the event again.
    return Event(path=path, id=f"{stem}.{st.st_mtime_ns}", hook=lines[1], cwd=lines[2], head=lines[3].strip(),
                 ref=lines[4].strip(), args=lines[5:], ts=st.st_mtime, stdin=stdin)


def _companions(path: Path) -> list[Path]:
    return [path, path.with_name(path.name[:-2] + ".in")]


def remove(path: Path) -> None:
    for p in _companions(path):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def quarantine(path: Path) -> None:
    bad = path.parent / "bad"
    bad.mkdir(exist_ok=True)
    for p in _companions(path):
        if p.exists():
            os.replace(p, bad / p.name)
