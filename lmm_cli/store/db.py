"""Open the store: SQLite in WAL mode, migrated on connect, with SQLite's failures turned into
one-line domain errors (locked, corrupt, written by a newer lmm)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import StoreCorrupt, StoreFull, StoreLocked, StoreTooNew, StoreUnwritable
from .migrations import MIGRATIONS, migrate, schema_version
from .tx import Transaction, rollback, transaction

__all__ = ["DB_FILE", "connect", "transaction", "rollback", "Transaction", "translate"]

DB_FILE = "lmm.db"


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


def connect(store_dir: Path, *, create: bool = False) -> sqlite3.Connection:
    """Connect to the store in ``store_dir`` and bring its schema up to date."""
    path = store_dir / DB_FILE
    if not create and not path.exists():
        raise FileNotFoundError(path)
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly what we say.
        timeout = busy_timeout_ms()
        db = sqlite3.connect(path, timeout=timeout / 1000, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {timeout}")
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
    except sqlite3.Error as e:
        raise translate(e, path) from None
    return db
