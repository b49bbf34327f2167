"""Fitting recall's fusion weights to this repository, on its own history, without being asked.

The same time travel as ``lmm bench localize``: cut the history before the latest N non-merge
commits, build a private memory of what existed at the cut, and ask each held-out commit's message
which files it changed. Channel scores are computed once; the weights are then fitted by
coordinate ascent (``system.tune``).

A fit is kept only when it generalises forward in time: weights fitted on the early half of the
held-out commits must score at least as well as the defaults on the later half. Then the weights
fitted on all of them are saved; otherwise the defaults stay (or come back). Every outcome —
saved, kept defaults, history too short, failed — is recorded in the store's ``state`` table
(``fusion_tuning``) with its figures, for ``lmm status`` and for deciding when to tune again.

``maybe_start`` is called after ``lmm init`` and after each drain: it starts
``python -m lmm_cli.bench.autotune STORE`` detached, at low priority, when the history is long
enough and enough commits arrived since the last tune. One tune runs at a time (``tune.lock``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..capture.lock import CaptureLock, lock_is_held
from ..errors import BadInput
from ..workspace import Workspace

__all__ = ["tune_store", "record", "last_tuning", "maybe_start", "tuning_running", "MIN_COMMITS", "STATE_KEY"]

STATE_KEY = "fusion_tuning"
MIN_COMMITS = 150  # captured commits before an automatic tune is worth its CPU (about 30+ queries)
LOCK_NAME = "tune"  # tune.lock: one tune at a time per store
LOG_FILE = "tune.log"


class TuneBusy(BadInput):
    """Another tune holds the store's tune lock."""


def tuning_running(store_dir: Path) -> bool:
    return lock_is_held(store_dir, LOCK_NAME)


# --------------------------------------------------------------------------- state


def last_tuning(db: sqlite3.Connection) -> dict[str, Any] | None:
    row = db.execute("SELECT value FROM state WHERE key = ?", (STATE_KEY,)).fetchone()
    if not row:
        return None
    try:
        out = json.loads(row[0])
    except ValueError:
        return None
    return out if isinstance(out, dict) else None


_KEEP: dict[str, float] = {}  # record(): leave the weights in use as they are


def record(db: sqlite3.Connection, outcome: dict[str, Any], weights: dict[str, float] | None = _KEEP) -> None:
    """Store the outcome and set the weights recall uses: ``weights``; None for the defaults (a fit
    that did not generalise must not leave an older one in place); left out, unchanged (a tune
    that could not run says nothing against the weights in use)."""
    from ..address.recall import save_weights
    from ..store.db import transaction

    with transaction(db):
        if weights is None:
            db.execute("DELETE FROM state WHERE key = 'fusion_weights'")
        elif weights is not _KEEP:
            save_weights(db, weights)
        db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   (STATE_KEY, json.dumps(outcome, sort_keys=True)))


def _commit_count(db: sqlite3.Connection) -> int:
    return db.execute("SELECT count(*) FROM episodes WHERE kind = 'commit' AND valid_to IS NULL").fetchone()[0]


def generalises(late_default: dict[str, float], late_tuned: dict[str, float]) -> bool:
    """The rule for keeping a fit: on the later half, the weights fitted on the earlier half do at
    least as well as the defaults on the tuning objective (mean of MRR and Hit@5)."""
    return (late_tuned["mrr"] + late_tuned["hit5"]) >= (late_default["mrr"] + late_default["hit5"]) - 1e-12


def settle(db: sqlite3.Connection, base: dict[str, Any], late: dict[str, Any],
           tuned_all: dict[str, float]) -> dict[str, Any]:
    """Apply the rule to a finished fit, record the outcome and set the weights recall uses.
    ``late``: {queries, default, tuned} scores on the later half; ``base`` carries at least
    ``embed`` (without the dense channel its weight stays the default: it was not measured)."""
    from ..address.recall import DEFAULT_WEIGHTS

    keep = generalises(late["default"], late["tuned"])
    if not base.get("embed", True):
        tuned_all = {**tuned_all, "dense": DEFAULT_WEIGHTS["dense"]}
    outcome = {"at": time.time(), "commits": _commit_count(db), **base,
               "status": "saved" if keep else "kept-defaults", "late": late,
               "weights": tuned_all if keep else dict(DEFAULT_WEIGHTS)}
    record(db, outcome, tuned_all if keep else None)
    return outcome


# --------------------------------------------------------------------------- the fit


def tune_store(ws: Workspace, *, holdout: int | None = None, embed: bool | None = None,
               say: Callable[[str], None] | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Fit, check and record fusion weights for ``ws``. Returns the recorded outcome.

    ``holdout``: latest non-merge commits used as questions (default: config, at most half the
    history). ``embed``: include the dense channel (default: when the store has embeddings)."""
    from ..address.recall import DEFAULT_WEIGHTS
    from .localize import evaluate, snapshot, tune_split
    from .system import MIN_TUNE_QUERIES, LmmSystem, tune

    say = say or (lambda _m: None)
    lock = CaptureLock(ws.dir, LOCK_NAME)
    if not lock.acquire():
        raise TuneBusy("a tune is already running for this repository (see `lmm status`)")
    db = ws.connect()
    t0 = time.monotonic()
    try:
        if embed is None:
            embed = db.execute("SELECT 1 FROM vectors LIMIT 1").fetchone() is not None
        commits = _commit_count(db)
        want = holdout or ws.config().recall.tune_holdout
        nonmerge = int(subprocess.run(["git", "-C", str(ws.repo.root), "rev-list", "--count", "--no-merges",
                                       "--first-parent", "HEAD"], capture_output=True, text=True).stdout.strip() or 0)
        hold = min(want, nonmerge // 2)
        base: dict[str, Any] = {"at": time.time(), "commits": commits, "holdout": hold, "embed": embed,
                                "head": ws.repo.head()}
        if hold < 2:
            outcome = {**base, "status": "too-short", "queries": 0,
                       "reason": f"{nonmerge} non-merge commits on HEAD: too few to hold any out"}
            record(db, outcome)
            return outcome
        with snapshot(ws.repo.root, hold) as snap:
            queries = snap.queries
            base.update(cut=snap.cut, queries=len(queries))
            say(f"cut {snap.cut[:12]}: {len(snap.files)} files, {len(snap.history)} commits before it, "
                f"{len(queries)} questions")
            if len(queries) < MIN_TUNE_QUERIES:
                outcome = {**base, "status": "too-short",
                           "reason": f"{len(queries)} usable held-out commits; at least {MIN_TUNE_QUERIES} are needed"}
                record(db, outcome)
                return outcome
            lmm = LmmSystem(embed=embed, progress=progress)
            try:
                lmm.build(snap.root, list(snap.files), list(snap.history))
                say(f"memory at the cut built in {lmm.build_seconds:.0f}s; fitting")
                early, late = tune_split(queries)
                tuned_early, _ = tune(lmm, early)
                tuned_all, _ = tune(lmm, queries)

                def scored(name: str, weights: dict[str, float], qs: list[Any]) -> dict[str, float]:
                    r = evaluate(name, lmm.ranker(weights), qs)
                    return {"hit1": r.hit1, "hit5": r.hit5, "mrr": r.mrr}

                late_default = scored("default", DEFAULT_WEIGHTS, late)
                late_tuned = scored("tuned", tuned_early, late)
                all_default = scored("default", DEFAULT_WEIGHTS, queries)
                all_tuned = scored("tuned", tuned_all, queries)
            finally:
                lmm.close()
        return settle(db, {**base, "seconds": round(time.monotonic() - t0, 1),
                           "all": {"default": all_default, "tuned": all_tuned}},
                      {"queries": len(late), "default": late_default, "tuned": late_tuned}, tuned_all)
    finally:
        db.close()
        lock.release()


# --------------------------------------------------------------------------- in the background


def auto_tune_enabled(ws: Workspace) -> bool:
    if os.environ.get("LMM_AUTO_TUNE", "").strip() == "0":
        return False
    try:
        return ws.config().recall.auto_tune
    except Exception:  # noqa: BLE001 - a broken config is reported by the commands that read it
        return False


def due(ws: Workspace, db: sqlite3.Connection) -> bool:
    """Whether an automatic tune should run now: enabled, enough history, and enough new commits
    since the last recorded outcome (whatever it was, so a failing tune is not retried per commit)."""
    if not auto_tune_enabled(ws):
        return False
    n = _commit_count(db)
    if n < MIN_COMMITS:
        return False
    last = last_tuning(db)
    if last is None:
        return True
    every = ws.config().recall.retune_after
    return every > 0 and n - int(last.get("commits", 0)) >= every


def maybe_start(ws: Workspace, db: sqlite3.Connection) -> bool:
    """Start a background tune if one is due and none is running. Never raises; True if started."""
    try:
        if not due(ws, db) or tuning_running(ws.dir):
            return False
        ws.logs.mkdir(exist_ok=True)
        subprocess.Popen([sys.executable, "-m", "lmm_cli.bench.autotune", str(ws.dir)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True, cwd=str(ws.dir))
        return True
    except Exception:  # noqa: BLE001 - tuning is an optimisation; never fail the caller for it
        return False


def _log(ws: Workspace, msg: str) -> None:
    try:
        ws.logs.mkdir(exist_ok=True)
        with open(ws.logs / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(f"{time.time():.6f} {os.getpid()} {msg}\n")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """The detached run: ``python -m lmm_cli.bench.autotune STORE_DIR``. Logs to logs/tune.log."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        return 0
    try:
        os.nice(15)
    except OSError:
        pass
    from ..workspace import workspace_from_store

    store = Path(argv[0])
    try:
        ws = workspace_from_store(store)
    except (OSError, ValueError, KeyError):
        return 0
    _log(ws, "start")
    try:
        out = tune_store(ws, say=lambda m: _log(ws, m))
        _log(ws, f"end {out['status']} queries={out.get('queries', 0)}")
    except TuneBusy:
        _log(ws, "busy: another tune is running")
    except Exception as e:  # noqa: BLE001 - record the failure so the next drain does not retry at once
        _log(ws, f"error {type(e).__name__}: {str(e)[:300]} {traceback.format_exc(limit=3)!r}")
        try:
            db = ws.connect()
            try:
                record(db, {"at": time.time(), "commits": _commit_count(db), "status": "failed",
                            "reason": f"{type(e).__name__}: {str(e)[:200]}"})
            finally:
                db.close()
        except Exception:  # noqa: BLE001
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
