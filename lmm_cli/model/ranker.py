"""The ranker learns too: recall's fusion as a LightGBM lambdarank model over the channels' features.

The linear fusion (``address.recall``) adds up ten weighted channel scores; its weights are fitted
on the replay (``fusion``). A learned ranker sees more of each file than its channel scores: its
rank in each channel, how many channels found it, what kind of file it is, how often and how
recently it changed, its share of the latest commits (a changelog's is high), the linear score
itself (``address.rerank.FEATURES``), and can combine them non-linearly. It is fitted on the same
replay, from the channel scores the replay already caches (no index work): each held-out commit's
message is a query (a group), the top ``rerank.CANDIDATES`` files of the linear fusion its
candidates, the files the commit changed its relevant ones (label 1).

It is kept under the one promotion rule (``promote.judge``): fitted on the early half of the
questions and scored on the later half beside the linear fusion recall would otherwise use, it
must do at least as well there. Then the ranker fitted on all of them is saved in the store folder
(``ranker/vNNNN/`` with ``model.txt`` and ``meta.json``, made active by an atomic switch of
``ranker/ACTIVE``); otherwise no ranker stays active. Every outcome is recorded with its figures in
the ``state`` table (``ranker_tuning``), beside the weights' (``fusion_tuning``).

Bounded for a background fit: small trees (``PARAMS``), a fixed number of rounds, one thread, a
fixed seed (the same replay gives the same model). LightGBM is imported only here, when fitting;
recall applies the saved trees with numpy (``address.rerank``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..address.rerank import (
    CANDIDATES,
    FEATURE_VERSION,
    FEATURES,
    RANKER_DIR,
    Forest,
    LearnedRanker,
    active_folder,
    feature_rows,
    load_ranker,
)
from ..store.db import transaction
from ..store.files import fsync_dir, write_synced
from ..store.state import read_json
from . import promote

__all__ = ["PARAMS", "ROUNDS", "MIN_QUERIES", "STATE_KEY", "Fitted", "training_set", "fit",
           "ranking", "trial", "save", "deactivate", "record", "last_ranker", "in_use", "tune"]

# LightGBM settings: shallow trees, strong leaf regularisation (a few hundred questions at most),
# one thread and a fixed seed. ``lambdarank_truncation_level`` 20: what matters is the top of the list.
PARAMS: dict[str, Any] = {
    "objective": "lambdarank", "metric": "ndcg", "eval_at": [5, 10], "num_leaves": 7, "learning_rate": 0.05,
    "min_data_in_leaf": 40, "min_sum_hessian_in_leaf": 1e-3, "lambda_l2": 1.0, "feature_fraction": 1.0,
    "bagging_fraction": 1.0, "lambdarank_truncation_level": 20, "num_threads": 1, "seed": 0,
    "deterministic": True, "force_col_wise": True, "verbose": -1,
}
ROUNDS = 100  # boosting rounds (trees)
MIN_QUERIES = 30  # questions with a relevant candidate, below which a fit says more about them than the repository
STATE_KEY = "ranker_tuning"
KEEP = 2  # version folders kept on disk (the active one and the one before)
_VERSION = re.compile(r"^v(\d{4,})$")


@dataclass
class Fitted:
    """A fitted model: LightGBM's model text and what it was fitted on."""
    text: str
    trees: int
    queries: int  # questions with at least one relevant candidate
    rows: int
    seconds: float

    def forest(self) -> Forest:
        return Forest.from_text(self.text)


# --------------------------------------------------------------------------- data


def training_set(system: Any, queries: Sequence[Any], weights: dict[str, float]) -> tuple[Any, Any, list[int]]:
    """(X, y, group sizes) over ``queries``: each one's top ``CANDIDATES`` of the linear fusion under
    ``weights``, label 1 for its gold files. Questions with no gold file among them teach nothing
    (every candidate is 0) and are left out."""
    import numpy as np

    st = system.file_stats()
    xs: list[list[float]] = []
    ys: list[float] = []
    groups: list[int] = []
    for q in queries:
        ranked, ch = system.fused(q.text, weights)
        head = ranked[:CANDIDATES]
        labels = [1.0 if p in q.gold else 0.0 for p, _ in head]
        if not any(labels):
            continue
        xs += feature_rows(head, ch, st)
        ys += labels
        groups.append(len(head))
    X = np.asarray(xs, dtype=np.float64).reshape(len(xs), len(FEATURES))
    return X, np.asarray(ys, dtype=np.float64), groups


def fit(system: Any, queries: Sequence[Any], weights: dict[str, float], *, rounds: int = ROUNDS,
        params: dict[str, Any] | None = None) -> Fitted | None:
    """A lambdarank model fitted on ``queries`` of the replay memory ``system`` (linear candidates
    under ``weights``); None when fewer than ``MIN_QUERIES`` of them have a relevant candidate."""
    t0 = time.monotonic()
    X, y, groups = training_set(system, queries, weights)
    if len(groups) < MIN_QUERIES:
        return None
    import lightgbm as lgb

    data = lgb.Dataset(X, label=y, group=groups, feature_name=list(FEATURES), free_raw_data=True)
    booster = lgb.train({**PARAMS, **(params or {})}, data, num_boost_round=rounds)
    return Fitted(booster.model_to_string(), booster.num_trees(), len(groups), int(X.shape[0]),
                  time.monotonic() - t0)


def ranking(system: Any, forest: Forest, weights: dict[str, float], depth: int = 100) -> Callable[[str], list[str]]:
    """Query → paths, best first: the linear fusion under ``weights`` re-ranked by ``forest``, as
    recall does with a saved ranker (``rerank.LearnedRanker.rerank``)."""
    return system.ranker(weights, depth, learned=LearnedRanker(forest, {}, Path(".")))


def _metrics(row: Any) -> dict[str, float]:
    return {"hit1": row.hit1, "hit5": row.hit5, "hit10": row.hit10, "recall": row.recall, "mrr": row.mrr}


def trial(system: Any, early: Sequence[Any], late: Sequence[Any], weights: dict[str, float]) -> dict[str, Any] | None:
    """Fit on ``early``, score on ``late`` beside the linear fusion under ``weights`` (the fusion
    recall would use, fitted on ``early`` too). None when ``early`` is too short to fit on. The
    result: {"queries", "linear", "ranker": metrics, "rows": (linear Row, ranker Row), "fitted"}."""
    from .replay import evaluate

    fitted = fit(system, early, weights)
    if fitted is None:
        return None
    lin = evaluate("lmm, linear fusion", system.ranker(weights), late)
    rk = evaluate("lmm, learned ranker", ranking(system, fitted.forest(), weights), late)
    return {"queries": len(late), "linear": _metrics(lin), "ranker": _metrics(rk), "rows": (lin, rk),
            "fitted": fitted}


# --------------------------------------------------------------------------- on disk


def _set_active(base: Path, name: str) -> None:
    tmp = base / "ACTIVE.tmp"
    write_synced(tmp, (name + "\n").encode())
    os.replace(tmp, base / "ACTIVE")
    fsync_dir(base)


def _versions(base: Path) -> list[tuple[int, Path]]:
    out = []
    for p in base.iterdir() if base.is_dir() else []:
        m = _VERSION.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


def _prune(base: Path, active: str | None) -> None:
    for p in base.iterdir():
        if p.name.startswith(".tmp-"):
            shutil.rmtree(p, ignore_errors=True)
    versions = _versions(base)
    for _, p in versions[:-KEEP]:
        if p.name != active:
            shutil.rmtree(p, ignore_errors=True)


def save(store_dir: Path, fitted: Fitted, meta: dict[str, Any]) -> Path:
    """Write ``fitted`` as the next version folder and make it the active ranker, atomically: the
    folder is written as ``.tmp-vNNNN`` and renamed, then ``ACTIVE`` is replaced; a reader sees the
    old ranker or the new one, never half of one. Returns the version folder."""
    base = Path(store_dir) / RANKER_DIR
    base.mkdir(parents=True, exist_ok=True)
    versions = _versions(base)
    name = f"v{(versions[-1][0] + 1) if versions else 1:04d}"
    tmp = base / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    full = {"format": "lmm-ranker", "feature_version": FEATURE_VERSION, "features": list(FEATURES),
            "created": time.time(), "trees": fitted.trees, "fit_queries": fitted.queries, "rows": fitted.rows,
            "params": PARAMS, "rounds": fitted.trees, **meta}
    write_synced(tmp / "model.txt", fitted.text.encode())
    write_synced(tmp / "meta.json", json.dumps(full, indent=1, sort_keys=True, default=str).encode())
    fsync_dir(tmp)
    os.rename(tmp, base / name)
    fsync_dir(base)
    _set_active(base, name)
    _prune(base, name)
    return base / name


def deactivate(store_dir: Path) -> None:
    """No learned ranker: recall fuses linearly (a fit that lost must not leave an older one active)."""
    base = Path(store_dir) / RANKER_DIR
    if not base.is_dir():
        return
    _set_active(base, "none")
    _prune(base, None)


def record(db: sqlite3.Connection, outcome: dict[str, Any]) -> None:
    with transaction(db):
        db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   (STATE_KEY, json.dumps(outcome, sort_keys=True, default=str)))


def last_ranker(db: sqlite3.Connection) -> dict[str, Any] | None:
    """The recorded outcome of the latest ranker fit, or None."""
    return read_json(db, STATE_KEY)


def in_use(store_dir: Path) -> dict[str, Any] | None:
    """What ``lmm status`` says of the active ranker: its version, when it was fitted, on what, and
    its figures beside the linear fusion; None when recall fuses linearly."""
    if active_folder(store_dir) is None:
        return None
    r = load_ranker(store_dir)
    if r is None:
        return None
    m = r.meta
    return {"version": r.folder.name, "created": m.get("created"), "embed": r.embed,
            "fit_queries": m.get("fit_queries"), "late": m.get("late")}


# --------------------------------------------------------------------------- the fit beside the weights' fit


def tune(store_dir: Path, db: sqlite3.Connection, system: Any, queries: Sequence[Any], early: Sequence[Any],
         late: Sequence[Any], *, weights_early: dict[str, float], weights_all: dict[str, float], embed: bool,
         base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit, judge, save (or deactivate) and record the learned ranker on a built replay memory.

    ``weights_early``: the linear fusion recall would use had only the early half been seen (the
    incumbent on the later half); ``weights_all``: the one recall uses now (the final ranker's
    candidates and ``fused`` feature). A history too short to fit on changes nothing in use."""
    t0 = time.monotonic()
    out: dict[str, Any] = {"at": time.time(), "embed": embed, "queries": len(queries), **(base or {})}
    t = trial(system, early, late, weights_early)
    if t is None:
        out.update(status="too-short", reason=f"fewer than {MIN_QUERIES} early questions with a relevant candidate")
        record(db, out)
        return out
    late_fig = {"queries": t["queries"], "linear": t["linear"], "ranker": t["ranker"]}
    verdict = promote.judge(t["linear"], t["ranker"])
    out.update(late=late_fig, reason=verdict.reason, early_fit_seconds=round(t["fitted"].seconds, 2))
    final = fit(system, queries, weights_all) if verdict.promote else None
    if final is not None:
        folder = save(store_dir, final, {"embed": embed, "weights": weights_all, "late": late_fig,
                                         "cut": out.get("cut"), "head": out.get("head")})
        out.update(status="saved", version=folder.name, trees=final.trees, fit_queries=final.queries)
    else:
        deactivate(store_dir)
        out["status"] = "kept-linear"
    out["seconds"] = round(time.monotonic() - t0, 1)
    record(db, out)
    return out
