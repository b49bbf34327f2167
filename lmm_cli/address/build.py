"""Build and refresh the addressing indexes a recall is served from.

After a capture: the working tree's code index (incremental by content hash), the reference
graph's PageRank (``code_rank``), and, unless ``embed`` is off, the embeddings of new code chunks,
commits and notes (incremental by text hash). Everything a recall needs is precomputed here.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BuildResult", "build_indexes", "compute_rank", "embedding_items", "rebuild_file_fts"]

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


def compute_rank(db: sqlite3.Connection, iterations: int = 30, damping: float = 0.85) -> int:
    """PageRank over code_refs (src uses dst), stored in code_rank. Pure Python: a few thousand
    files and edges take milliseconds, and the hook path must not import numpy."""
    nodes = [r[0] for r in db.execute("SELECT path FROM code_files")]
    if not nodes:
        db.execute("DELETE FROM code_rank")
        return 0
    out: dict[str, list[tuple[str, float]]] = defaultdict(list)
    used_by: dict[str, int] = defaultdict(int)
    for src, dst, w in db.execute("SELECT src, dst, weight FROM code_refs"):
        out[src].append((dst, w))
        used_by[dst] += 1
    n = len(nodes)
    rank = {p: 1.0 / n for p in nodes}
    totals = {src: sum(w for _, w in edges) for src, edges in out.items()}
    for _ in range(iterations):
        nxt = {p: (1.0 - damping) / n for p in nodes}
        dangling = sum(rank[p] for p in nodes if p not in out)
        for p in nodes:
            nxt[p] += damping * dangling / n
        for src, edges in out.items():
            if src not in rank or totals[src] <= 0:
                continue
            share = damping * rank[src] / totals[src]
            for dst, w in edges:
                if dst in nxt:
                    nxt[dst] += share * w
        rank = nxt
    db.execute("DELETE FROM code_rank")
    db.executemany("INSERT INTO code_rank (path, rank, used_by) VALUES (?, ?, ?)",
                   [(p, rank[p], used_by.get(p, 0)) for p in nodes])
    return n


def rebuild_file_fts(db: sqlite3.Connection) -> int:
    """Refill file_fts (path + defined names per file) from code_files and code_symbols, plus the
    section headings of documents (their chunks' symbols). Whole, not incremental: a thousand
    files take milliseconds, and 'delete-all' needs no old values."""
    from .terms import code_terms

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
    """(hash, text) of everything the dense channel searches: code chunks, commits and notes."""
    from .dense import text_hash
    from .recall import episode_text

    items = [(h, t) for h, t in db.execute("SELECT hash, text FROM code_chunks")]
    for title, body in db.execute(
        "SELECT title, body FROM episodes WHERE kind IN ('commit', 'note') AND valid_to IS NULL"
    ):
        text = episode_text(title, body)
        items.append((text_hash(text), text))
    return items


def build_indexes(db: sqlite3.Connection, root: Path, *, ignore: Any = None, encoder: Any = None,
                  embed: bool = True, progress: Progress | None = None) -> BuildResult:
    from .code_index import index_worktree

    t0 = time.monotonic()
    stats = index_worktree(db, root, ignore=ignore,
                           progress=(lambda d, t: progress("indexing code", d, t)) if progress else None)
    db.execute("BEGIN IMMEDIATE")
    try:
        compute_rank(db)
        if stats.parsed or stats.removed or db.execute("SELECT 1 FROM file_fts LIMIT 1").fetchone() is None:
            rebuild_file_fts(db)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    res = BuildResult(files=stats.files, parsed=stats.parsed, symbols=stats.symbols, chunks=stats.chunks)
    if embed:
        if encoder is None:
            from ..model.encoder import load_encoder

            encoder = load_encoder()
        from .dense import embed_missing

        res.encoder = encoder.id
        res.embedded = embed_missing(db, encoder, embedding_items(db),
                                     progress=(lambda d, t: progress("embedding", d, t)) if progress else None)
    res.seconds = time.monotonic() - t0
    return res
