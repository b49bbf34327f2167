"""Open the store: SQLite in WAL mode, migrated on connect, with SQLite's failures turned into
one-line domain errors (locked, corrupt, full, read-only, written by a newer lmm).

Damage is found when the store is opened, not when a query happens to touch a damaged page (then
`status` would still answer and `tune` report a fit from half a store): an empty (0-byte) file is
corruption, and ``PRAGMA quick_check`` runs whenever the database file changed since it was last
checked. What was checked is a side file, ``lmm.db.checked`` (size, mtime and inode of the file);
lmm's own connections record the file as they leave it when they close, so a store lmm alone wrote
is checked once, not on every command, and a change made behind lmm's back is checked at the next
open. On a 39 MB store quick_check takes about 40 ms.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import StoreCorrupt, StoreFull, StoreLocked, StoreTooNew, StoreUnwritable
from .migrations import MIGRATIONS, migrate, schema_version
from .tx import Transaction, rollback, transaction

__all__ = ["DB_FILE", "CHECKED_FILE", "connect", "transaction", "rollback", "Transaction", "translate",
           "copy_database", "carry_over", "GIT_KINDS"]

DB_FILE = "lmm.db"
CHECKED_FILE = "lmm.db.checked"
GIT_KINDS = ("commit", "merge")  # episodes a rebuild captures again from git


def busy_timeout_ms() -> int:
    """How long a writer waits for another before giving up: LMM_LOCK_TIMEOUT seconds, default 15."""
    try:
        return max(0, int(float(os.environ.get("LMM_LOCK_TIMEOUT", "15")) * 1000))
    except ValueError:
        return 15000


def translate(e: sqlite3.Error, path: Path | None) -> Exception:
    """SQLite's error as the domain error a user can act on (``e`` itself when there is none)."""
    msg = str(e)
    where = str(path) if path is not None else None
    if "locked" in msg or "busy" in msg:
        return StoreLocked(where)
    if "full" in msg:  # SQLITE_FULL: "database or disk is full"
        return StoreFull(where)
    if "readonly" in msg or "read-only" in msg or "unable to open" in msg:
        return StoreUnwritable(where or "this repository's store", msg)
    if isinstance(e, sqlite3.OperationalError) and "disk" in msg:
        return StoreCorrupt(where, msg)
    if isinstance(e, sqlite3.DatabaseError) and not isinstance(
        e, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.OperationalError)
    ):
        return StoreCorrupt(where, msg)
    return e


# --------------------------------------------------------------------------- the damage check


def _stamp(path: Path) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"


def _checked(store_dir: Path) -> str | None:
    try:
        return (store_dir / CHECKED_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _record(store_dir: Path, stamp: str | None) -> None:
    if stamp is None:
        return
    side = store_dir / CHECKED_FILE
    tmp = side.with_name(f"{side.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(stamp + "\n", encoding="utf-8")
        os.replace(tmp, side)
    except OSError:
        pass  # a read-only store is checked again next time: correct, only slower


class StoreConnection(sqlite3.Connection):
    """A connection that, when lmm closes it, records the database file as lmm left it (see the
    module's docstring), so the next open need not check it again."""

    store_dir: Path | None = None

    def close(self) -> None:
        super().close()
        if self.store_dir is not None:
            _record(self.store_dir, _stamp(self.store_dir / DB_FILE))
            self.store_dir = None


def _check(db: sqlite3.Connection, store_dir: Path, path: Path) -> None:
    """Raise StoreCorrupt unless the file is as lmm last left it or passes ``quick_check``."""
    stamp = _stamp(path)
    if stamp is not None and stamp == _checked(store_dir):
        return
    rows = db.execute("PRAGMA quick_check(1)").fetchall()
    result = rows[0][0] if rows else "no answer"
    if result != "ok":
        detail = " ".join(str(result).replace("*** in database main ***", "").split())
        raise StoreCorrupt(str(path), f"damaged: {detail[:160]}")
    _record(store_dir, stamp)


def connect(store_dir: Path, *, create: bool = False, shared: bool = False) -> sqlite3.Connection:
    """Connect to the store in ``store_dir`` and bring its schema up to date. A database that exists
    is checked for damage first (``create`` only allows making a new one). ``shared``: the
    connection may be used from other threads (the caller serialises its use, as ``core.Memory``
    does for the MCP server's worker threads)."""
    path = store_dir / DB_FILE
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = None
    existed, empty = size is not None, size == 0
    if not create and not existed:
        raise FileNotFoundError(path)
    if empty and not _wal_has_data(path):
        # SQLite would take an empty file for a new database and fill it: that would hide whatever
        # emptied it (a failed copy, a full disk) behind a store that "forgot" everything.
        raise StoreCorrupt(str(path), "the file is empty (0 bytes)")
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly what we say.
        timeout = busy_timeout_ms()
        db = sqlite3.connect(path, timeout=timeout / 1000, isolation_level=None, factory=StoreConnection,
                             check_same_thread=not shared)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {timeout}")
        if existed:
            _check(db, store_dir, path)
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        # FULL: a queue file is deleted once its transaction commits; the commit must be on disk first.
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
        found = schema_version(db)
        if found > len(MIGRATIONS):
            db.close()
            raise StoreTooNew(str(path), found, len(MIGRATIONS))
        migrate(db)
    except StoreCorrupt:
        db.close()
        raise
    except sqlite3.Error as e:
        raise translate(e, path) from None
    db.store_dir = store_dir
    return db


def _wal_has_data(path: Path) -> bool:
    try:
        return os.stat(f"{path}-wal").st_size > 0
    except OSError:
        return False


# --------------------------------------------------------------------------- copies and rebuilds


def copy_database(src_dir: Path, dst_dir: Path) -> None:
    """Copy the store database of ``src_dir`` into ``dst_dir`` (SQLite's online backup: consistent
    even while another process writes the source)."""
    src = sqlite3.connect(src_dir / DB_FILE, timeout=busy_timeout_ms() / 1000)
    try:
        dst = sqlite3.connect(dst_dir / DB_FILE)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = WAL")
        finally:
            dst.close()
    except sqlite3.Error as e:
        raise translate(e, src_dir / DB_FILE) from None
    finally:
        src.close()


class _Reader:
    """Reads an old (possibly damaged) store row by row: a scan that hits a damaged page goes on by
    looking rows up one rowid at a time, so only the rows on damaged pages are lost."""

    def __init__(self, path: Path) -> None:
        # Read-only, so the kept file stays as it was; but a WAL left beside it needs its index
        # written to be read, and then a normal connection (on lmm's own aside copy) is the way.
        self.db = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
        try:
            self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            self.db.close()
            self.db = sqlite3.connect(path)
        self.db.row_factory = sqlite3.Row
        self.unreadable = 0

    def columns(self, table: str) -> list[str]:
        try:
            return [r[1] for r in self.db.execute(f"PRAGMA table_info({table})")]
        except sqlite3.DatabaseError:
            return []

    def rows(self, table: str, cols: list[str]) -> Iterator[sqlite3.Row]:
        sel = ", ".join(["rowid AS _rowid", *cols])
        last = 0
        try:
            for r in self.db.execute(f"SELECT {sel} FROM {table} WHERE rowid > ? ORDER BY rowid", (last,)):
                last = r["_rowid"]
                yield r
            return
        except sqlite3.DatabaseError:
            pass
        try:
            top = int(self.db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0)
        except sqlite3.DatabaseError:
            top = last + 100_000
        for rid in range(last + 1, top + 1):
            try:
                row = self.db.execute(f"SELECT {sel} FROM {table} WHERE rowid = ?", (rid,)).fetchone()
            except sqlite3.DatabaseError:
                self.unreadable += 1
                continue
            if row is not None:
                yield row

    def children(self, table: str, cols: list[str], episode_id: int) -> list[sqlite3.Row]:
        try:
            return self.db.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE episode_id = ?",
                                   (episode_id,)).fetchall()
        except sqlite3.DatabaseError:
            self.unreadable += 1
            return []

    def close(self) -> None:
        self.db.close()


def carry_over(old: Path, db: sqlite3.Connection) -> dict[str, Any]:
    """Copy into ``db`` — a store just rebuilt from git — what git cannot give back from the old
    database file ``old``, which is left as it is:

    - every episode of a kind git does not produce (anything but commit and merge: notes, rewrite
      and checkout events today, sessions and feedback later), with its files and symbols;
    - commit episodes git no longer has (superseded by an amend or rebase, or on a deleted branch);
    - for commits captured again: what was learned about them (superseded marks, recall counts,
      strength, tier);
    - the rewrite links.

    Reads what it can of a damaged file. Returns counts: ``{"episodes": {kind: n}, "commits_updated":
    n, "rewrites": n, "unreadable": n}``."""
    from .episodes import fts_doc

    out: dict[str, Any] = {"episodes": {}, "commits_updated": 0, "rewrites": 0, "unreadable": 0}
    try:
        src = _Reader(old)
    except sqlite3.Error:
        out["unreadable"] = -1
        return out
    try:
        new_cols = [r[1] for r in db.execute("PRAGMA table_info(episodes)")]
        cols = [c for c in src.columns("episodes") if c in new_cols and c != "id"]
        if "id" not in src.columns("episodes") or not {"kind", "source"} <= set(cols):
            out["unreadable"] = -1
            return out
        stored = {r[0] for r in db.execute(
            f"SELECT source FROM episodes WHERE kind IN ({','.join('?' * len(GIT_KINDS))})", GIT_KINDS)}
        file_cols = [c for c in src.columns("episode_files") if c != "episode_id"
                     and c in {r[1] for r in db.execute("PRAGMA table_info(episode_files)")}]
        sym_cols = [c for c in src.columns("episode_symbols") if c != "episode_id"
                    and c in {r[1] for r in db.execute("PRAGMA table_info(episode_symbols)")}]
        learned = [c for c in ("valid_to", "superseded_by", "recall_count", "last_recalled", "strength", "tier",
                               "confidence") if c in cols]
        with transaction(db):
            for r in src.rows("episodes", ["id", *cols]):
                kind, source = r["kind"], r["source"]
                if kind in GIT_KINDS and source in stored:
                    if learned:
                        db.execute(f"UPDATE episodes SET {', '.join(f'{c} = ?' for c in learned)} "
                                   "WHERE kind = ? AND source = ?", (*(r[c] for c in learned), kind, source))
                        out["commits_updated"] += 1
                    continue
                cur = db.execute(f"INSERT OR IGNORE INTO episodes ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                 tuple(r[c] for c in cols))
                if cur.rowcount == 0:
                    continue
                eid = int(cur.lastrowid)  # type: ignore[arg-type]
                if file_cols:
                    db.executemany(
                        f"INSERT OR IGNORE INTO episode_files (episode_id, {', '.join(file_cols)}) "
                        f"VALUES (?, {', '.join('?' * len(file_cols))})",
                        [(eid, *tuple(f)) for f in src.children("episode_files", file_cols, r["id"])])
                if sym_cols:
                    db.executemany(
                        f"INSERT OR IGNORE INTO episode_symbols (episode_id, {', '.join(sym_cols)}) "
                        f"VALUES (?, {', '.join('?' * len(sym_cols))})",
                        [(eid, *tuple(s)) for s in src.children("episode_symbols", sym_cols, r["id"])])
                if kind in GIT_KINDS:
                    try:
                        parents = json.loads(r["data"] or "{}").get("parents") or []
                    except (ValueError, AttributeError, IndexError):
                        parents = []
                    db.executemany("INSERT OR IGNORE INTO commit_parents (sha, parent, idx) VALUES (?, ?, ?)",
                                   [(source, p, i) for i, p in enumerate(parents)])
                db.execute("INSERT INTO episodes_fts (rowid, title, body, paths, symbols, diff, terms) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", (eid, *fts_doc(db, eid)))
                out["episodes"][kind] = out["episodes"].get(kind, 0) + 1
            rw: list[str] = [c for c in ("old_sha", "new_sha", "kind", "ts") if c in src.columns("rewrites")]
            if len(rw) == 4:
                for r in src.rows("rewrites", rw):
                    cur = db.execute("INSERT OR IGNORE INTO rewrites (old_sha, new_sha, kind, ts) VALUES (?, ?, ?, ?)",
                                     tuple(r[c] for c in rw))
                    out["rewrites"] += cur.rowcount
        out["unreadable"] = src.unreadable
        return out
    finally:
        src.close()
