"""Explicit notes: `lmm remember "…"` and, later, the MCP `remember` tool.

A note is redacted like everything else; saying the same thing twice stores it once. Files of the
repository that the note names (``src/auth/session.py``, or a unique file name like ``session.py``)
are linked to it, so recall can reach the note from those files.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass

from ..errors import BadInput
from ..privacy.redact import redact
from ..store.db import transaction
from ..store.episodes import Episode, FileChange, insert_episode
from ..workspace import Workspace

__all__ = ["remember", "NoteResult"]

_PATHLIKE = re.compile(r"[\w./-]+\.[A-Za-z0-9]{1,8}\b|[\w.-]+/[\w./-]+")
MAX_NOTE_CHARS = 20000


@dataclass
class NoteResult:
    id: int | None
    source: str
    new: bool
    files: list[str]
    redacted: bool


def _tracked_files(ws: Workspace) -> list[str]:
    out = ws.repo.git("ls-files", "-z", check=False)
    return [p for p in out.decode("utf-8", "backslashreplace").split("\0") if p]


def _named_files(ws: Workspace, text: str) -> list[str]:
    candidates = {m.group(0).strip("./") for m in _PATHLIKE.finditer(text)}
    if not candidates:
        return []
    tracked = _tracked_files(ws)
    exact = set(tracked)
    by_name: dict[str, list[str]] = {}
    for p in tracked:
        by_name.setdefault(p.rsplit("/", 1)[-1], []).append(p)
    found = []
    for c in sorted(candidates):
        if c in exact:
            found.append(c)
        elif len(by_name.get(c, [])) == 1:
            found.append(by_name[c][0])
        else:  # a folder the note names
            prefix = c.rstrip("/") + "/"
            if any(p.startswith(prefix) for p in tracked):
                found.append(c.rstrip("/"))
    return found


def remember(ws: Workspace, db: sqlite3.Connection, text: str, *, capture: str = "cli") -> NoteResult:
    text = text.strip()
    if not text:
        raise BadInput("nothing to remember: give the note as text, e.g. lmm remember \"we pin numpy below 3\"")
    if len(text) > MAX_NOTE_CHARS:
        raise BadInput(f"the note is {len(text)} characters; keep notes under {MAX_NOTE_CHARS}")
    clean = redact(text)
    source = "note:" + hashlib.sha256(clean.encode()).hexdigest()[:16]
    title, _, body = clean.partition("\n")
    files = _named_files(ws, clean)
    with transaction(db):
        eid = insert_episode(db, Episode(
            kind="note", source=source, ts=time.time(), title=title.strip()[:200], body=body.strip(),
            files=[FileChange(path=p, status="N", added=None, deleted=None) for p in files],
            salience=0.9, provenance={"capture": capture, "files": files},
        ))
        if eid is None:
            row = db.execute("SELECT id FROM episodes WHERE kind = 'note' AND source = ?", (source,)).fetchone()
    return NoteResult(id=eid if eid is not None else row[0], source=source, new=eid is not None,
                      files=files, redacted=clean != text)
