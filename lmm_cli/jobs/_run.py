"""What every background job shares: how it starts (detached, at low priority, from a store folder).

Logging is ``store.logs.append`` (re-exported here as ``log``)."""

from __future__ import annotations

import os
from pathlib import Path

from ..store.logs import append as log

__all__ = ["log", "start", "detach"]


def start(argv: list[str] | None, nice: int) -> Path | None:
    """The store a job was started for (its first argument), after leaving the starter's session at
    ``nice``; None when started without one (nothing to do)."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        return None
    detach(nice)
    return Path(argv[0])


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
