"""Write transactions: the one helper every write goes through (migrations included).

Connections are opened with ``isolation_level=None``, so a transaction is exactly what is written
here: ``BEGIN IMMEDIATE`` takes the write lock up front (no deadlock between two readers that both
want to write), and every failure rolls back without hiding the error that caused it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Transaction", "transaction", "rollback"]


class Transaction:
    """An open write transaction; ``checkpoint()`` commits what is written so far and goes on in a
    new one (a long capture commits in batches, so a kill loses at most one batch)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def checkpoint(self) -> None:
        self.db.execute("COMMIT")
        self.db.execute("BEGIN IMMEDIATE")


def rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open. SQLite has already rolled back by itself after
    some failures (a full disk, an I/O error); a second ROLLBACK would then raise "no transaction
    is active" and hide the error that matters."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[Transaction]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception (including KeyboardInterrupt and a
    failing COMMIT); the original error is the one raised. Nested inside a transaction the caller
    already holds, it joins that one instead."""
    if db.in_transaction:
        yield Transaction(db)
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield Transaction(db)
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise
