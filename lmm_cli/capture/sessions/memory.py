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
only when their size or mtime changed (``state`` key ``sessions.memory:<real path>``); an entry
later deleted from a file stays in the memory.
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

__all__ = ["STATE_KEY", "project_folder", "entries", "capture_memory", "MAX_FILE"]

STATE_KEY = "sessions.memory:"  # + real path of the memory file → {"size", "mtime"}
SALIENCE = 0.8
MAX_FILE = 2_000_000   # a memory file bigger than this is not Claude Code's (its index is cut at 25 KB)
MAX_ENTRY = 4000
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


def _load(db: sqlite3.Connection, key: str) -> dict[str, object] | None:
    row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    try:
        rec = json.loads(row[0]) if row else None
    except (TypeError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def capture_memory(db: sqlite3.Connection, projects: Iterable[Path], *,
                   named: Callable[[str], list[str]] | None = None) -> tuple[int, int]:
    """Capture the memory files of ``projects`` (Claude Code project folders of this repository):
    (files read, new notes). ``named``: the repository files a note's text names (linked to it).
    The caller holds the capture lock."""
    read = new = 0
    seen: set[str] = set()
    for project in projects:
        folder = project / "memory"
        try:
            files = sorted(p for p in folder.glob("*.md") if p.is_file())
        except OSError:
            continue
        names = [p.name for p in files]
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
            rec = _load(db, key)
            if rec and rec.get("size") == st.st_size and rec.get("mtime") == st.st_mtime:
                continue
            notes: list[Episode] = []
            if st.st_size <= MAX_FILE:
                try:
                    text = Path(real).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                read += 1
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
            w = EpisodeWriter(db)
            with transaction(db):
                for ep in notes:
                    if w.add(ep) is not None:
                        new += 1
                w.flush()
                db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                           "value = excluded.value",
                           (key, json.dumps({"size": st.st_size, "mtime": st.st_mtime}, sort_keys=True)))
    return read, new
