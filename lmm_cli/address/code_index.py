"""The code structure index: symbols, chunks and a file reference graph of the working tree.

``index_worktree`` walks the files git sees in the work tree (tracked, plus untracked files that
are not ignored), minus ``.lmmignore`` matches, secret files (never read), binaries and files over
1 MB, and fills the ``code_*`` tables of migration ``m002``:

code_files    one row per indexed file with its content hash (the git blob id). A file whose
              (path, hash) is already there is not read again: a re-run with nothing changed costs
              two ``git ls-files`` and one SELECT.
code_symbols  definitions found by tree-sitter (functions, classes, methods, structs, traits, …),
              1-based inclusive line ranges, the enclosing class/impl as ``parent``, and a
              one-line redacted signature.
code_chunks   the text units for embeddings and lexical search: one per top-level definition (a
              class over ~80 lines is split into its methods plus a header chunk), the code between
              definitions in pieces of at most 60 lines; files of languages without a grammar are
              cut into 60-line windows overlapping by 10. Text is redacted, capped at ~4,000 chars.
code_idents   identifiers each file uses but does not define itself, with counts.
code_refs     file → file edges, rebuilt from code_idents and code_symbols after each run that
              changed something: a use of a name defined by another file adds ``count / number of
              files defining it``; names defined by more than 20 files are ignored.
code_fts      contentless FTS5 over chunks (rowid = code_chunks.id). Entries are deleted with the
              FTS5 'delete' command and exactly the values they were inserted with, both made by
              :func:`fts_values`.

Reading a file's structure is ``extract``'s work; this module decides what to read and keeps the tables
in step with the working tree. tree-sitter is imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..privacy.ignore import IgnoreRules
from ..privacy.redact import is_secret_file, redact
from ..repo import run_git
from ..text import code_terms
from .extract import Chunk, Symbol, safe_extract

__all__ = [
    "IndexStats",
    "index_worktree",
    "fts_values",
    "rebuild_refs",
    "MAX_FILE_BYTES",
]

MAX_FILE_BYTES = 1 << 20  # larger files are left out (generated code, data, vendored bundles)
BINARY_PROBE = 8192  # a NUL byte in the first 8 KB: binary
MAX_DEFINERS = 20  # a name defined by more files than this makes no edges (get, init, run…)
BATCH_FILES = 200  # files per write transaction
_REFS_STALE_KEY = "code_index.refs_stale"
_VERSION_KEY = "code_index.version"
INDEX_VERSION = "3"  # bump when extraction changes: the next run re-reads every file
# (2: markdown sections; 3: a symbol's start_line is its definition line, past decorators and attributes)

# Lock files: large, machine-written, and of no use to search.
_SKIP_NAMES = frozenset(
    """package-lock.json npm-shrinkwrap.json yarn.lock pnpm-lock.yaml cargo.lock poetry.lock
    pipfile.lock uv.lock go.sum composer.lock gemfile.lock flake.lock bun.lockb""".split()
)


@dataclass
class IndexStats:
    files: int  # files in the index after the run
    parsed: int  # files read and (re)indexed by this run
    removed: int  # files dropped from the index by this run (gone, now ignored, binary or too big)
    symbols: int  # symbols in the index after the run
    chunks: int  # chunks in the index after the run
    seconds: float





def _decode_path(raw: bytes) -> str | None:
    try:
        path = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None  # the store holds text; such names are vanishingly rare
    if not path or "\n" in path or path.endswith("/"):
        return None
    return path


def _wanted(path: str, ignore: IgnoreRules | None) -> bool:
    if is_secret_file(path) or redact(path) != path:  # a path with a secret in its name: nothing of it
        return False
    if path.rsplit("/", 1)[-1].lower() in _SKIP_NAMES:
        return False
    return not (ignore and ignore.ignored(path))


def _regular_size(root: Path, path: str) -> int | None:
    """The size of a regular file not over the cap, else None (gone, link, too big)."""
    try:
        st = os.lstat(root / path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
        return None
    return st.st_size


def _worktree_files(root: Path, ignore: IgnoreRules | None) -> dict[str, str]:
    """path → git blob id of every file to index (before the binary check)."""
    files: dict[str, str] = {}
    rehash: set[str] = set()
    for entry in run_git(root, "ls-files", "-z", "-s").split(b"\0"):
        if not entry:
            continue
        meta, _, raw = entry.partition(b"\t")
        parts = meta.split(b" ")
        if len(parts) != 3 or parts[0] in (b"160000", b"120000"):  # submodules, symlinks
            continue
        path = _decode_path(raw)
        if path is None or not _wanted(path, ignore):
            continue
        if parts[2] != b"0":  # a merge conflict: the work tree holds something else
            rehash.add(path)
        files[path] = parts[1].decode("ascii")
    status = run_git(root, "ls-files", "-z", "-t", "-m", "-d", "-o", "--exclude-standard")
    gone: set[str] = set()
    for entry in status.split(b"\0"):
        if len(entry) < 3:
            continue
        tag, raw = entry[:1], entry[2:]
        path = _decode_path(raw)
        if path is None:
            continue
        if tag == b"R":
            gone.add(path)
        elif tag == b"?":
            if _wanted(path, ignore):
                rehash.add(path)
        elif path in files:
            rehash.add(path)
    for path in gone:
        files.pop(path, None)
        rehash.discard(path)
    todo = [p for p in sorted(rehash) if _regular_size(root, p) is not None]
    for p in rehash.difference(todo):
        files.pop(p, None)
    # git unquotes a --stdin-paths line that starts with '"': hash such (rare) names here.
    quoted = [p for p in todo if p.startswith('"')]
    todo = [p for p in todo if not p.startswith('"')]
    if todo:
        out = run_git(root, "hash-object", "--stdin-paths", input="\n".join(todo).encode() + b"\n")
        hashes = out.decode("ascii").split()
        if len(hashes) != len(todo):
            raise RuntimeError("git hash-object returned an unexpected number of ids")
        files.update(zip(todo, hashes))
    for p in quoted:
        try:
            data = (root / p).read_bytes()
        except OSError:
            files.pop(p, None)
            continue
        files[p] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return files


def fts_values(path: str, symbol: str | None, text: str) -> tuple[str, str, str, str]:
    """The code_fts columns of one chunk. Used for insert and for 'delete' alike: a contentless
    FTS5 table removes an entry only when given exactly the values it was inserted with."""
    sym = symbol or ""
    return path, sym, text, code_terms(f"{path} {sym} {text}")


_FTS_INSERT = "INSERT INTO code_fts (rowid, path, symbol, text, terms) VALUES (?, ?, ?, ?, ?)"
_FTS_DELETE = (
    "INSERT INTO code_fts (code_fts, rowid, path, symbol, text, terms) VALUES ('delete', ?, ?, ?, ?, ?)"
)


def _delete_file(db: sqlite3.Connection, path: str) -> None:
    rows = db.execute("SELECT id, path, symbol, text FROM code_chunks WHERE path = ?", (path,)).fetchall()
    if rows:
        db.executemany(_FTS_DELETE, [(r[0], *fts_values(r[1], r[2], r[3])) for r in rows])
    db.execute("DELETE FROM code_chunks WHERE path = ?", (path,))
    db.execute("DELETE FROM code_symbols WHERE path = ?", (path,))
    db.execute("DELETE FROM code_idents WHERE path = ?", (path,))
    db.execute("DELETE FROM code_files WHERE path = ?", (path,))


@dataclass(slots=True)
class _Parsed:
    path: str
    hash: str
    lang: str | None
    size: int
    lines: int
    symbols: list[Symbol]
    chunks: list[Chunk]
    idents: Counter[str]


def _write(db: sqlite3.Connection, parsed: list[_Parsed], drop: Iterable[str], now: float) -> None:
    for path in drop:
        _delete_file(db, path)
    if not parsed:
        return
    next_id = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM code_chunks").fetchone()[0]) + 1
    files: list[tuple[Any, ...]] = []
    symbols: list[tuple[Any, ...]] = []
    chunks: list[tuple[Any, ...]] = []
    fts: list[tuple[Any, ...]] = []
    idents: list[tuple[Any, ...]] = []
    for p in parsed:
        files.append((p.path, p.hash, p.lang, p.size, p.lines, now))
        symbols.extend(
            (p.path, s.name, s.kind, s.parent, s.start_line, s.end_line, s.signature) for s in p.symbols
        )
        for c in p.chunks:
            chunks.append((next_id, p.path, c.start_line, c.end_line, c.symbol, c.text, c.hash))
            fts.append((next_id, *fts_values(p.path, c.symbol, c.text)))
            next_id += 1
        idents.extend((p.path, name, n) for name, n in p.idents.items())
    db.executemany(
        "INSERT INTO code_files (path, hash, lang, size, lines, indexed_at) VALUES (?, ?, ?, ?, ?, ?)", files
    )
    db.executemany(
        "INSERT INTO code_symbols (path, name, kind, parent, start_line, end_line, signature)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        symbols,
    )
    db.executemany(
        "INSERT INTO code_chunks (id, path, start_line, end_line, symbol, text, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
        chunks,
    )
    db.executemany(_FTS_INSERT, fts)
    db.executemany("INSERT INTO code_idents (path, ident, count) VALUES (?, ?, ?)", idents)


def rebuild_refs(db: sqlite3.Connection) -> None:
    """Recompute code_refs from code_idents and code_symbols (caller holds the transaction)."""
    db.execute("DELETE FROM code_refs")
    db.execute(
        f"""
        WITH defs AS (SELECT DISTINCT name, path FROM code_symbols),
             counts AS (SELECT name, COUNT(*) AS n FROM defs GROUP BY name HAVING n <= {MAX_DEFINERS})
        INSERT INTO code_refs (src, dst, weight)
        SELECT i.path, d.path, SUM(CAST(i.count AS REAL) / c.n)
        FROM code_idents AS i
        JOIN counts AS c ON c.name = i.ident
        JOIN defs AS d ON d.name = i.ident AND d.path != i.path
        GROUP BY i.path, d.path
        """
    )


def _clear(db: sqlite3.Connection) -> None:
    """Empty the whole code index (the extractor changed: everything is re-read)."""
    db.execute("INSERT INTO code_fts (code_fts) VALUES ('delete-all')")
    for table in ("code_refs", "code_idents", "code_chunks", "code_symbols", "code_files"):
        db.execute(f"DELETE FROM {table}")


def _state(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def index_worktree(
    db: sqlite3.Connection,
    root: Path,
    *,
    ignore: IgnoreRules | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IndexStats:
    """Bring the code index up to date with the working tree at ``root``; only files whose content
    hash changed are read. ``ignore`` defaults to ``root/.lmmignore``. ``progress(done, total)`` is
    called as files are processed (total: files whose content changed plus files gone).

    Writes one transaction per batch of files, then one rebuilding code_refs; a run interrupted
    between them leaves a flag in ``state`` so the next run rebuilds the refs even with nothing
    else to do."""
    from ..store.db import transaction

    t0 = time.perf_counter()
    root = Path(root)
    if ignore is None:
        ignore = IgnoreRules.load(root)
    current = _worktree_files(root, ignore)
    reset = _state(db, _VERSION_KEY) != INDEX_VERSION
    existing: dict[str, str] = (
        {} if reset else {r[0]: r[1] for r in db.execute("SELECT path, hash FROM code_files")}
    )
    todo = sorted(p for p, h in current.items() if existing.get(p) != h)
    gone = sorted(p for p in existing if p not in current)
    stale = reset or _state(db, _REFS_STALE_KEY) is not None
    total = len(todo) + len(gone)
    parsed_n = removed_n = done = 0

    # The code index is derived data: it may lose its last transactions on a power cut (WAL keeps it
    # consistent) rather than pay an fsync per batch.
    sync = db.execute("PRAGMA synchronous").fetchone()[0]
    if todo or gone or stale:
        db.execute("PRAGMA synchronous = NORMAL")
    try:
        first = True
        for b in range(0, max(len(todo), 1), BATCH_FILES):
            parsed: list[_Parsed] = []
            drop: list[str] = []
            for path in todo[b : b + BATCH_FILES]:
                item = _read_and_extract(root, path, current[path])
                if item is not None:
                    parsed.append(item)
                if path in existing:
                    drop.append(path)
                    removed_n += item is None
                done += 1
                if progress:
                    progress(done, total)
            if first:
                drop.extend(gone)
                removed_n += len(gone)
                done += len(gone)
            if parsed or drop or (first and reset):
                with transaction(db):
                    if first and reset:
                        _clear(db)
                        db.execute(
                            "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (_VERSION_KEY, INDEX_VERSION)
                        )
                    db.execute(
                        "INSERT OR REPLACE INTO state (key, value) VALUES (?, '1')", (_REFS_STALE_KEY,)
                    )
                    _write(db, parsed, drop, time.time())
                stale = True
                if first and gone and progress:
                    progress(done, total)
            parsed_n += len(parsed)
            first = False
        if stale:
            with transaction(db):
                rebuild_refs(db)
                db.execute("DELETE FROM state WHERE key = ?", (_REFS_STALE_KEY,))
    finally:
        if todo or gone or stale:
            db.execute(f"PRAGMA synchronous = {int(sync)}")

    files_n, symbols_n, chunks_n = db.execute(
        "SELECT (SELECT COUNT(*) FROM code_files), (SELECT COUNT(*) FROM code_symbols),"
        " (SELECT COUNT(*) FROM code_chunks)"
    ).fetchone()
    return IndexStats(
        files=files_n,
        parsed=parsed_n,
        removed=removed_n,
        symbols=symbols_n,
        chunks=chunks_n,
        seconds=time.perf_counter() - t0,
    )


def _read_and_extract(root: Path, path: str, blob: str) -> _Parsed | None:
    """Read and index one file; None when it is to be left out (gone, binary, too big)."""
    if _regular_size(root, path) is None:
        return None
    try:
        with open(root / path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_FILE_BYTES or b"\0" in data[:BINARY_PROBE]:
        return None
    lang, symbols, chunks, idents, nlines = safe_extract(path, data)
    return _Parsed(path, blob, lang, len(data), nlines, symbols, chunks, idents)
