"""Briefs kept between processes: what a SessionStart hook prints, without making it again.

Making the session brief reads the whole history (a third of a second on a 6k-commit repository),
and a hook process pays the import of the brief's machinery on top. What the brief says changes only
when the memory does (a capture, a note, a forget, a rebuilt index), when the day does (its windows
end today), or when the working tree changes under what it cites. So the rendered markdown is kept in
``state`` (one row per budget) under a key of:

- the memory's generation: ``memory_gen``, which m010's triggers move on at every update or delete
  of an episode (in the columns a brief reads), an episode's file or an indexed file, with the newest
  rowid of each of those tables (every insert makes a new one);
- the UTC day, the store's schema version (an upgrade that migrates the store starts afresh) and the
  repository's path (a moved repository's brief names its new folder);

and it is served only when, at the moment of asking, it is still as true as when it was made — the
checks ``brief.render.Verifier`` makes, done with ``stat`` instead of git and SQL:

- every file it read (a config file's targets and settings) or cites at a line has the size, time
  and inode it had, so the line still says what it said; a file it cites without a line is still a
  file, whatever was edited in it (working on a hot spot leaves the brief as true as it was);
- every path it asked about (is there a ``go.mod``, is this hot file still there) gets the same
  answer;
- git still has every commit it cites: the pack folder is unchanged (a gc or repack that could
  drop one changes it) and each commit that was a loose object is still one;
- the notes and session turns it cites are episodes in the store, which the key covers.

Anything else is a miss, and the caller makes the brief as before. Only the standard library is
imported here: a hit must cost a hook next to nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["memory_key", "fetch", "keep", "session_name", "SESSION_BUDGET"]

# Tokens of the session brief: what a SessionStart hook injects, and what every capture makes ahead
# (Claude Code moves anything over 10,000 characters to a file).
SESSION_BUDGET = 800
_FORMAT = 2  # bump when what is kept, or how it is checked, changes
_PREFIX = "brief_cache."


def memory_key(db: sqlite3.Connection) -> str | None:
    """The memory as a brief sees it, in one string; None on a store without m010's counter."""
    row = db.execute(
        "SELECT (SELECT value FROM state WHERE key = 'memory_gen'),"
        " (SELECT max(rowid) FROM episodes), (SELECT max(rowid) FROM episode_files),"
        " (SELECT max(rowid) FROM code_files), (SELECT user_version FROM pragma_user_version)").fetchone()
    if row is None or row[0] is None:
        return None
    return ":".join(str(v) for v in row)


def session_name(budget: int) -> str:
    """The name the session brief at ``budget`` tokens is kept under."""
    return f"session.{budget}"


def _day(now: float | None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))


def _stamp(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def _is_file(root: Path, rel: str) -> bool:
    """A regular file inside the repository (a link out of it is not), as ``Verifier`` asks."""
    try:
        real = os.path.realpath(root / rel)
        return real.startswith(os.path.realpath(root) + os.sep) and stat.S_ISREG(os.stat(real).st_mode)
    except OSError:
        return False


def _loose(objects: Path, sha: str) -> Path:
    return objects / sha[:2] / sha[2:]


def keep(db: sqlite3.Connection, root: Path, common_dir: Path, *, name: str, key: str, markdown: str,
         files: Iterable[str], present: Iterable[str], on_disk: Mapping[str, bool], commits: Iterable[str],
         now: float | None = None) -> bool:
    """Keep ``markdown`` as the brief ``name`` made from the memory at ``key`` (read with
    ``memory_key`` *before* it was made, so that a change while it was being made leaves it stale).
    ``files``: what it read of the working tree or cites at a line (repository-relative; a path that
    is not there counts as long as it stays away); ``present``: the files it cites without a line;
    ``on_disk``: the paths it asked about, and whether each was a file; ``commits``: the commits it
    cites (full ids git had when it was made). False, and nothing kept, when the store is
    mid-transaction or a cited file is gone already."""
    if db.in_transaction:
        return False
    objects = common_dir / "objects"
    if (objects / "info" / "alternates").exists():  # commits may live in another repository's packs
        return False
    present = list(dict.fromkeys(present))
    if not all(_is_file(root, f) for f in present):
        return False
    commits = list(dict.fromkeys(commits))
    value = {
        "key": key, "day": _day(now), "format": _FORMAT, "root": str(root), "markdown": markdown,
        "files": {f: _stamp(root / f) for f in dict.fromkeys(files)}, "present": present,
        "on_disk": dict(on_disk), "packs": _stamp(objects / "pack"),
        "loose": [c for c in commits if _loose(objects, c).is_file()],
    }
    try:
        db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   (_PREFIX + name, json.dumps(value)))
    except sqlite3.Error:  # a read-only or full store: the brief is made each time, as before
        return False
    return True


def fetch(db: sqlite3.Connection, root: Path, common_dir: Path, *, name: str, now: float | None = None) -> str | None:
    """The brief kept as ``name``, when it is still what making it now would say (see the module's
    docstring); None otherwise."""
    try:
        row = db.execute("SELECT value FROM state WHERE key = ?", (_PREFIX + name,)).fetchone()
        if row is None:
            return None
        kept = json.loads(row[0])
        if not isinstance(kept, dict) or kept.get("format") != _FORMAT or kept.get("day") != _day(now):
            return None
        if kept.get("key") is None or kept.get("key") != memory_key(db) or kept.get("root") != str(root):
            return None  # the memory changed, or the repository moved (the brief names its folder)
    except (sqlite3.Error, ValueError):
        return None
    objects = common_dir / "objects"
    if kept.get("packs") != _stamp(objects / "pack"):
        return None
    for f, s in kept.get("files", {}).items():
        if _stamp(root / f) != s:
            return None
    if not all(_is_file(root, f) for f in kept.get("present", [])):
        return None
    if any((root / f).is_file() != was for f, was in kept.get("on_disk", {}).items()):
        return None
    if not all(_loose(objects, c).is_file() for c in kept.get("loose", [])):
        return None
    markdown = kept.get("markdown")
    return markdown if isinstance(markdown, str) else None
