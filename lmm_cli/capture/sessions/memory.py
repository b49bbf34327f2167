"""Claude Code's own auto memory: ``<config>/projects/<project>/memory/MEMORY.md`` and its topic files.

Claude Code (2.1.32 on) writes what it learns of a project into Markdown files beside the project's
transcripts. A project folder is this repository's when one of its transcripts was accepted by the
session capture (its records' ``cwd`` lies in the repository), so another project's memory is never
read. Each file is split into entries — a bullet (with its indented continuation and sub-bullets) or
a paragraph; a fenced code block stays whole — and each entry becomes a note (data ``{"kind":
"claude-memory", "file": name}``, salience 0.8), redacted with ``redact_note`` and keyed by a hash of
its redacted text as ``lmm remember`` keys notes, so the same text is stored once. The headings an
entry sits under are kept in its body as context. YAML front matter and index lines that only link a
topic file of the same folder (``- [Title](topic.md) — hook``) are left out: the topic file itself is
captured. A line holding ``LMM_MARK`` starts text lmm injected: it and the lines after it up to the
next blank line are never captured (the entry before it is closed and kept). Files are read again
only when their size or mtime changed (``state`` key ``sessions.memory:<real path>``, which also
lists the notes the file gave).

An entry deleted from a file (or a file deleted) is no longer true for Claude Code, so it stops
being true for lmm: its note is superseded, never deleted (``valid_to`` set to when the file
changed; ``superseded_by`` names the new entry of the file that rewrote it, when one is alike
enough), so recall and briefs stop citing it while the store keeps what was once said. A note
another memory file still holds, or one that a person stored first (``lmm remember``, a
correction), is left alone; an entry that comes back is valid again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ...privacy.redact import redact, redact_note
from ...store.db import transaction
from ...store.episodes import Episode, EpisodeWriter, FileChange
from .model import LMM_MARK

__all__ = ["STATE_KEY", "project_folder", "entries", "capture_memory", "MAX_FILE", "MemoryResult"]

STATE_KEY = "sessions.memory:"  # + real path of the memory file → {"size", "mtime"}
SALIENCE = 0.8
MAX_FILE = 2_000_000   # a memory file bigger than this is not Claude Code's (its index is cut at 25 KB)
MAX_ENTRY = 4000
REWRITE_SIMILARITY = 0.6  # how alike a new entry must be to a deleted one to count as its rewrite
_BULLET = re.compile(r"^(?P<ind>[ \t]*)(?:[-*+]|\d{1,3}[.)])[ \t]+")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_INDEX_LINK = re.compile(r"^\[[^\]]*\]\((?P<target>[^)\s]+\.md)\)")


@dataclass
class Entry:
    text: str       # the entry, bullet marker taken off
    section: str    # the headings it sits under, "A › B"


def project_folder(transcript: Path) -> Path | None:
    """The ``<config>/projects/<project>`` folder a Claude Code transcript lies in (subagents' too)."""
    p = transcript
    for _ in range(4):
        if p.parent.name == "projects":
            return p if p != transcript else None
        p = p.parent
    return None


def _front_matter_end(lines: list[str]) -> int:
    if lines and lines[0].strip() == "---":
        for i in range(1, min(len(lines), 60)):
            if lines[i].strip() in ("---", "..."):
                return i + 1
    return 0


def entries(text: str, siblings: Iterable[str] = ()) -> list[Entry]:
    """The entries of a memory file's ``text``; ``siblings``: the names of the folder's other files
    (index lines that only link one of them are left out)."""
    others = set(siblings)
    lines = text.splitlines()
    out: list[Entry] = []
    heads: list[tuple[int, str]] = []
    cur: list[str] = []
    fenced = False
    injected = False  # inside a block lmm injected: from a line holding LMM_MARK to the next blank line

    def close() -> None:
        if not cur:
            return
        body = "\n".join(cur).strip()
        cur.clear()
        if not body:
            return
        m = _INDEX_LINK.match(body)
        if m and "\n" not in body and os.path.basename(m.group("target")) in others:
            return
        if len(re.sub(r"\W", "", body)) < 3:
            return
        out.append(Entry(body[:MAX_ENTRY], " › ".join(h for _, h in heads)))

    for line in lines[_front_matter_end(lines):]:
        if LMM_MARK in line:
            close()
            injected, fenced = True, False
            continue
        if injected:
            injected = bool(line.strip())
            continue
        if fenced:
            cur.append(line)
            if _FENCE.match(line):
                fenced = False
            continue
        if _FENCE.match(line):
            fenced = True
            cur.append(line)
            continue
        if not line.strip():
            close()
            continue
        h = _HEADING.match(line)
        if h:
            close()
            level = len(h.group(1))
            heads[:] = [x for x in heads if x[0] < level] + [(level, h.group(2).strip())]
            continue
        b = _BULLET.match(line)
        if b and len(b.group("ind").expandtabs(4)) < 2:  # a top-level bullet starts an entry
            close()
            cur.append(line[b.end():])
        else:
            cur.append(line.rstrip() if cur and line[:1] in " \t" else line.strip())
    close()
    return out


@dataclass
class MemoryResult:
    read: int = 0      # memory files read (new or changed)
    new: int = 0       # new notes
    retired: int = 0   # notes superseded: their entry is gone from the files
    revived: int = 0   # superseded notes whose entry came back


_OURS = "json_extract(data, '$.kind') = 'claude-memory'"


def _sources(rec: dict[str, object] | None) -> list[str]:
    notes = rec.get("notes") if rec else None
    return [str(n) for n in notes] if isinstance(notes, list) else []


def _retire(db: sqlite3.Connection, gone: Iterable[str], ts: float, added: list[Episode] | None = None) -> int:
    """Supersede the notes ``gone``; each points to the entry of ``added`` that rewrote it (the most
    alike by first line, if alike enough: the body ends in the same context line for every entry)."""
    import difflib

    n = 0
    for src in sorted(gone):
        row = db.execute(f"SELECT title FROM episodes WHERE kind = 'note' AND source = ?"
                         f" AND valid_to IS NULL AND {_OURS}", (src,)).fetchone()
        if row is None:
            continue
        by, best = None, REWRITE_SIMILARITY
        for ep in added or []:
            r = difflib.SequenceMatcher(None, row[0], ep.title, autojunk=False).ratio()
            if r >= best:
                by, best = ep.source, r
        n += db.execute("UPDATE episodes SET valid_to = ?, superseded_by = ? WHERE kind = 'note' AND source = ?"
                        " AND valid_to IS NULL", (ts, by, src)).rowcount
    return n


def _revive(db: sqlite3.Connection, back: Iterable[str]) -> int:
    n = 0
    for src in back:
        n += db.execute(f"UPDATE episodes SET valid_to = NULL, superseded_by = NULL WHERE kind = 'note'"
                        f" AND source = ? AND valid_to IS NOT NULL AND {_OURS}", (src,)).rowcount
    return n


def _all_states(db: sqlite3.Connection) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for key, value in db.execute("SELECT key, value FROM state WHERE key >= ? AND key < ?",
                                 (STATE_KEY, STATE_KEY[:-1] + ";")):
        try:
            rec = json.loads(value)
        except (TypeError, ValueError):
            continue
        if isinstance(rec, dict):
            out[key] = rec
    return out


def capture_memory(db: sqlite3.Connection, projects: Iterable[Path], *,
                   named: Callable[[str], list[str]] | None = None) -> MemoryResult:
    """Capture the memory files of ``projects`` (Claude Code project folders of this repository):
    new entries become notes, deleted ones are superseded. ``named``: the repository files a note's
    text names (linked to it). The caller holds the capture lock."""
    res = MemoryResult()
    seen: set[str] = set()
    states = _all_states(db)
    for project in projects:
        folder = project / "memory"
        try:
            files = sorted(p for p in folder.glob("*.md") if p.is_file())
        except OSError:
            continue
        names = [p.name for p in files]
        # Files of this folder that were read once and are gone: their entries are gone too.
        here = STATE_KEY + os.path.realpath(folder) + os.sep
        present = {STATE_KEY + os.path.realpath(f) for f in files}
        for key in [k for k in states if k.startswith(here) and k not in present]:
            gone = set(_sources(states.pop(key)))
            elsewhere = {n for rec in states.values() for n in _sources(rec)}
            with transaction(db):
                res.retired += _retire(db, gone - elsewhere, _mtime(folder))
                db.execute("DELETE FROM state WHERE key = ?", (key,))
        for f in files:
            real = os.path.realpath(f)
            if real in seen:
                continue
            seen.add(real)
            try:
                st = os.stat(real)
            except OSError:
                continue
            key = STATE_KEY + real
            rec = states.get(key)
            if rec and rec.get("size") == st.st_size and rec.get("mtime") == st.st_mtime:
                continue
            notes: list[Episode] = []
            if st.st_size <= MAX_FILE:
                try:
                    text = Path(real).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                res.read += 1
                name = redact(f.name)
                for e in entries(text, [n for n in names if n != f.name]):
                    clean = redact_note(e.text).strip()
                    if not clean:
                        continue
                    title, _, rest = clean.partition("\n")
                    section = redact_note(e.section).strip()
                    body = rest.strip()
                    context = f"(Claude Code memory, {name}" + (f": {section})" if section else ")")
                    body = f"{body}\n\n{context}" if body else context
                    links = named(clean) if named else []
                    notes.append(Episode(
                        kind="note", source="note:" + hashlib.sha256(clean.encode()).hexdigest()[:16],
                        ts=st.st_mtime, title=title.strip()[:200], body=body,
                        files=[FileChange(path=p, status="N", added=None, deleted=None) for p in links],
                        data={"kind": "claude-memory", "file": name}, salience=SALIENCE,
                        provenance={"capture": "claude-memory", "file": name, "files": links}))
            now = list(dict.fromkeys(ep.source for ep in notes))
            before = _sources(rec)
            gone = set(before) - set(now)
            elsewhere = {n for k, r in states.items() if k != key for n in _sources(r)}
            added = [n for n in now if n not in before]
            w = EpisodeWriter(db)
            with transaction(db):
                for ep in notes:
                    if w.add(ep) is not None:
                        res.new += 1
                w.flush()
                if rec is not None and "notes" in rec:  # a file read before, whose notes are known
                    res.retired += _retire(db, gone - elsewhere, st.st_mtime,
                                           [ep for ep in notes if ep.source in added])
                res.revived += _revive(db, now)
                value = {"size": st.st_size, "mtime": st.st_mtime, "notes": now}
                db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                           "value = excluded.value", (key, json.dumps(value, sort_keys=True)))
            states[key] = value
    return res


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        import time

        return time.time()
