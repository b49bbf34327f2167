"""Recall's fusion weights, fitted to the repository's own history.

Recall fuses its channels by a weighted sum (``address.recall``). The weights are fitted by
replaying history (``replay``): a memory built at a cut before the latest N non-merge commits, each
of those commits' messages asking which files it changed. Channel scores are computed once per
question, so a weight setting costs no index work; coordinate ascent over ``GRID`` finds the
weights that rank the answers highest (``fit``).

A fit is kept only under the promotion rule (``promote``): weights fitted on the early half of the
held-out commits must do at least as well as the defaults on the later half. Then the weights
fitted on all of them are saved; otherwise the defaults stay (or come back). Every outcome — saved,
kept defaults, history too short, failed — is recorded in the store's ``state`` table
(``fusion_tuning``) with its figures, for ``lmm status`` and for deciding when to fit again
(``due``). One fit runs at a time per store (``tune.lock``); ``jobs.tune`` is the background run.
The same run fits the learned ranker on the same replay (``ranker``), judged by the same rule
against the linear fusion these weights give.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..address.recall import CHANNELS, DEFAULT_WEIGHTS, Recaller, save_weights
from ..errors import BadInput
from ..store.db import transaction
from ..store.lock import CaptureLock, lock_is_held
from ..store.state import read_json
from ..workspace import Workspace
from . import promote

__all__ = [
    "GRID", "MIN_TUNE_QUERIES", "MIN_COMMITS", "STATE_KEY", "LOCK_NAME", "TuneBusy", "objective", "fit",
    "tune_store", "settle", "record", "last_tuning", "tuning_running", "due", "auto_tune_enabled",
]

GRID = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
MIN_TUNE_QUERIES = 30  # below this, a fitted weight says more about a few commits than the repository
MIN_COMMITS = 150  # captured commits before an automatic fit is worth its CPU (about 30+ queries)
STATE_KEY = "fusion_tuning"
LOCK_NAME = "tune"  # tune.lock: one fit at a time per store


class TuneBusy(BadInput):
    """Another fit holds the store's tune lock."""


# --------------------------------------------------------------------------- the fit


def _scores(system: Any, queries: Sequence[Any], weights: dict[str, float], depth: int = 100) -> dict[str, float]:
    """MRR and Hit@5 of ``system``'s cached channel scores fused under ``weights``."""
    mrr = hit5 = 0.0
    for q in queries:
        ranked = Recaller.fuse(system.channels(q.text), weights)
        for i, (p, _) in enumerate(ranked[:depth]):
            if p in q.gold:
                mrr += 1.0 / (i + 1)
                hit5 += i < 5
                break
    n = max(1, len(queries))
    return {"mrr": mrr / n, "hit5": hit5 / n}


def objective(system: Any, queries: Sequence[Any], weights: dict[str, float]) -> float:
    """What fitting maximises: the promotion rule's score (mean of MRR and Hit@5)."""
    return promote.score(_scores(system, queries, weights))


def fit(system: Any, queries: Sequence[Any], *, rounds: int = 3) -> tuple[dict[str, float], float]:
    """Coordinate ascent over ``GRID`` for each channel's weight, from the system's current weights,
    on ``objective``. A weight only moves when the gain is worth at least half a query's hit (gains
    smaller than that are noise on a few hundred queries, and chasing them overfits). With fewer
    than ``MIN_TUNE_QUERIES`` queries the weights are returned unchanged."""
    best = dict(system.weights)
    best_score = objective(system, queries, best)
    if len(queries) < MIN_TUNE_QUERIES:
        return best, best_score
    min_gain = 0.5 / max(1, len(queries))
    for _ in range(rounds):
        improved = False
        for c in CHANNELS:
            cand, cand_score = None, best_score + min_gain
            for v in GRID:
                trial = {**best, c: v}
                if not any(trial.get(q, 0) > 0 for q in ("lexical", "names", "history", "dense")):
                    continue
                s = objective(system, queries, trial)
                if s > cand_score:
                    cand, cand_score = trial, s
            if cand is not None:
                best, best_score, improved = cand, cand_score, True
        if not improved:
            break
    return best, best_score


# --------------------------------------------------------------------------- state


def tuning_running(store_dir: Any) -> bool:
    return lock_is_held(store_dir, LOCK_NAME)


def last_tuning(db: sqlite3.Connection) -> dict[str, Any] | None:
    return read_json(db, STATE_KEY)


_KEEP: dict[str, float] = {}  # record(): leave the weights in use as they are


def record(db: sqlite3.Connection, outcome: dict[str, Any], weights: dict[str, float] | None = _KEEP) -> None:
    """Store the outcome and set the weights recall uses: ``weights``; None for the defaults (a fit
    that did not generalise must not leave an older one in place); left out, unchanged (a fit
    that could not run says nothing against the weights in use)."""
    with transaction(db):
        if weights is None:
            db.execute("DELETE FROM state WHERE key = 'fusion_weights'")
        elif weights is not _KEEP:
            save_weights(db, weights)
        db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   (STATE_KEY, json.dumps(outcome, sort_keys=True)))


def _commit_count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM episodes WHERE kind = 'commit' AND valid_to IS NULL").fetchone()[0])


def settle(db: sqlite3.Connection, base: dict[str, Any], late: dict[str, Any],
           tuned_all: dict[str, float]) -> dict[str, Any]:
    """Apply the promotion rule to a finished fit, record the outcome and set the weights recall
    uses. ``late``: {queries, default, tuned} scores on the later half; ``base`` carries at least
    ``embed`` (without the dense channel its weight stays the default: it was not measured)."""
    keep = promote.judge(late["default"], late["tuned"]).promote
    if not base.get("embed", True):
        tuned_all = {**tuned_all, "dense": DEFAULT_WEIGHTS["dense"]}
    outcome = {"at": time.time(), "commits": _commit_count(db), **base,
               "status": "saved" if keep else "kept-defaults", "late": late,
               "weights": tuned_all if keep else dict(DEFAULT_WEIGHTS)}
    record(db, outcome, tuned_all if keep else None)
    return outcome


def record_failure(ws: Workspace, reason: str) -> None:
    """Record a fit that crashed, so the next capture does not start another one at once."""
    db = ws.connect()
    try:
        record(db, {"at": time.time(), "commits": _commit_count(db), "status": "failed", "reason": reason})
    finally:
        db.close()


def tune_store(ws: Workspace, *, holdout: int | None = None, embed: bool | None = None,
               say: Callable[[str], None] | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Fit, judge and record fusion weights for ``ws``. Returns the recorded outcome.

    ``holdout``: latest non-merge commits used as questions (default: config, at most half the
    history). ``embed``: include the dense channel (default: when the store has embeddings)."""
    from .replay import ReplayMemory, evaluate, snapshot, tune_split

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
        out = ws.repo.git("rev-list", "--count", "--no-merges", "--first-parent", "HEAD", check=False)
        nonmerge = int(out.decode().strip() or 0)
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
            memory = ReplayMemory(embed=embed, progress=progress)
            try:
                memory.build(snap.root, list(snap.files), list(snap.history))
                say(f"memory at the cut built in {memory.build_seconds:.0f}s; fitting")
                early, late = tune_split(queries)
                tuned_early, _ = fit(memory, early)
                tuned_all, _ = fit(memory, queries)

                def scored(name: str, weights: dict[str, float], qs: list[Any]) -> dict[str, float]:
                    r = evaluate(name, memory.ranker(weights), qs)
                    return {"hit1": r.hit1, "hit5": r.hit5, "mrr": r.mrr}

                late_default = scored("default", DEFAULT_WEIGHTS, late)
                late_tuned = scored("tuned", tuned_early, late)
                all_default = scored("default", DEFAULT_WEIGHTS, queries)
                all_tuned = scored("tuned", tuned_all, queries)
                learned = _try_ranker(ws, db, memory, queries, early, late, tuned_early, tuned_all,
                                      promote.judge(late_default, late_tuned).promote, embed, base, say)
            finally:
                memory.close()
        return settle(db, {**base, "seconds": round(time.monotonic() - t0, 1), "ranker": learned,
                           "all": {"default": all_default, "tuned": all_tuned}},
                      {"queries": len(late), "default": late_default, "tuned": late_tuned}, tuned_all)
    finally:
        db.close()
        lock.release()


def _try_ranker(ws: Workspace, db: sqlite3.Connection, memory: Any, queries: Sequence[Any], early: Sequence[Any],
                late: Sequence[Any], tuned_early: dict[str, float], tuned_all: dict[str, float], keep: bool,
                embed: bool, base: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    """The learned ranker's fit on the same replay (``ranker.tune``), judged against the linear
    fusion these weights give (fitted on the early half when judged, on all when saved). A ranker
    that cannot be fitted (no LightGBM, a crash) leaves the weights' fit unharmed: recorded as
    failed, what is in use stays. Returns its status and figures for the weights' outcome."""
    from . import ranker

    w_early = dict(tuned_early) if keep else dict(DEFAULT_WEIGHTS)
    w_all = dict(tuned_all) if keep else dict(DEFAULT_WEIGHTS)
    if keep and not embed:
        w_all["dense"] = DEFAULT_WEIGHTS["dense"]  # as ``settle`` saves it
    try:
        out = ranker.tune(ws.dir, db, memory, queries, early, late, weights_early=w_early, weights_all=w_all,
                          embed=embed, base={"cut": base.get("cut"), "head": base.get("head")})
    except Exception as e:  # noqa: BLE001 - the weights' fit is recorded whatever happens to the ranker's
        out = {"at": time.time(), "embed": embed, "status": "failed", "reason": f"{type(e).__name__}: {e}"[:300]}
        try:
            ranker.record(db, out)
        except sqlite3.Error:
            pass
    say(f"learned ranker: {out['status']}" + (f" ({out['reason']})" if out.get("reason") else ""))
    return {k: out[k] for k in ("status", "late", "version", "reason") if k in out}


# --------------------------------------------------------------------------- when to fit again


def auto_tune_enabled(ws: Workspace) -> bool:
    if os.environ.get("LMM_AUTO_TUNE", "").strip() == "0":
        return False
    try:
        return ws.config().recall.auto_tune
    except Exception:  # noqa: BLE001 - a broken config is reported by the commands that read it
        return False


def due(ws: Workspace, db: sqlite3.Connection) -> bool:
    """Whether an automatic fit should run now: enabled, enough history, none running, and enough
    new commits since the last recorded outcome (whatever it was, so a failing fit is not retried
    on every commit)."""
    if not auto_tune_enabled(ws):
        return False
    n = _commit_count(db)
    if n < MIN_COMMITS:
        return False
    if tuning_running(ws.dir):
        return False
    last = last_tuning(db)
    if last is None:
        return True
    every = ws.config().recall.retune_after
    return every > 0 and n - int(last.get("commits", 0)) >= every
