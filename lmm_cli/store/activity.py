"""The activity signal: which repository files were edited lately ("what is active now").

One row per file in ``activity`` (migration m006): the latest edit's time, who saw it (``watch``:
``lmm watch`` on the working tree; ``cursor``: the ``afterFileEdit`` hook) and how many edits. Recall's
working-set channel reads ``recent``; rows older than ``KEEP`` are pruned on each write.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterable

from .tx import transaction

__all__ = ["record", "recent", "WINDOW", "HALF_LIFE", "KEEP"]

WINDOW = 1800.0     # seconds: edits older than this are not "active now"
HALF_LIFE = 600.0   # an edit's weight halves every ten minutes
KEEP = 86400.0      # rows older than a day are dropped


def record(db: sqlite3.Connection, paths: Iterable[str], via: str, ts: float | None = None) -> int:
    """Note edits of ``paths`` (repository paths) at ``ts`` (default now). Returns how many."""
    now = time.time() if ts is None else ts
    rows = [(p, now, via) for p in dict.fromkeys(paths) if p]
    if not rows:
        return 0
    with transaction(db):
        db.executemany(
            "INSERT INTO activity (path, ts, via) VALUES (?, ?, ?) ON CONFLICT(path) DO UPDATE SET"
            " ts = max(activity.ts, excluded.ts), via = excluded.via, n = activity.n + 1", rows)
        db.execute("DELETE FROM activity WHERE ts < ?", (now - KEEP,))
    return len(rows)


def recent(db: sqlite3.Connection, now: float | None = None, window: float = WINDOW) -> dict[str, float]:
    """Files edited in the last ``window`` seconds → a weight in (0, 1], 1 for an edit just now,
    halving every ``HALF_LIFE`` seconds. Empty where the store has no activity table yet."""
    now = time.time() if now is None else now
    try:
        rows = db.execute("SELECT path, ts FROM activity WHERE ts >= ?", (now - window,)).fetchall()
    except sqlite3.OperationalError:  # a store opened read-only before its migration
        return {}
    return {p: math.pow(0.5, max(0.0, now - ts) / HALF_LIFE) for p, ts in rows}
