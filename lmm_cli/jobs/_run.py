"""What every background job shares: a log line in the store, and a start that never fails its caller."""

from __future__ import annotations

import os
import time
from pathlib import Path


def log(store_dir: Path, name: str, msg: str) -> None:
    """Append one line to ``logs/NAME.log``: times, counts and errors, never captured text."""
    try:
        (store_dir / "logs").mkdir(exist_ok=True)
        with open(store_dir / "logs" / f"{name}.log", "a", encoding="utf-8") as f:
            f.write(f"{time.time():.6f} {os.getpid()} {msg}\n")
    except OSError:
        pass


def detach(nice: int) -> None:
    """Leave the starter's session (a terminal's hangup or Ctrl-C in the git command never reaches
    us) and run at low priority."""
    try:
        os.setsid()
    except OSError:
        pass
    try:
        os.nice(nice)
    except OSError:
        pass
