"""The background fit of recall's weights: ``python -m lmm_cli.jobs.tune STORE_DIR``.

Started detached at low priority by ``core.after_capture`` when a fit is due (``model.fusion.due``).
Logs to ``logs/tune.log``; a crash is recorded as a failed fit, so the next capture does not start
another one at once. Stopped by SIGTERM, SIGINT or SIGHUP, it removes its temporary worktree and
store first; what a ``kill -9`` leaves behind, the next fit removes (``replay.prune_leftovers``).
Always exits 0.
"""

from __future__ import annotations

import sys
import traceback

from ..errors import LmmError
from ..model.fusion import TuneBusy, record_failure, tune_store
from ..workspace import workspace_from_store
from ._run import log, start

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    store = start(argv, nice=15)
    if store is None:
        return 0
    try:
        ws = workspace_from_store(store)
    except (OSError, ValueError, KeyError, LmmError) as e:  # the repository is gone or moved meanwhile
        log(store, "tune", f"no repository: {type(e).__name__}: {str(e)[:200]}")
        return 0

    def say(msg: str) -> None:
        log(store, "tune", msg)

    say("start")
    try:
        out = tune_store(ws, say=say)
        say(f"end {out['status']} queries={out.get('queries', 0)}")
    except TuneBusy:
        say("busy: another tune is running")
    except KeyboardInterrupt:  # SIGTERM/SIGINT/SIGHUP: the temporary worktree and store are removed by now
        say("stopped by a signal; temporary worktree and store removed")
    except Exception as e:  # noqa: BLE001 - record the failure so the next drain does not retry at once
        say(f"error {type(e).__name__}: {str(e)[:300]} {traceback.format_exc(limit=3)!r}")
        try:
            record_failure(ws, f"{type(e).__name__}: {str(e)[:200]}")
        except Exception:  # noqa: BLE001
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
