"""The store's logs: ``logs/NAME.log`` (drain, tune, sessions, hooks, watch), one line per event.

Each line is ``<unix time> <pid> <message>``: times, counts and errors, never captured text. A log past
``MAX_BYTES`` keeps its newer half, so a repository that commits for years does not grow one without end.
Writing a log never fails its caller.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["append", "MAX_BYTES"]

MAX_BYTES = 1 << 20


def append(store_dir: Path, name: str, msg: str) -> None:
    path = store_dir / "logs" / f"{name}.log"
    try:
        path.parent.mkdir(exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{time.time():.6f} {os.getpid()} {msg}\n")
            size = f.tell()
        if size > MAX_BYTES:
            data = path.read_bytes()
            path.write_bytes(data[data.find(b"\n", len(data) // 2) + 1:])
    except OSError:
        pass
