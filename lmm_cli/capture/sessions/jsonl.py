"""Reading a JSON-lines transcript from a byte offset: whole lines only, any bytes, any junk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["records", "parse_ts"]

MAX_LINE = 16 << 20  # a line longer than this (a pasted binary?) is skipped, not held in memory twice


def records(path: Path, offset: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    """(offset of the line, object) for each complete JSON object line from ``offset`` on.

    A last line without its newline is not yielded: the writer may be in the middle of it, and the next
    read starts there. Lines that are not JSON objects are skipped; bytes that are not UTF-8 are replaced.
    """
    with open(path, "rb") as f:
        f.seek(offset)
        pos = offset
        for raw in f:
            start = pos
            pos += len(raw)
            if not raw.endswith(b"\n"):
                return
            if len(raw) > MAX_LINE:
                continue
            try:
                obj = json.loads(raw.decode("utf-8", "replace"))
            except ValueError:
                continue
            if isinstance(obj, dict):
                yield start, obj


def complete_length(path: Path) -> int:
    """Bytes of ``path`` up to and including its last newline."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        back = min(size, 1 << 16)
        while back:
            f.seek(size - back)
            chunk = f.read(back)
            i = chunk.rfind(b"\n")
            if i >= 0:
                return size - back + i + 1
            if back == size:
                return 0
            back = min(size, back * 2)
        return 0


def parse_ts(value: Any) -> float:
    """An ISO-8601 timestamp (``2026-11-27T10:00:00.123Z``) or epoch number → epoch seconds; 0 if unreadable."""
    if isinstance(value, (int, float)):
        return float(value) / (1000.0 if value > 1e11 else 1.0)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0
