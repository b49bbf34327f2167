"""The background training round: ``python -m lmm_cli.jobs.train STORE_DIR``.

Started detached at low priority by ``core.after_capture`` when a round is due
(``model.rounds.round_due``) and by ``lmm forget`` to retrain without what was forgotten. One round
(``model.rounds.run_round``), its threads bounded by ``train.threads``; logs to ``logs/train.log``.
A crash is recorded as a failed round, so the next capture does not start another at once; a
``kill -9`` leaves the round's plan and checkpoint, from which the next round resumes. Always
exits 0.
"""

from __future__ import annotations

import os
import shutil
import sys
import traceback

from ..errors import LmmError
from ..model.rounds import TrainBusy, record_failure, round_dir, run_round
from ..workspace import workspace_from_store
from ._run import log, start

__all__ = ["main"]


def _bound_threads(n: int) -> None:
    """Before numpy or torch load: their thread pools take this many threads at most."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(max(1, n)))


def main(argv: list[str] | None = None) -> int:
    store = start(argv, nice=15)
    if store is None:
        return 0
    try:
        ws = workspace_from_store(store)
        _bound_threads(ws.config().train.threads)
    except (OSError, ValueError, KeyError, LmmError) as e:  # the repository is gone or moved meanwhile
        log(store, "train", f"no repository: {type(e).__name__}: {str(e)[:200]}")
        return 0

    def say(msg: str) -> None:
        log(store, "train", msg)

    say("start")
    try:
        out = run_round(ws, say=say)
        say(f"end {out['status']}: {out.get('reason', '')}")
    except TrainBusy:
        say("busy: another round is running")
    except KeyboardInterrupt:  # SIGTERM/SIGINT/SIGHUP: the plan and checkpoint stay for the next round
        say("stopped by a signal; the next round resumes from its checkpoint")
    except Exception as e:  # noqa: BLE001 - record the failure so the next capture does not retry at once
        say(f"error {type(e).__name__}: {str(e)[:300]} {traceback.format_exc(limit=3)!r}")
        try:
            shutil.rmtree(round_dir(ws.dir), ignore_errors=True)  # not resumed: it would fail again
            record_failure(ws, f"{type(e).__name__}: {str(e)[:200]}")
        except Exception:  # noqa: BLE001
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
