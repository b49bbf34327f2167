"""The hook event queue: one small file per event in ``<store>/queue/``.

A hook writes ``ev.XXXXXXXXXX`` then renames it to ``….q``, so a reader never sees half an event;
post-rewrite's stdin goes beside it as ``….in``. Files are deleted only after the transaction that
captured them has committed, so a crash anywhere leaves the event to be captured again (capture is
idempotent). A file that cannot be parsed is moved to ``queue/bad/``, never dropped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Event", "pending", "read_event", "remove", "quarantine", "STALE_SECONDS"]

MAGIC = "lmm-event-1"
# A hook that died between mktemp and rename leaves "ev.XXXXXXXXXX": older than this, take it as is.
STALE_SECONDS = 120.0


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
    """Event files ready to capture, oldest first."""
    out: list[tuple[int, str, Path]] = []
    now = time.time()
    try:
        entries = list(os.scandir(queue))
    except FileNotFoundError:
        return []
    for e in entries:
        if not e.is_file() or not e.name.startswith("ev."):
            continue
        try:
            st = e.stat()
        except FileNotFoundError:
            continue
        if e.name.endswith(".q") or (
            not e.name.endswith(".in") and "." not in e.name[3:] and now - st.st_mtime > STALE_SECONDS
        ):
            out.append((st.st_mtime_ns, e.name, Path(e.path)))
    out.sort()
    return [p for _, _, p in out]


def read_event(path: Path) -> Event:
    """Parse an event file; raises ValueError when it is not one."""
    raw = path.read_bytes().decode("utf-8", "surrogateescape")
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) < 5 or lines[0] != MAGIC:
        raise ValueError(f"not an lmm event: {path.name}")
    stem = path.name[:-2] if path.name.endswith(".q") else path.name
    stdin_path = path.with_name(stem + ".in")
    stdin: list[str] = []
    if stdin_path.exists():
        stdin = [line for line in stdin_path.read_text("utf-8", "replace").splitlines() if line.strip()]
    return Event(path=path, id=stem, hook=lines[1], cwd=lines[2], head=lines[3].strip(), ref=lines[4].strip(),
                 args=lines[5:], ts=path.stat().st_mtime, stdin=stdin)


def _companions(path: Path) -> list[Path]:
    stem = path.name[:-2] if path.name.endswith(".q") else path.name
    return [path, path.with_name(stem + ".in")]


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
