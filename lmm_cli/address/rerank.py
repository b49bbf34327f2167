"""The learned ranker, applied: recall's linear fusion re-ranked by trees fitted on this repository.

``model.ranker`` fits a LightGBM lambdarank model on the replay that fits the fusion weights and
keeps it only where it beats the linear fusion on later history; it lands in the store folder as
``ranker/ACTIVE`` naming a version folder (``ranker/v0003/``) that holds the model text and
``meta.json``. Here it is read and applied, with numpy only: LightGBM's model text is a list of
binary trees over numeric features, simple to walk, and importing LightGBM itself costs seconds —
too much for a recall hook. Fitting is the only place LightGBM is imported.

A file's features (``FEATURES``), computed the same way when fitting (on the memory at the replay's
cut) and when recalling: each channel's normalised score, the file's reciprocal rank within each
channel that can find files, how many of those channels found it, the linear fusion's score and
rank, what kind of file it is (test, documentation, code), how often it changed (all history, and
its share of the latest commits: a changelog's is high), how old it is and how long since it last
changed (days, relative to the newest commit, so replay and recall agree), and its path depth. The
ranker re-orders the top ``CANDIDATES`` of the linear fusion; the rest keep their order below.

An unreadable, missing or incompatible ranker (another ``FEATURE_VERSION``, fitted with the dense
channel where recall has none or the other way round) is no ranker: recall fuses linearly.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .intent import is_doc, is_test
from .languages import language_of

__all__ = ["FEATURE_VERSION", "FEATURES", "CANDIDATES", "RANKER_DIR", "FileStats", "file_stats", "feature_rows",
           "Forest", "LearnedRanker", "load_ranker", "active_folder"]

FEATURE_VERSION = 1
RANKER_DIR = "ranker"
CANDIDATES = 100  # the top of the linear fusion the ranker re-orders
RECENT_COMMITS = 500  # the latest commits a file's share of changes is read from

# The channels, as in ``recall`` (kept here so that this module needs nothing from it).
_CHANNELS = ("lexical", "names", "history", "dense", "mentions", "intent", "cochange", "structure", "recency",
             "fixes")
_FOUND_BY = ("lexical", "names", "history", "dense", "mentions", "intent", "cochange")
FEATURES: tuple[str, ...] = (
    *(f"score_{c}" for c in _CHANNELS),
    *(f"rr_{c}" for c in _FOUND_BY),
    "found_by", "fused", "fused_share", "fused_rr",
    "is_test", "is_doc", "is_code",
    "log_commits", "recent_share", "log_age_days", "log_idle_days", "depth",
)


@dataclass
class FileStats:
    """Per-file history statistics at the store's newest commit (current paths, renames followed)."""
    commits: dict[str, int] = field(default_factory=dict)
    first: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    recent: dict[str, int] = field(default_factory=dict)
    recent_of: int = 0
    newest: float = 0.0


def file_stats(db: Any, current_path: Callable[[str], str | None], as_of: float | None = None) -> FileStats:
    """``FileStats`` of a store: one pass over its commits' files (with ``as_of``, only the commits
    from before that time, as ``Recaller(as_of=…)`` sees the store)."""
    st = FileStats()
    before = "" if as_of is None else f" AND e.ts < {float(as_of)!r}"
    for path, n, lo, hi in db.execute(
            "SELECT f.path, count(*), min(e.ts), max(e.ts) FROM episode_files f JOIN episodes e ON e.id = f.episode_id"
            " WHERE e.kind = 'commit' AND e.valid_to IS NULL" + before + " GROUP BY f.path"):
        cur = current_path(path)
        if cur is None:
            continue
        st.commits[cur] = st.commits.get(cur, 0) + int(n)
        st.first[cur] = min(st.first.get(cur, lo), lo)
        st.last[cur] = max(st.last.get(cur, hi), hi)
        st.newest = max(st.newest, hi)
    recent: dict[str, set[int]] = defaultdict(set)
    ids: set[int] = set()
    for eid, path in db.execute(
            """WITH c AS (SELECT id FROM episodes e WHERE kind = 'commit' AND valid_to IS NULL"""
            + before + """
                          AND id IN (SELECT episode_id FROM episode_files) ORDER BY ts DESC, id DESC LIMIT ?)
               SELECT c.id, f.path FROM c JOIN episode_files f ON f.episode_id = c.id""", (RECENT_COMMITS,)):
        ids.add(eid)
        cur = current_path(path)
        if cur is not None:
            recent[cur].add(eid)
    st.recent = {p: len(s) for p, s in recent.items()}
    st.recent_of = len(ids)
    return st


def _kind(path: str) -> tuple[float, float, float]:
    test = is_test(path)
    doc = not test and is_doc(path)
    code = not test and not doc and language_of(path) is not None
    return float(test), float(doc), float(code)


def feature_rows(ranked: Sequence[tuple[str, float]], ch: dict[str, dict[str, float]],
                 stats: FileStats) -> list[list[float]]:
    """The feature vector (in ``FEATURES`` order) of each file of ``ranked`` (the linear fusion's
    order, best first, with its scores), given the channels' scores ``ch`` for the query."""
    ranks: dict[str, dict[str, int]] = {}
    for c in _FOUND_BY:
        scores = ch.get(c, {})
        ranks[c] = {p: i + 1 for i, (p, _) in enumerate(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])))
                    if scores[p] > 0}
    top = max((s for _, s in ranked), default=0.0)
    day = 86400.0
    rows = []
    for i, (path, fused) in enumerate(ranked):
        row = [float(ch.get(c, {}).get(path, 0.0)) for c in _CHANNELS]
        rr = [1.0 / ranks[c][path] if path in ranks[c] else 0.0 for c in _FOUND_BY]
        row += rr
        row.append(float(sum(1 for v in rr if v > 0)))
        row += [float(fused), float(fused / top) if top > 0 else 0.0, 1.0 / (i + 1)]
        row += _kind(path)
        n = stats.commits.get(path, 0)
        row.append(math.log1p(n))
        row.append(stats.recent.get(path, 0) / stats.recent_of if stats.recent_of else 0.0)
        first, last = stats.first.get(path), stats.last.get(path)
        row.append(math.log1p(max(0.0, stats.newest - first) / day) if first is not None else -1.0)
        row.append(math.log1p(max(0.0, stats.newest - last) / day) if last is not None else -1.0)
        row.append(float(path.count("/")))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the trees


class Forest:
    """LightGBM model text (numeric splits only) evaluated with numpy: the sum of each tree's leaf."""

    def __init__(self, trees: list[dict[str, Any]], n_features: int) -> None:
        import numpy as np

        self.trees = trees
        self.n_features = n_features
        # Every tree's nodes in one set of arrays, so ``predict`` walks all trees at once (one
        # numpy step per level, not per tree and level). A child ≥ 0 is a node of these arrays;
        # a child < 0 is ~(its leaf's index in ``_leaf``).
        split = [t for t in trees if "feature" in t]
        self._constant = float(sum(t["leaf"][0] for t in trees if "feature" not in t))

        def cat(key: str) -> Any:
            return np.concatenate([t[key] for t in split]) if split else np.zeros(0)
        nodes = np.cumsum([0] + [len(t["feature"]) for t in split])[:-1]
        leaves = np.cumsum([0] + [len(t["leaf"]) for t in split])[:-1]
        self._root = np.asarray(nodes, dtype=np.int64)
        self._leaf = cat("leaf").astype(np.float64)
        self._feature = cat("feature").astype(np.int64)
        self._threshold = cat("threshold").astype(np.float64)
        self._default_left = cat("default_left").astype(bool)
        self._missing = cat("missing").astype(np.int64)

        def child(key: str) -> Any:
            out = []
            for t, n0, l0 in zip(split, nodes, leaves):
                c = t[key]
                out.append(np.where(c >= 0, c + n0, ~(~c + l0)))
            return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)
        self._left, self._right = child("left"), child("right")

    @classmethod
    def from_text(cls, text: str) -> Forest:
        import numpy as np

        head, sep, rest = text.partition("\nTree=")
        if not sep:
            raise ValueError("no trees in the model text")
        info = dict(ln.split("=", 1) for ln in head.splitlines() if "=" in ln)
        if int(info.get("num_class", "1")) != 1 or int(info.get("num_tree_per_iteration", "1")) != 1:
            raise ValueError("only single-output models are supported")
        n_features = int(info["max_feature_idx"]) + 1
        body = rest.split("\nend of trees", 1)[0]
        trees: list[dict[str, Any]] = []
        for block in ("Tree=" + body).split("\nTree=")[0:]:
            kv = dict(ln.split("=", 1) for ln in block.strip().splitlines() if "=" in ln)
            if int(kv.get("num_cat", "0")) != 0:
                raise ValueError("categorical splits are not supported")
            if kv.get("is_linear", "0") != "0":
                raise ValueError("linear trees are not supported")
            leaves = np.array([float(v) for v in kv["leaf_value"].split()], dtype=np.float64)
            tree: dict[str, Any] = {"leaf": leaves}
            if int(kv["num_leaves"]) > 1:
                tree["feature"] = np.array([int(v) for v in kv["split_feature"].split()], dtype=np.int64)
                tree["threshold"] = np.array([float(v) for v in kv["threshold"].split()], dtype=np.float64)
                decision = np.array([int(v) for v in kv["decision_type"].split()], dtype=np.int64)
                tree["default_left"] = (decision & 2) != 0
                tree["missing"] = (decision >> 2) & 3  # 0 none, 1 zero, 2 NaN
                tree["left"] = np.array([int(v) for v in kv["left_child"].split()], dtype=np.int64)
                tree["right"] = np.array([int(v) for v in kv["right_child"].split()], dtype=np.int64)
                if int(tree["feature"].max(initial=0)) >= n_features:
                    raise ValueError("a split on a feature the model does not have")
            trees.append(tree)
        return cls(trees, n_features)

    def predict(self, X: Any) -> Any:
        """Scores of the rows of ``X`` (n, n_features), as LightGBM's ``Booster.predict`` gives them."""
        import numpy as np

        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {X.shape}")
        n = X.shape[0]
        out = np.full(n, self._constant, dtype=np.float64)
        if not len(self._root) or not n:
            return out
        node = np.broadcast_to(self._root, (n, len(self._root))).copy()  # (row, tree) → its node
        row = np.broadcast_to(np.arange(n)[:, None], node.shape)
        active = np.ones(node.shape, dtype=bool)
        while active.any():
            r, nd = row[active], node[active]
            val = X[r, self._feature[nd]]
            miss = self._missing[nd]
            nan = np.isnan(val)
            val = np.where(nan & (miss != 2), 0.0, val)
            default = ((miss == 1) & (np.abs(val) <= 1e-35)) | ((miss == 2) & nan)
            go_left = np.where(default, self._default_left[nd], val <= self._threshold[nd])
            nxt = np.where(go_left, self._left[nd], self._right[nd])
            node[active] = nxt
            active[active] = nxt >= 0
        return out + self._leaf[~node].sum(axis=1)


# --------------------------------------------------------------------------- on disk


def active_folder(store_dir: Path) -> Path | None:
    """The version folder ``ranker/ACTIVE`` names, or None (no ranker, or ``none``)."""
    base = Path(store_dir) / RANKER_DIR
    try:
        name = (base / "ACTIVE").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not name or name == "none" or "/" in name or name.startswith("."):
        return None
    return base / name


@dataclass
class LearnedRanker:
    """A fitted ranker: its trees and what it was fitted on (``meta``)."""
    forest: Forest
    meta: dict[str, Any]
    folder: Path

    @property
    def embed(self) -> bool:
        return bool(self.meta.get("embed"))

    @property
    def label(self) -> str:
        return f"learned ranker {self.folder.name}"

    def compatible(self, dense: bool) -> bool:
        """Whether it applies to a recall with (``dense``) or without the dense channel."""
        return self.embed == dense

    def rerank(self, ranked: Sequence[tuple[str, float]], ch: dict[str, dict[str, float]],
               stats: FileStats) -> list[tuple[str, float]]:
        """``ranked`` (the linear fusion, best first) with its top ``CANDIDATES`` re-ordered by the
        trees, each with the trees' score; the rest follow in their order, scored below them."""
        head = list(ranked[:CANDIDATES])
        if not head:
            return []
        scores = self.forest.predict(feature_rows(head, ch, stats))
        order = sorted(range(len(head)), key=lambda i: (-float(scores[i]), i))
        out = [(head[i][0], float(scores[i])) for i in order]
        floor = min(s for _, s in out)
        out += [(p, floor - 1.0 - i) for i, (p, _) in enumerate(ranked[CANDIDATES:])]
        return out


def load_ranker(store_dir: Path | None) -> LearnedRanker | None:
    """The active ranker of the store folder ``store_dir``; None when there is none, or it cannot be
    read, or it was fitted on other features: recall then fuses linearly."""
    if store_dir is None:
        return None
    folder = active_folder(store_dir)
    if folder is None:
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        if (not isinstance(meta, dict) or meta.get("feature_version") != FEATURE_VERSION
                or list(meta.get("features", [])) != list(FEATURES)):
            return None
        forest = Forest.from_text((folder / "model.txt").read_text(encoding="utf-8"))
        if forest.n_features != len(FEATURES):
            return None
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return LearnedRanker(forest, meta, folder)
