"""Explicit notes: `lmm remember "…"` and, later, the MCP `remember` tool.

A note is redacted like everything else, and more: a person writing "the staging password is
swordfish" is writing a password down, so notes go through ``redact_note`` (any word after a secret
word in prose, not only a token-shaped one). Saying the same thing twice stores it once. Files of the
repository that the note names (``src/auth/session.py``, or a unique file name like ``session.py``)
are linked to it, so recall can reach the note from those files.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass, field

from ..errors import BadArgument
from ..privacy.redact import redact, redact_note_with_hits
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
    redactions: list[str] = field(default_factory=list)  # the kinds of secret taken out


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


# What a note is (``lmm remember --kind``, the MCP tool's ``kind``), and how much it should weigh:
# a user's correction is the strongest signal a repository's memory gets.
NOTE_KINDS = {"note": 0.9, "decision": 0.9, "convention": 0.9, "warning": 0.9, "correction": 1.0}


def _given_files(ws: Workspace, files: list[str]) -> list[str]:
    """Files the caller names explicitly: repository paths (a leading ./ or the repo root dropped)."""
    out = []
    root = str(ws.repo.root).rstrip("/") + "/"
    for f in files:
        p = f.strip()
        if p.startswith(root):
            p = p[len(root):]
        while p.startswith("./"):
            p = p[2:]
        if not p or p.startswith("/") or ".." in p.split("/"):
            raise BadArgument(f"files: {f!r} is not a path inside the repository")
        if p not in out:
            out.append(p)
    return out


def remember(ws: Workspace, db: sqlite3.Connection, text: str, *, capture: str = "cli",
             files: list[str] | None = None, kind: str = "note") -> NoteResult:
    text = text.strip()
    if not text:
        raise BadArgument("nothing to remember: give the note as text, e.g. lmm remember \"we pin numpy below 3\"")
    if len(text) > MAX_NOTE_CHARS:
        raise BadArgument(f"the note is {len(text)} characters; keep notes under {MAX_NOTE_CHARS}")
    if kind not in NOTE_KINDS:
        raise BadArgument(f"kind: {kind!r} is not one of {', '.join(NOTE_KINDS)}")
    clean, kinds = redact_note_with_hits(text)
    source = "note:" + hashlib.sha256(clean.encode()).hexdigest()[:16]
    title, _, body = clean.partition("\n")
    named = [redact(f) for f in _given_files(ws, files or [])]
    named += [f for f in _named_files(ws, clean) if f not in named]
    with transaction(db):
        eid = insert_episode(db, Episode(
            kind="note", source=source, ts=time.time(), title=title.strip()[:200], body=body.strip(),
            files=[FileChange(path=p, status="N", added=None, deleted=None) for p in named],
            data={"kind": kind} if kind != "note" else {},
            salience=NOTE_KINDS[kind], provenance={"capture": capture, "files": named},
        ))
        if eid is None:
            row = db.execute("SELECT id FROM episodes WHERE kind = 'note' AND source = ?", (source,)).fetchone()
    return NoteResult(id=eid if eid is not None else row[0], source=source, new=eid is not None,
                      files=named, redacted=clean != text, redactions=kinds)
