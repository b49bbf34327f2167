"""lmm itself as a system under benchmark, and the fitting of its fusion weights.

``LmmSystem`` builds a private store for a worktree checked out at the cut (history up to the cut
only: ``branches = "head"``), then ranks with the same ``Recaller`` a user's recall uses. Channel
scores are cached per query, so trying fusion weights costs no index work: ``tune`` does
coordinate ascent on MRR over a grid of weights.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..address.recall import CHANNELS, DEFAULT_WEIGHTS, Recaller

__all__ = ["LmmSystem", "tune", "objective", "GRID", "MIN_TUNE_QUERIES"]

GRID = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
MIN_TUNE_QUERIES = 30  # below this, a fitted weight says more about a few commits than the repository


class LmmSystem:
    name = "lmm"

    def __init__(self, *, embed: bool = True, weights: dict[str, float] | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> None:
        self.embed = embed
        self.weights = dict(weights or DEFAULT_WEIGHTS)
        self.progress = progress
        self.tmp: Path | None = None
        self.recaller: Recaller | None = None
        self.cache: dict[str, dict[str, dict[str, float]]] = {}
        self.build_seconds = 0.0

    def build(self, root: Path, files: list[str], history: Sequence[Any]) -> None:
        from ..capture.ingest import capture_history
        from ..repo import discover
        from ..workspace import Workspace
        from .. import core

        t0 = time.monotonic()
        self.tmp = Path(tempfile.mkdtemp(prefix="lmm-bench-store-"))
        ws = Workspace(repo=discover(root), dir=self.tmp / "store")
        ws.dir.mkdir(parents=True)
        # History up to the cut only: the other local branches may hold later commits.
        (ws.dir / "config.toml").write_text('[capture]\nbranches = "head"\n')
        db = ws.create()
        capture_history(ws, db, capture="bench")
        core.build(ws, db, embed=self.embed, progress=self.progress)
        encoder = core._encoder_for(db) if self.embed else None
        self.recaller = Recaller(db, root, encoder=encoder, weights=self.weights)
        self.build_seconds = time.monotonic() - t0

    def channels(self, query: str) -> dict[str, dict[str, float]]:
        if query not in self.cache:
            assert self.recaller is not None
            self.cache[query] = self.recaller.channel_scores(query)[0]
        return self.cache[query]

    def rank(self, query: str, k: int = 10, weights: dict[str, float] | None = None) -> list[str]:
        assert self.recaller is not None
        ranked = Recaller.fuse(self.channels(query), self.weights if weights is None else weights)
        return [p for p, _ in ranked if p in self.recaller.files][:k]

    def ranker(self, weights: dict[str, float], depth: int = 100) -> Callable[[str], list[str]]:
        """Query → ranked paths under ``weights`` (from the cached channel scores): for scoring fits."""
        return lambda query: self.rank(query, depth, weights)

    def close(self) -> None:
        if self.recaller is not None:
            self.recaller.db.close()
            self.recaller = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def _scores(system: Any, queries: Sequence[Any], weights: dict[str, float], depth: int = 100) -> tuple[float, float]:
    """(MRR, Hit@5) under ``weights``."""
    mrr = hit5 = 0.0
    for q in queries:
        ranked = Recaller.fuse(system.channels(q.text), weights)
        for i, (p, _) in enumerate(ranked[:depth]):
            if p in q.gold:
                mrr += 1.0 / (i + 1)
                hit5 += i < 5
                break
    n = max(1, len(queries))
    return mrr / n, hit5 / n


def objective(system: Any, queries: Sequence[Any], weights: dict[str, float]) -> float:
    """What tuning maximises: the mean of MRR and Hit@5. MRR alone rewards lifting a few first
    places at the price of answers falling out of the top five, which is what a brief shows."""
    mrr, hit5 = _scores(system, queries, weights)
    return 0.5 * (mrr + hit5)


def tune(system: Any, queries: Sequence[Any], *, rounds: int = 3) -> tuple[dict[str, float], float]:
    """Coordinate ascent over ``GRID`` for each channel's weight, from the current weights, on
    ``objective``. A weight only moves when the gain is worth at least half a query's hit (gains
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
