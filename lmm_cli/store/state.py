"""Outcomes kept as JSON in the store's ``state`` table (fits, rounds, rankers): read them back."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

__all__ = ["read_json"]


def read_json(db: sqlite3.Connection, key: str) -> dict[str, Any] | None:
    """The JSON object stored under ``key``, or None when there is none or it is not an object."""
    row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    if not row:
        return None
    try:
        out = json.loads(row[0])
    except ValueError:
        return None
    return out if isinstance(out, dict) else None
