"""Build and refresh the addressing indexes a recall is served from.

After a capture: the working tree's code index (incremental by content hash), the reference
graph's PageRank (``code_rank``), and, unless ``embed`` is off, the embeddings of new code chunks,
commits, notes and assistant session turns (incremental by text hash). Everything a recall needs is precomputed here.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store.db import transaction
from ..workspace import Workspace
from .graph import pagerank

__all__ = ["BuildResult", "refresh", "build_indexes", "compute_rank", "embedding_items", "rebuild_file_fts",
           "EMBED_STATE", "embedding_state", "record_embedding", "embedding_counts"]

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class BuildResult:
    files: int = 0
    parsed: int = 0
    symbols: int = 0
    chunks: int = 0
    embedded: int = 0
    seconds: float = 0.0
    encoder: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def compute_rank(db: sqlite3.Connection) -> int:
    """PageRank over code_refs (src uses dst) for every indexed file, stored in code_rank with how
    many files use each one."""
    nodes = [r[0] for r in db.execute("SELECT path FROM code_files")]
    if not nodes:
        db.execute("DELETE FROM code_rank")
        return 0
    edges = db.execute("SELECT src, dst, weight FROM code_refs").fetchall()
    used_by: dict[str, int] = defaultdict(int)
    for _, dst, _ in edges:
        used_by[dst] += 1
    rank = pagerank(edges, nodes)
    db.execute("DELETE FROM code_rank")
    db.executemany("INSERT INTO code_rank (path, rank, used_by) VALUES (?, ?, ?)",
                   [(p, rank[p], used_by.get(p, 0)) for p in nodes])
    return len(nodes)


def rebuild_file_fts(db: sqlite3.Connection) -> int:
    """Refill file_fts (path + defined names per file) from code_files and code_symbols, plus the
    section headings of documents (their chunks' symbols). Whole, not incremental: a thousand
    files take milliseconds, and 'delete-all' needs no old values."""
    from ..text import code_terms

    names: dict[str, list[str]] = defaultdict(list)
    for path, name in db.execute("SELECT path, name FROM code_symbols ORDER BY path, start_line"):
        names[path].append(name)
    for path, name in db.execute(
        "SELECT c.path, c.symbol FROM code_chunks c JOIN code_files f ON f.path = c.path"
        " WHERE f.lang IS NULL AND c.symbol IS NOT NULL ORDER BY c.path, c.start_line"
    ):
        names[path].append(name)
    rows = []
    for rowid, path in db.execute("SELECT rowid, path FROM code_files"):
        spaced = path.replace("/", " ").replace(".", " ").replace("_", " ").replace("-", " ")
        n = " ".join(dict.fromkeys(names.get(path, [])))
        rows.append((rowid, spaced, n, code_terms(path + " " + n)))
    db.execute("INSERT INTO file_fts (file_fts) VALUES ('delete-all')")
    db.executemany("INSERT INTO file_fts (rowid, path, names, terms) VALUES (?, ?, ?, ?)", rows)
    return len(rows)


def embedding_items(db: sqlite3.Connection) -> list[tuple[str, str]]:
    """(hash, text) of everything the dense channel searches: code chunks, commits, notes and session turns."""
    from .dense import text_hash
    from .recall import HISTORY_KINDS, episode_text

    items = [(h, t) for h, t in db.execute("SELECT hash, text FROM code_chunks")]
    for title, body in db.execute(
        f"SELECT title, body FROM episodes WHERE kind IN {HISTORY_KINDS} AND valid_to IS NULL"
    ):
        text = episode_text(title, body)
        items.append((text_hash(text), text))
    return items


EMBED_STATE = "embedding"  # state row: how far the first (background) embedding of the store has come


def embedding_state(db: sqlite3.Connection) -> dict[str, Any] | None:
    """The embedding progress recorded in ``state`` (``jobs.embed`` writes it per batch): model,
    done and total texts, started and finished (None while it is unfinished), pid, phase
    (embedding, fitting, training, done), error. None when the store never embedded in the background."""
    import json

    row = db.execute("SELECT value FROM state WHERE key = ?", (EMBED_STATE,)).fetchone()
    if row is None:
        return None
    try:
        out = json.loads(row[0])
    except ValueError:
        return None
    return out if isinstance(out, dict) else None


def record_embedding(db: sqlite3.Connection, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the recorded embedding progress (one short transaction); the new record."""
    import json

    with transaction(db):
        state = {**(embedding_state(db) or {}), **fields, "updated": time.time()}
        db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   (EMBED_STATE, json.dumps(state, sort_keys=True)))
    return state


def embedding_counts(db: sqlite3.Connection, model_id: str) -> tuple[int, int]:
    """(texts with a vector of ``model_id``, texts the dense channel searches): distinct texts."""
    from .dense import _present

    hashes = list({h for h, _ in embedding_items(db)})
    return len(_present(db, model_id, hashes)), len(hashes)


def build_indexes(db: sqlite3.Connection, root: Path, *, ignore: Any = None, encoder: Any = None,
                  embed: bool = True, progress: Progress | None = None) -> BuildResult:
    from .code_index import index_worktree

    t0 = time.monotonic()
    stats = index_worktree(db, root, ignore=ignore,
                           progress=(lambda d, t: progress("indexing code", d, t)) if progress else None)
    with transaction(db):
        compute_rank(db)
        if stats.parsed or stats.removed or db.execute("SELECT 1 FROM file_fts LIMIT 1").fetchone() is None:
            rebuild_file_fts(db)
    res = BuildResult(files=stats.files, parsed=stats.parsed, symbols=stats.symbols, chunks=stats.chunks)
    if embed:
        if encoder is None:
            from ..embed.encoder import load_encoder

            encoder = load_encoder()
        from .dense import embed_missing

        res.encoder = encoder.id
        res.embedded = embed_missing(db, encoder, embedding_items(db),
                                     progress=(lambda d, t: progress("embedding", d, t)) if progress else None)
    res.seconds = time.monotonic() - t0
    return res


def refresh(ws: Workspace, db: sqlite3.Connection, *, embed: bool = True,
            progress: Progress | None = None) -> dict[str, Any]:
    """Bring a workspace's indexes up to date with its working tree: code index, reference-graph
    ranks and, unless ``embed`` is off, embeddings with the configured encoder."""
    from ..privacy.ignore import IgnoreRules

    encoder = None
    if embed:
        from ..embed.encoder import load_encoder

        name = ws.config().models.encoder
        encoder = load_encoder(name)
        # A first build embeds thousands of texts: torch (sentence-transformers) does that about
        # twice as fast as the numpy path, which is worth its seconds of import only then.
        if db.execute("SELECT 1 FROM vectors WHERE model = ? LIMIT 1", (encoder.id,)).fetchone() is None:
            encoder = load_encoder(name, fast=False)
    return build_indexes(db, ws.repo.root, ignore=IgnoreRules.load(ws.repo.root), encoder=encoder, embed=embed,
                         progress=progress).as_dict()
