"""The hook-woken drainer: ``python -m lmm_cli.jobs.drain STORE_DIR``.

A git hook queues an event and starts this, detached, unless a drainer is already running. It
captures the queue (``capture.drain``), then does what follows every capture (``core.after_capture``:
refresh the indexes, maybe start a fit), logs to ``logs/drain.log`` and exits 0 whatever happens.
"""

from __future__ import annotations

import sqlite3
import sys
import traceback

from ..capture.drain import DrainResult, drain
from ..workspace import Workspace, workspace_from_store
from ._run import log, start

__all__ = ["main"]


def _after(ws: Workspace, db: sqlite3.Connection, result: DrainResult) -> None:
    from ..capture.rescan import rescan_if_needed
    from ..core import after_capture

    # Still under the capture lock: a store redacted under older rules is re-redacted (once) here
    # too, since hooks may be the only capture a repository ever sees after an upgrade.
    rescanned = rescan_if_needed(db)
    if rescanned is not None:
        log(ws.dir, "drain", f"rescanned episodes={rescanned.episodes} files={rescanned.files}")
    out = after_capture(ws, db, new_commits=result.commits)
    if out["tuning_started"]:
        log(ws.dir, "drain", "tune-started")


def main(argv: list[str] | None = None) -> int:
    store = start(argv, nice=10)
    if store is None:
        return 0
    try:
        drain(workspace_from_store(store), after=_after)
    except Exception:  # noqa: BLE001 - a background job never fails; the log says why
        log(store, "drain", f"crash {traceback.format_exc(limit=3)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
