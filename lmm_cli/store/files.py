"""Durable writes of the files a store keeps beside its database (adapter and ranker versions).

A version is written under a temporary name, each file synced, then renamed into place and its
folder synced, so a kill at any point leaves either the old state or the new one, never half."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "write_synced"]


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (best effort where folders cannot be synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and sync it to disk before returning."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
