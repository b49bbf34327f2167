"""Episodes: the rows of the episodic log, written idempotently and kept searchable (FTS5).

An episode is keyed by (kind, source); writing one that exists changes nothing. Text reaching this
module has already been redacted by capture.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FileChange", "Episode", "EpisodeWriter", "insert_episode", "fts_doc", "supersede"]

# Initial memory metadata by tier: sensory fades in days, episodic in months.
DECAY = {"sensory": 0.5, "episodic": 0.01, "semantic": 0.002, "archival": 0.0}


@dataclass
class FileChange:
    path: str
    status: str = "M"
    old_path: str | None = None
    added: int | None = 0
    deleted: int | None = 0
    binary: bool = False
    secret: bool = False
    hunks: str | None = None
    truncated: bool = False


@dataclass
class Episode:
    kind: str
    source: str
    ts: float
    title: str
    body: str = ""
    author: str | None = None
    author_email: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    files: list[FileChange] = field(default_factory=list)
    symbols: list[tuple[str, str, str]] = field(default_factory=list)  # (path, symbol, context)
    tier: str = "episodic"
    salience: float = 0.5
    provenance: dict[str, Any] = field(default_factory=dict)


class EpisodeWriter:
    """Writes episodes within the caller's transaction. The episode row goes in at once (its id
    and whether it was new are needed now); its files, symbols, parents and index entry are
    batched and written by ``flush()``, one statement per table: a backfill writes thousands."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.files: list[tuple[Any, ...]] = []
        self.symbols: list[tuple[Any, ...]] = []
        self.parents: list[tuple[Any, ...]] = []
        self.fts: list[tuple[Any, ...]] = []

    def add(self, ep: Episode) -> int | None:
        """Queue ``ep``; returns its new id, or None if it was already stored (nothing changes)."""
        cur = self.db.execute(
            """INSERT OR IGNORE INTO episodes
               (kind, source, ts, author, author_email, title, body, data, tier, salience, strength,
                decay_rate, confidence, valid_from, provenance, captured_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1.0, ?, 1.0, ?, ?, ?)""",
            (
                ep.kind, ep.source, ep.ts, ep.author, ep.author_email, ep.title, ep.body,
                json.dumps(ep.data, ensure_ascii=False), ep.tier, ep.salience, DECAY[ep.tier],
                ep.ts, json.dumps(ep.provenance, ensure_ascii=False), time.time(),
            ),
        )
        if cur.rowcount == 0:
            return None
        eid = int(cur.lastrowid)  # type: ignore[arg-type]
        files: dict[str, FileChange] = {}
        for f in ep.files:
            files.setdefault(f.path, f)  # a path listed twice (copy + modify) keeps its first entry
        self.files.extend(
            (eid, f.path, f.old_path, f.status, f.added, f.deleted, int(f.binary), int(f.secret), f.hunks,
             int(f.truncated))
            for f in files.values()
        )
        symbols: dict[tuple[str, str], str] = {}
        for p, sym, ctx in ep.symbols:
            symbols.setdefault((p, sym), ctx)
        self.symbols.extend((eid, p, sym, ctx) for (p, sym), ctx in symbols.items())
        parents = ep.data.get("parents") if ep.kind in ("commit", "merge") else None
        if parents:
            self.parents.extend((ep.source, p, i) for i, p in enumerate(parents))
        ordered = sorted((f.path, f.old_path, f.hunks) for f in files.values())
        self.fts.append((eid, *_fts_values(ep.title, ep.body, ordered, [s for _, s in sorted(symbols)])))
        return eid

    def flush(self) -> None:
        db = self.db
        db.executemany(
            "INSERT INTO episode_files (episode_id, path, old_path, status, added, deleted, binary, secret, hunks,"
            " truncated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", self.files)
        db.executemany("INSERT OR IGNORE INTO episode_symbols (episode_id, path, symbol, context) VALUES (?, ?, ?, ?)",
                       self.symbols)
        db.executemany("INSERT OR IGNORE INTO commit_parents (sha, parent, idx) VALUES (?, ?, ?)", self.parents)
        db.executemany(
            "INSERT INTO episodes_fts (rowid, title, body, paths, symbols, diff, terms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            self.fts)
        self.files, self.symbols, self.parents, self.fts = [], [], [], []


def insert_episode(db: sqlite3.Connection, ep: Episode) -> int | None:
    """Insert ``ep`` with its files, symbols and index entry; None if it was already there."""
    w = EpisodeWriter(db)
    eid = w.add(ep)
    w.flush()
    return eid


def _fts_values(title: str, body: str, files: list[tuple[str, str | None, str | None]],
                symbols: list[str]) -> tuple[str, str, str, str, str, str]:
    """The indexed text of an episode. ``files`` sorted by path, ``symbols`` by (path, symbol)."""
    from ..text import code_terms

    paths = " ".join(p if not old else f"{old} {p}" for p, old, _ in files)
    diff = "\n".join(h for _, _, h in files if h)
    sym = " ".join(symbols)
    return title, body, paths, sym, diff, code_terms(" ".join((title, body, paths, sym, diff)))


def fts_doc(db: sqlite3.Connection, eid: int) -> tuple[str, str, str, str, str, str]:
    """The indexed text of a stored episode, rebuilt from its rows.

    The index is contentless, so deleting an entry needs exactly the values that were indexed;
    this and ``insert_episode`` both go through ``_fts_values`` with the same ordering.
    """
    title, body = db.execute("SELECT title, body FROM episodes WHERE id = ?", (eid,)).fetchone()
    files = db.execute(
        "SELECT path, old_path, hunks FROM episode_files WHERE episode_id = ? ORDER BY path", (eid,)
    ).fetchall()
    symbols = [r[0] for r in db.execute(
        "SELECT symbol FROM episode_symbols WHERE episode_id = ? ORDER BY path, symbol", (eid,))]
    return _fts_values(title, body, [tuple(f) for f in files], symbols)


def supersede(db: sqlite3.Connection, old_source: str, new_source: str, ts: float) -> int:
    """Mark the commit episode ``old_source`` as replaced by ``new_source`` (amend/rebase).

    Nothing is deleted: the old episode stays, with a closed validity interval and a pointer.
    """
    cur = db.execute(
        """UPDATE episodes SET valid_to = ?, superseded_by = ?
           WHERE source = ? AND kind IN ('commit', 'merge') AND valid_to IS NULL""",
        (ts, new_source, old_source),
    )
    return cur.rowcount
