"""Continual training rounds of the repository's query adapter, gated forward in time.

A round (``run_round``) mines the store's pairs (``pairs``), newest first, and splits their queries:

- a **recent** slice: the newest ~15% (at most ``RECENT_MAX`` queries), never trained on this round —
  what is new, which a candidate must handle at least as well as the version in use;
- an **older** probe slice: commits whose sha hashes into the permanent probe bucket (1 in 10),
  never trained on in any round — what must not be forgotten;
- the rest is the training pool. Each configured form (linear always; LoRA when asked) trains from
  the active version of that form (continual) on the pool's pairs that version has not seen, plus
  a salience-weighted replay sample of those it has.

Base, incumbent (the active version) and every candidate are scored on both slices as a dense-channel
file ranking (each file scored by its best chunk; ``replay.evaluate``'s metrics). The candidates are
asked in the order of that score, and the first that passes becomes active. It must pass the dense
check (``promote.judge``) and, with ``train.judge = "recall"`` (the default), the whole recall, where
it must be clearly better: the recent slice's commits asked of recall as it stood before the oldest
of them (``Recaller(as_of=…)``: history, co-change and priors without those commits), fused with the
store's weights and re-ordered by its learned ranker where the fusion fit kept one, as recall runs
(``_FusedJudge``), the candidate's mean gain per query at least a standard error
above zero (``promote.clear_gain``). A dense channel that improves alone can still lower the fused
ranking, where the other channels already found what it now finds and it pushes their other answers
down, or move it by what chance would; such a candidate is refused, and the next form is asked.
The base model is asked again each round, by the rule a candidate passes (``_back_to_base``): where
it is at least as good in the dense check on both slices (going back must not forget what the
version kept) and clearly better in the whole recall (``BACK_TO_BASE_SE`` standard errors, twice the
promotion margin) than what would be in use after the round, the round refuses the candidate and
puts the version in use aside (the base
becomes active; `lmm adapters rollback` brings the version back). Under ``train.judge = "dense"``
there is no whole-recall check, and a version in use is only ever replaced by a better candidate.
A round is reproducible: training is seeded and the replay is drawn with a seed from the history, so
a round whose inputs (``_inputs``: pairs, starting weights, held-out slices, the version in use and
the recall that judges) equal the last one's is not run again (status ``unchanged``).
Every candidate is saved as a version either way (``adapters.save_version``), with its scores and
its verdict, so `lmm adapters` shows refused ones and why. The outcome, with its figures, is
recorded in ``state`` under ``STATE_KEY``.

One round at a time per store (``CaptureLock(store, "train")``). The round's plan (which queries,
which slices, which replay sample) is written to ``adapters/.round/plan.json`` and the trainers
checkpoint there, so a round killed at any point resumes on the next call; activation is an atomic
switch, so a kill never leaves a broken active adapter. ``round_due`` says when the background
should run one; ``forget_sources`` drops every version that learned from forgotten episodes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadArgument, BadInput
from ..store.db import transaction
from ..store.lock import CaptureLock, lock_is_held
from ..store.state import read_json
from ..workspace import Workspace
from . import promote

if TYPE_CHECKING:
    import numpy as np

    from ..embed.encoder import Encoder
    from .adapters import Version
    from .pairs import Example, Mined

__all__ = [
    "STATE_KEY", "LOCK_NAME", "BACK_TO_BASE_SE", "RECENT_SHARE", "RECENT_MAX", "OLDER_MAX", "MIN_QUERIES", "SALIENT", "TrainBusy",
    "run_round", "round_due", "forget_sources", "last_round", "training_running", "auto_train_enabled",
    "parse_forms", "record_failure", "round_dir", "start_training",
]

STATE_KEY = "adapters.last_round"
LOCK_NAME = "train"  # train.lock: one round at a time per store
RECENT_SHARE = 0.15  # the newest share of queries held out as the recent slice …
RECENT_MAX = 150  # … at most this many
OLDER_MAX = 300  # probe queries scored as the older slice, newest first
MIN_QUERIES = 20  # fewer mined queries than this: too little history to train or to judge
MIN_TRAIN = 8  # training queries a form needs
FUSED_MIN = 10  # recent commit queries the whole-recall judge needs (fewer: the dense verdict stands)
# Multiples of the store's dense weight the whole-recall judge tries as a candidate's adapter
# channel weight (``_FusedJudge``; recall's ``adapter_weights``)
DENSE_SCALES = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
# How many standard errors the base model must gain in the whole recall over the version in use
# (``_back_to_base``) before a round puts that version aside: twice the promotion margin, so a
# version that earned its place is not dropped for what a few queries up and down would show.
BACK_TO_BASE_SE = 2.0
SALIENT = 0.5  # an episode at least this salient counts towards `train.min_new_salient`
PLAN_VERSION = 1
Stages = Callable[[str, int, int], None]


class TrainBusy(BadInput):
    """Another round holds the store's train lock."""

    def __init__(self) -> None:
        super().__init__("a training round is already running for this repository; wait for it "
                         "(`lmm adapters` shows the result) and try again")


def round_dir(store_dir: Path) -> Path:
    from .adapters import adapters_dir

    return adapters_dir(store_dir) / ".round"


def training_running(store_dir: Path) -> bool:
    return lock_is_held(store_dir, LOCK_NAME)


def auto_train_enabled(ws: Workspace) -> bool:
    if os.environ.get("LMM_AUTO_TRAIN", "").strip() == "0":
        return False
    try:
        return ws.config().train.auto_train
    except Exception:  # noqa: BLE001 - a broken config is reported by the commands that read it
        return False


def parse_forms(forms: str | Sequence[str] | None, default: str = "linear") -> list[str]:
    """``"linear"``, ``"lora"``, ``"both"`` (or a list of those) → the forms to train, linear first."""
    if forms is None:
        forms = default
    items = [forms] if isinstance(forms, str) else list(forms)
    out: list[str] = []
    for f in items:
        f = f.strip().lower()
        if f == "both":
            out += ["linear", "lora"]
        elif f in ("linear", "lora"):
            out.append(f)
        else:
            raise BadArgument(f"--form: {f!r} is not linear, lora or both")
    return [f for f in ("linear", "lora") if f in out]


# --------------------------------------------------------------------------- state


def last_round(db: sqlite3.Connection) -> dict[str, Any] | None:
    return read_json(db, STATE_KEY)


def _record(db: sqlite3.Connection, outcome: dict[str, Any]) -> dict[str, Any]:
    with transaction(db):
        db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                   (STATE_KEY, json.dumps(outcome, sort_keys=True, default=str)))
    return outcome


def _max_episode(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT coalesce(max(id), 0) FROM episodes").fetchone()[0])


def record_failure(ws: Workspace, reason: str) -> None:
    """Record a round that crashed, so the next capture does not start another at once."""
    db = ws.connect()
    try:
        _record(db, {"at": time.time(), "status": "failed", "reason": reason, "max_episode": _max_episode(db)})
    finally:
        db.close()


# --------------------------------------------------------------------------- the plan


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_plan(folder: Path) -> dict[str, Any] | None:
    try:
        plan = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) and plan.get("version") == PLAN_VERSION else None


def _sample(examples: Sequence[Example], idx: list[int], k: int, seed: int) -> list[int]:
    """``k`` of ``idx`` without replacement, each drawn with probability ∝ 0.25 + 1.5 · salience."""
    import numpy as np

    if k >= len(idx):
        return list(idx)
    if k <= 0:
        return []
    p = np.asarray([0.25 + 1.5 * min(1.0, max(0.0, examples[i].salience)) for i in idx], np.float64)
    chosen = np.random.default_rng(seed).choice(len(idx), size=k, replace=False, p=p / p.sum())
    return sorted(idx[int(c)] for c in chosen)


def _split(examples: Sequence[Example]) -> tuple[list[int], list[int], list[int]]:
    """(recent, older, pool) positions of ``examples`` (newest first)."""
    n = len(examples)
    r = min(RECENT_MAX, max(3, int(round(RECENT_SHARE * n))))
    recent = list(range(min(r, n)))
    rest = range(len(recent), n)
    older = [i for i in rest if examples[i].probe][:OLDER_MAX]
    pool = [i for i in rest if not examples[i].probe]
    return recent, older, pool


def _init_version(store_dir: Path, form: str, active: Version | None) -> Version | None:
    """Where a form's round starts: the active version when it is of that form, else the newest
    version of that form that was ever promoted (None: from the base)."""
    from .adapters import list_versions

    if active is not None and active.form == form:
        return active
    for v in reversed(list_versions(store_dir)):
        if v.form == form and v.extra.get("promoted"):
            return v
    return None


def _make_plan(ws: Workspace, mined: Mined, forms: list[str], base_id: str, max_episode: int) -> dict[str, Any]:
    from .adapters import active_version

    ex = mined.examples
    recent, older, pool = _split(ex)
    active = active_version(ws.dir)
    plan: dict[str, Any] = {
        "version": PLAN_VERSION, "created": time.time(), "base_model": base_id, "forms": forms,
        "incumbent": active.name if active else None, "max_episode": max_episode,
        "recent": [ex[i].source for i in recent], "older": [ex[i].source for i in older],
        "train": {}, "init": {}, "new": {}, "replay": {},
    }
    for n, form in enumerate(forms):
        init = _init_version(ws.dir, form, active)
        seen = set(init.seen) if init else set()
        new = [i for i in pool if ex[i].source not in seen]
        old = [i for i in pool if ex[i].source in seen]
        # Seeded by the store's contents, not the clock: the same history gives the same replay, so
        # `lmm train` run again on nothing new trains the same candidate instead of drawing until
        # one passes, and a round can be reproduced.
        replay = _sample(ex, old, min(len(old), max(len(new), len(old) // 2)), seed=max_episode * 8 + n)
        plan["train"][form] = [ex[i].source for i in sorted(new + replay)]
        plan["init"][form] = init.name if init else None
        plan["new"][form] = len(new)
        plan["replay"][form] = len(replay)
    return plan


# --------------------------------------------------------------------------- scoring


@dataclass
class _Scored:
    recent: dict[str, float]
    older: dict[str, float] | None
    loss: float  # weighted mean cross-entropy of the recent slice's pairs


def _figures(ranked: dict[str, list[str]], examples: Sequence[Example]) -> dict[str, float]:
    """``replay.evaluate``'s metrics, rounded, of file rankings by query text (``ranked``)."""
    from .replay import Query, evaluate

    if not examples:
        return {"n": 0, "hit1": 0.0, "hit5": 0.0, "hit10": 0.0, "recall": 0.0, "mrr": 0.0}
    row = evaluate("files", ranked.__getitem__, [Query(e.source, e.text, set(e.gold)) for e in examples])
    return {"n": row.n, "hit1": round(row.hit1, 4), "hit5": round(row.hit5, 4), "hit10": round(row.hit10, 4),
            "recall": round(row.recall, 4), "mrr": round(row.mrr, 4)}


def _metrics(rank: Callable[[Any, int], list[list[str]]], qv: np.ndarray, examples: Sequence[Example]) -> dict[str, float]:
    """The dense file ranking's metrics for query vectors ``qv`` of ``examples``."""
    if not examples:
        return _figures({}, examples)
    return _figures({e.text: r for e, r in zip(examples, rank(qv, 100))}, examples)


class _Scorer:
    """Scores query encoders (base, a version, a fresh result) on the round's two slices."""

    def __init__(self, mined: Mined, base: Encoder, recent: list[int], older: list[int], tau: float) -> None:
        from .pairs import file_rank

        self.m, self.base, self.tau = mined, base, tau
        self.recent, self.older = recent, older
        self.rank = file_rank(mined.docs, mined.doc_paths)

    def vectors(self, adapter: Any, idx: list[int]) -> np.ndarray:
        """Adapted query vectors of the examples at ``idx`` (None: the base)."""
        import numpy as np

        from ..embed.adapter import AdaptedEncoder, LinearAdapter

        q = self.m.q[idx] if idx else np.zeros((0, self.m.q.shape[1]), np.float32)
        if adapter is None or not idx:
            return np.asarray(q, np.float32)
        if isinstance(adapter, LinearAdapter):
            return adapter.apply(q)
        enc = AdaptedEncoder(self.base, adapter, "candidate")
        return np.asarray(enc.encode([self.m.examples[i].text for i in idx]), np.float32)

    def loss(self, qv: np.ndarray, idx: list[int]) -> float:
        import numpy as np

        from .pairs import weights_for
        from .trainer import pair_losses

        rows = [(k, t) for k, i in enumerate(idx) for t in self.m.examples[i].targets]
        if not rows:
            return float("nan")
        losses = pair_losses(None, qv[[k for k, _ in rows]], np.asarray([t for _, t in rows]), self.m.docs, self.tau)
        w = weights_for([self.m.examples[idx[k]].salience for k, _ in rows])
        return round(float((losses * w).sum() / max(1e-12, float(w.sum()))), 5)

    def score(self, adapter: Any) -> _Scored:
        ex = self.m.examples
        qr = self.vectors(adapter, self.recent)
        recent = _metrics(self.rank, qr, [ex[i] for i in self.recent])
        older = None
        if self.older:
            older = _metrics(self.rank, self.vectors(adapter, self.older), [ex[i] for i in self.older])
        return _Scored(recent, older, self.loss(qr, self.recent))


class _QueryCache:
    """The encoder the whole-recall judge gives recall: it answers from the round's own query
    vectors (no model runs), under the base model's id so that the stored document vectors load.
    With ``adapted`` it does what recall's adapted encoder does: the adapted vector for the
    adapter's channel, the base one for the dense channel."""

    def __init__(self, base_id: str, texts: Sequence[str], base_q: np.ndarray, adapted: np.ndarray | None) -> None:
        from ..address.recall import MENTION_CHARS

        self.id = base_id
        keys = [t[:MENTION_CHARS] for t in texts]  # what recall's dense channel asks with
        self._base = dict(zip(keys, base_q))
        self._adapted = dict(zip(keys, adapted)) if adapted is not None else None
        self.encode_both = self._both if adapted is not None else None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        return np.stack([self._base[t] for t in texts])

    def _both(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        assert self._adapted is not None
        return np.stack([self._adapted[t] for t in texts]), self.encode(texts)


class _FusedJudge:
    """Scores query encoders by the whole recall on the recent slice's commits, as recall stood
    before the oldest of them; the channels that do not depend on the encoder are computed once.

    An adapter ranks as a channel of its own beside the dense channel (``recall.ADAPTED``), and
    what it is worth in the fusion depends on how well it learned: each encoder is scored with that
    channel at every ``DENSE_SCALES`` multiple of the store's dense weight, and ``cross_fit`` gives
    each query the score it gets at the scale fitted on the other half of the queries (never on
    itself), so a fitted scale's gain is measured honestly.

    Recall is judged as it runs: where the store's fusion fit kept a learned ranker, it re-orders
    the fusion's top files here too (with file statistics from before the slice), so a candidate is
    promoted for what the user's recall would gain, not for what the linear fusion alone would."""

    def __init__(self, db: sqlite3.Connection, root: Path, scorer: _Scorer) -> None:
        from ..address.recall import Recaller

        ex = scorer.m.examples
        self.scorer = scorer
        self.idx = [i for i in scorer.recent if ex[i].kind == "commit" and ex[i].gold]
        self.as_of = min((ex[i].ts for i in self.idx), default=0.0)
        self.rec = Recaller(db, root, as_of=self.as_of)  # the store's fusion weights and learned ranker
        self._reuse: dict[str, dict[str, dict[str, float]]] = {}
        self._channels: dict[int, tuple[Any, list[dict[str, dict[str, float]]]]] = {}  # id(adapter) → (adapter, …)
        self._scored: dict[tuple[int, float], tuple[dict[str, float], list[float]]] = {}

    @property
    def usable(self) -> bool:
        return len(self.idx) >= FUSED_MIN

    @property
    def ranked_by(self) -> str:
        """What ordered the files after the fusion: the store's learned ranker (its label) or none."""
        r = self.rec.learned_ranker()
        return r.label if r is not None else "linear fusion"

    def _channel_scores(self, adapter: Any) -> list[dict[str, dict[str, float]]]:
        got = self._channels.get(id(adapter))
        if got is not None and got[0] is adapter:
            return got[1]
        ex, m = self.scorer.m.examples, self.scorer.m
        texts = [ex[i].text for i in self.idx]
        adapted = self.scorer.vectors(adapter, self.idx) if adapter is not None else None
        self.rec.encoder = _QueryCache(m.model, texts, m.q[self.idx], adapted)
        out = []
        for text in texts:
            ch, _ = self.rec.channel_scores(text, reuse=self._reuse.get(text))
            self._reuse.setdefault(text, ch)
            out.append(ch)
        self._channels[id(adapter)] = (adapter, out)
        return out

    def score(self, adapter: Any, scale: float = 1.0) -> tuple[dict[str, float], list[float]]:
        """The whole recall's metrics with ``adapter`` (None: the base model), its channel weighing
        the dense weight times ``scale``, and each query's ``promote.per_query`` score, in the order of ``idx``."""
        self._channel_scores(adapter)  # keeps ``adapter`` alive while its id keys the scores
        key = (id(adapter), scale)
        got = self._scored.get(key)
        if got is None:
            got = self._scored[key] = self._score(adapter, scale)
        return got

    def _score(self, adapter: Any, scale: float) -> tuple[dict[str, float], list[float]]:
        from ..address.recall import adapter_weights

        chs = self._channel_scores(adapter)
        weights = adapter_weights(self.rec.weights, scale)
        examples = [self.scorer.m.examples[i] for i in self.idx]
        ranked = {e.text: [p for p, _ in self.rec.order(ch, weights)[0][:100]] for e, ch in zip(examples, chs)}
        per = [promote.per_query(next((r + 1 for r, p in enumerate(ranked[e.text]) if p in e.gold), 0))
               for e in examples]
        return _figures(ranked, examples), per

    def _best_scale(self, adapter: Any, rows: Sequence[int]) -> float:
        """The scale whose mean per-query score over ``rows`` is highest (ties: the one nearest 1)."""
        def mean_at(s: float) -> float:
            per = self.score(adapter, s)[1]
            return sum(per[r] for r in rows) / max(1, len(rows))
        return max(DENSE_SCALES, key=lambda s: (round(mean_at(s), 9), -abs(math.log(s))))

    def cross_fit(self, adapter: Any) -> tuple[list[float], float]:
        """(each query's score at the scale fitted on the other half, the scale fitted on all)."""
        halves = [list(range(0, len(self.idx), 2)), list(range(1, len(self.idx), 2))]
        per = [0.0] * len(self.idx)
        for k, rows in enumerate(halves):
            at = self.score(adapter, self._best_scale(adapter, halves[1 - k]))[1]
            for r in rows:
                per[r] = at[r]
        return per, self._best_scale(adapter, range(len(self.idx)))


def _judge_fused(judge: _FusedJudge, incumbent: Any, candidate: Any, dense: promote.Verdict, *,
                 incumbent_scale: float = 1.0) -> tuple[promote.Verdict, dict[str, Any], float]:
    """The dense verdict (a promotion) checked against the whole recall: (verdict, figures, the
    candidate's adapter weight, a multiple of the dense weight).

    The candidate is scored at the adapter weight fitted for it (``_FusedJudge.cross_fit``: each
    query at the weight fitted on the other half). The dense check's slices are large and its gains
    wide; the whole recall's differences are a few queries up and a few down, as likely chance as
    not. So the candidate must be clearly better, query by query (``promote.clear_gain``), than the
    version in use as it runs now: a tie or a gain within noise keeps the version in use. And the
    gain must be the adapter's: the candidate must be clearly better than the version in use given
    an adapter weight fitted the same way too. (Where only the weight helps, the version in use at that
    weight does as well; promoting the adapter with it would credit the adapter for the weight's
    gain, and on later history such a bundle gave part of it back.)"""
    if not judge.usable:
        return dense, {"n": len(judge.idx), "skipped": f"fewer than {FUSED_MIN} recent commits to ask recall"}, 1.0
    base, _ = judge.score(None)
    now, now_q = judge.score(incumbent, incumbent_scale)
    refit_q, refit_scale = judge.cross_fit(incumbent)
    cand_q, scale = judge.cross_fit(candidate)
    cand, _ = judge.score(candidate, scale)
    gain, se = promote.paired_gain(now_q, cand_q)
    own, own_se = promote.paired_gain(refit_q, cand_q)
    figures = {"base": base, "incumbent": now, "candidate": cand, "as_of": judge.as_of,
               "gain": round(gain, 4), "se": round(se, 4), "dense_scale": scale,
               "incumbent_dense_scale": incumbent_scale,
               "adapter_gain": round(own, 4), "adapter_se": round(own_se, 4), "incumbent_fitted_scale": refit_scale,
               "ranked_by": judge.ranked_by}
    v = promote.clear_gain(now_q, cand_q, "in the whole recall on later history")
    if not v.promote:
        return promote.Verdict(False, f"{v.reason}, though not worse in the dense channel"), figures, scale
    if not promote.clear_gain(refit_q, cand_q, "").promote:
        return promote.Verdict(False, f"better in the whole recall only for its weight: the version in use at "
                                      f"a weight fitted the same way (×{refit_scale:g}) does as well "
                                      f"(the adapter's own part {own:+.3f} ± {own_se:.3f} per query)"), figures, scale
    return promote.Verdict(True, f"{dense.reason}; {v.reason} at adapter weight ×{scale:g} "
                                 f"(the adapter's own part {own:+.3f} ± {own_se:.3f})"), figures, scale


def _back_to_base(judge: _FusedJudge, running: Any, scale: float | None) -> tuple[promote.Verdict, dict[str, Any]]:
    """Is the base model clearly better than ``running`` (the version that would be in use after
    this round) in the whole recall? (verdict, figures.) ``running`` is scored as it would run: at
    ``scale``, or, for a candidate the round just fitted its adapter weight for (``scale`` None), at
    the weight fitted on the other half of the queries; the base at the store's own weights, as
    recall runs without an adapter.

    A version is promoted on the history and the fusion of its round. Both move on: the fusion fit
    refits the weights and the ranker on the base model's dense scores (an adapter's would be
    flattered by the commits it trained on), and the repository changes under it. Nothing else ever
    asks the base again, so a version that stopped paying would stay in use for good."""
    base, base_q = judge.score(None)
    if scale is None:
        run_q, fitted = judge.cross_fit(running)
        run = judge.score(running, fitted)[0]
    else:
        run, run_q = judge.score(running, scale)
    gain, se = promote.paired_gain(run_q, base_q)
    v = promote.clear_gain(run_q, base_q, "in the whole recall on later history", margin=BACK_TO_BASE_SE)
    return v, {"base": base, "in_use": run, "gain": round(gain, 4), "se": round(se, 4), "as_of": judge.as_of,
               "margin_se": BACK_TO_BASE_SE, "ranked_by": judge.ranked_by}


def _weights_digest(store_dir: Path, version: Version | None) -> str | None:
    """A digest of a version's weights (its files but meta.json); None for the base model. Two
    versions with the same weights (a round that learned nothing new) have the same digest."""
    from .adapters import version_dir

    if version is None:
        return None
    h = hashlib.sha256()
    folder = version_dir(store_dir, version.name)
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.name != "meta.json":
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:24]


def _inputs(ws: Workspace, db: sqlite3.Connection, mined: Mined, plan: dict[str, Any], incumbent: Version | None,
            by_name: dict[str, Version], overrides: dict[str, Any]) -> str:
    """A digest of everything a round's result follows from: the code's chunk vectors, the pairs
    each form trains on and the weights it starts from, the held-out slices, the version in use,
    and the recall it is judged by (the store's weights, its learned ranker, the judge). Training
    is seeded and the replay drawn from the history, so the same inputs give the same round."""
    from ..address.recall import load_weights
    from ..address.rerank import load_ranker

    ranker = load_ranker(ws.dir)
    pos = mined.index()
    data = {
        # salience sets each pair's loss weight and its odds in the replay
        "salience": {f: [round(mined.examples[pos[s]].salience, 4) for s in srcs if s in pos]
                     for f, srcs in plan["train"].items()},
        "docs": hashlib.sha256(mined.docs.tobytes()).hexdigest(), "base": plan["base_model"],
        "forms": plan["forms"], "train": plan["train"], "recent": plan["recent"], "older": plan["older"],
        "init": {f: _weights_digest(ws.dir, by_name.get(n)) if n else None for f, n in plan["init"].items()},
        "incumbent": [_weights_digest(ws.dir, incumbent), incumbent.dense_scale if incumbent else 1.0],
        "judge": ws.config().train.judge, "weights": load_weights(db), "ranker": ranker.label if ranker else None,
        "overrides": overrides,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _load_adapter(store_dir: Path, version: Version | None) -> Any:
    from ..embed.adapter import load_adapter
    from .adapters import version_dir

    if version is None:
        return None
    return load_adapter(version_dir(store_dir, version.name), version.form)


def _base_folder(base: Encoder) -> Path:
    folder = getattr(base, "folder", None) or getattr(getattr(base, "_source", None), "folder", None)
    if folder is None:
        raise BadInput("the LoRA form needs the encoder's model files on disk (models.encoder in the config); "
                       "use --form linear")
    return Path(folder)


# --------------------------------------------------------------------------- the round


def _say_none(_m: str) -> None:
    return None


def run_round(ws: Workspace, *, forms: str | Sequence[str] | None = None, accelerate: bool = False,
              progress: Stages | None = None, say: Callable[[str], None] | None = None, foreground: bool = False,
              overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """One continual training round (see the module's doc); returns the recorded outcome.

    ``forms``: "linear", "lora", "both" (default: ``train.forms`` in the config). ``progress(stage,
    done, total)`` reports long work; ``say`` one-line notes. ``overrides``: training settings
    (``trainer.TrainConfig`` fields) for this round. Raises ``TrainBusy`` when a round is running."""
    lock = CaptureLock(ws.dir, LOCK_NAME)
    if not lock.acquire():
        raise TrainBusy()
    try:
        db = ws.connect()
        try:
            return _round(ws, db, forms=forms, accelerate=accelerate, progress=progress, say=say or _say_none,
                          foreground=foreground, overrides=overrides or {})
        finally:
            db.close()
    finally:
        lock.release()


def _round(ws: Workspace, db: sqlite3.Connection, *, forms: str | Sequence[str] | None, accelerate: bool,
           progress: Stages | None, say: Callable[[str], None], foreground: bool,
           overrides: dict[str, Any]) -> dict[str, Any]:
    from ..address.dense import stored_encoder
    from .pairs import NoEmbeddings, mine
    from .trainer import TrainConfig

    t0 = time.monotonic()
    config = ws.config()
    settings = config.train
    wanted = parse_forms(forms, settings.forms)
    folder = round_dir(ws.dir)
    head: dict[str, Any] = {"at": time.time(), "forms": wanted, "max_episode": _max_episode(db),
                            "foreground": foreground}
    base = stored_encoder(db, config.models.encoder)
    if base is None:
        shutil.rmtree(folder, ignore_errors=True)
        return _record(db, {**head, "status": "no-embeddings",
                            "reason": "the store has no embeddings yet (run `lmm ingest`, or wait for the background one)"})

    def stage(name: str) -> Callable[[int, int], None] | None:
        return (lambda d, t: progress(name, d, t)) if progress is not None else None

    plan = _read_plan(folder)
    if plan is not None and (plan.get("base_model") != base.id or plan.get("forms") != wanted):
        say("a different round was left unfinished; starting afresh")
        shutil.rmtree(folder, ignore_errors=True)
        plan = None
    try:
        mined = mine(db, base, limit=settings.max_pairs, progress=stage("encoding queries"))
    except NoEmbeddings as e:
        shutil.rmtree(folder, ignore_errors=True)
        return _record(db, {**head, "status": "no-embeddings", "reason": str(e)})
    pos = mined.index()
    if plan is not None:
        planned = set(plan["recent"]) | set(plan["older"]) | {s for v in plan["train"].values() for s in v}
        if not planned <= set(pos):  # forgotten (or changed) since: the checkpoints may hold it
            say("the store changed under the unfinished round; starting afresh")
            shutil.rmtree(folder, ignore_errors=True)
            plan = None
        else:
            say(f"resuming the round planned {time.strftime('%Y-%m-%d %H:%M', time.localtime(plan['created']))}")
    resumed = plan is not None
    if plan is None:
        if len(mined.examples) < MIN_QUERIES:
            return _record(db, {**head, "status": "too-short", "queries": len(mined.examples),
                                "reason": f"{len(mined.examples)} usable queries in the history; "
                                          f"at least {MIN_QUERIES} are needed"})
        plan = _make_plan(ws, mined, wanted, base.id, head["max_episode"])
        _write_json(folder / "plan.json", plan)
    head["max_episode"] = plan["max_episode"]
    recent = [pos[s] for s in plan["recent"]]
    older = [pos[s] for s in plan["older"]]
    trainable = [f for f in wanted if len(plan["train"][f]) >= MIN_TRAIN]
    counts = {"queries": len(mined.examples), "pairs": mined.pairs(), "recent": len(recent), "older": len(older),
              "train": {f: mined.pairs(pos[s] for s in plan["train"][f]) for f in wanted},
              "new": plan["new"], "replay": plan["replay"]}
    if not trainable:
        shutil.rmtree(folder, ignore_errors=True)
        return _record(db, {**head, "status": "too-short", "counts": counts,
                            "reason": "too few training queries outside the held-out slices"})
    if not any(plan["new"][f] for f in trainable) and not foreground:
        shutil.rmtree(folder, ignore_errors=True)
        return _record(db, {**head, "status": "nothing-new", "counts": counts,
                            "reason": "no pairs the active version has not trained on"})

    from .adapters import active_version, list_versions

    by_name = {v.name: v for v in list_versions(ws.dir)}
    incumbent = by_name.get(plan["incumbent"]) if plan["incumbent"] else None
    if plan["incumbent"] and incumbent is None:
        incumbent = active_version(ws.dir)
    inputs = _inputs(ws, db, mined, plan, incumbent, by_name, overrides)
    last = last_round(db) or {}
    active_now = active_version(ws.dir)
    if (not resumed and last.get("inputs") == inputs and last.get("status") in ("promoted", "refused")
            and last.get("active") == (active_now.name if active_now else None)):
        # `lmm train` again on an unchanged store, where the last round left it: the same round, to
        # the bit. Its versions are there already; saving them again would only push older ones out
        # of the `keep` window. (After a rollback the version in use is not what the round left:
        # the round runs, and acts again.)
        shutil.rmtree(folder, ignore_errors=True)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(last.get("at") or 0)))
        return {**head, "status": "unchanged", "counts": counts, "last": last,
                "reason": f"nothing changed since the last round ({when}, {last['status']}: active "
                          f"{last.get('active') or 'the base model'}): the same pairs from the same versions, "
                          "judged by the same recall, give the same result; train again after new commits or notes"}
    cfg_base = {"threads": settings.threads, **overrides}
    tau = TrainConfig(**{k: v for k, v in cfg_base.items() if k in TrainConfig.__dataclass_fields__}).tau
    scorer = _Scorer(mined, base, recent, older, tau)
    results: dict[str, Any] = {}
    for form in trainable:
        init = by_name.get(plan["init"][form]) if plan["init"][form] else None
        ts = mined.trainset([pos[s] for s in plan["train"][form]])
        cfg = TrainConfig.from_dict({**cfg_base, "form": form})
        if "batch" not in overrides:  # a small history still gets several steps an epoch
            cfg.batch = min(cfg.batch, max(16, len(ts) // 8))
        say(f"training {form}: {len(ts)} pairs ({plan['new'][form]} new queries, {plan['replay'][form]} replayed)"
            + (f" from {init.name}" if init else " from the base"))
        ckpt = folder / f"{form}.ckpt"
        if form == "linear":
            from .trainer import train_linear

            w0 = _load_adapter(ws.dir, init).W if init is not None else None
            results[form] = train_linear(ts, mined.docs, cfg, init=w0, checkpoint=ckpt,
                                         progress=stage(f"training {form}"), accelerate=accelerate)
        else:
            from .adapters import version_dir
            from .trainer import train_lora

            results[form] = train_lora(ts, mined.docs, _base_folder(base), cfg,
                                       init=version_dir(ws.dir, init.name) if init else None, checkpoint=ckpt,
                                       progress=stage(f"training {form}"), accelerate=accelerate)

    say("scoring on held-out history")
    base_s = scorer.score(None)
    inc_adapter = _load_adapter(ws.dir, incumbent)
    inc_s = scorer.score(inc_adapter) if incumbent is not None else base_s
    cand_adapters = {f: r.adapter() for f, r in results.items()}
    cand_s = {f: scorer.score(a) for f, a in cand_adapters.items()}
    # The forms in the order of their dense score on recent history; the first the judges promote is
    # the round's. Where the whole recall refuses the best in the dense channel, the next is asked
    # (a LoRA that ranks a little lower alone can be the one that helps the fused ranking).
    order = sorted(cand_s, key=lambda f: (-promote.score(cand_s[f].recent), trainable.index(f)))
    verdicts: dict[str, promote.Verdict] = {}
    fused_of: dict[str, dict[str, Any]] = {}
    scale_of: dict[str, float] = {}  # each form's dense scale, where the whole recall fitted one
    fused_judge: _FusedJudge | None = None
    for form in order:
        v = promote.judge(inc_s.recent, cand_s[form].recent, older_incumbent=inc_s.older,
                          older_candidate=cand_s[form].older)
        if v.promote and settings.judge == "recall":
            say(f"asking the whole recall, as it stood before the recent commits ({form})")
            fused_judge = fused_judge or _FusedJudge(db, ws.repo.root, scorer)
            v, fused_of[form], scale_of[form] = _judge_fused(
                fused_judge, inc_adapter, cand_adapters[form], v,
                incumbent_scale=incumbent.dense_scale if incumbent is not None else 1.0)
        verdicts[form] = v
        if v.promote:
            break
    best = next((f for f, v in verdicts.items() if v.promote), order[0])
    verdict, fused, b = verdicts[best], fused_of.get(best), cand_s[best]
    # The base model challenges what would be in use after the round (a candidate that beat a
    # version in use that had stopped paying, or that version itself) by the rule a candidate
    # passes: at least as good in the dense check on recent history and on the older slice (going
    # back must not forget what the version kept), then clearly better in the whole recall.
    back: dict[str, Any] | None = None
    if incumbent is not None and settings.judge == "recall":
        def base_wins(running: Any, scores: _Scored, scale: float | None) -> dict[str, Any] | None:
            """The challenge's figures and reason where the base model wins it, else None."""
            if not promote.judge(scores.recent, base_s.recent, older_incumbent=scores.older,
                                 older_candidate=base_s.older).promote:
                return None
            nonlocal fused_judge
            fused_judge = fused_judge or _FusedJudge(db, ws.repo.root, scorer)
            if not fused_judge.usable:
                return None
            say("asking the whole recall whether the base model now does clearly better")
            v, figures = _back_to_base(fused_judge, running, scale)
            return {**figures, "reason": f"the base model is {v.reason}"} if v.promote else None

        if verdict.promote and (won := base_wins(cand_adapters[best], cand_s[best], None)):
            verdict = verdicts[best] = promote.Verdict(False, f"better than {incumbent.name}, but {won['reason']}")
        if not verdict.promote and (won := base_wins(inc_adapter, inc_s, incumbent.dense_scale)):
            back = {**won, "from": incumbent.name,
                    "reason": f"{won['reason']} than {incumbent.name}, and not worse in the dense channel"}

    gone = _forgotten(db, [s for f in trainable for s in plan["train"][f]])
    if gone:  # `lmm forget` ran meanwhile: nothing trained on it may be saved
        shutil.rmtree(folder, ignore_errors=True)
        return _record(db, {**head, "status": "aborted", "counts": counts,
                            "reason": f"{len(gone)} episodes were forgotten during the round; it starts again"})

    saved: dict[str, str] = {}
    for form in trainable:
        cs = cand_s[form]
        promoted = form == best and verdict.promote
        why = verdicts[form].reason if form in verdicts else (
            f"the {best} candidate did better on recent history "
            f"({promote.score(b.recent):.3f} > {promote.score(cs.recent):.3f})")
        init = by_name.get(plan["init"][form]) if plan["init"][form] else None
        train_ex = [mined.examples[pos[s]] for s in plan["train"][form]]
        meta = {
            "base_model": base.id, "parent": init.name if init else None,
            "parent_seen": list(init.seen) if init else [],
            "seen": [e.source for e in train_ex], "pairs": counts["train"][form],
            "config": results[form].config,
            "window": {"queries": len(train_ex), "new": plan["new"][form], "replay": plan["replay"][form],
                       "from_ts": min(e.ts for e in train_ex), "to_ts": max(e.ts for e in train_ex),
                       "episodes": [min((e.episode_id for e in train_ex if e.episode_id), default=None),
                                    max((e.episode_id for e in train_ex if e.episode_id), default=None)],
                       "recent_queries": len(recent), "older_queries": len(older)},
            "scores": {"recent": {"base": base_s.recent, "incumbent": inc_s.recent, "candidate": cs.recent},
                       "older": {"base": base_s.older, "incumbent": inc_s.older, "candidate": cs.older},
                       "loss": {"base": base_s.loss, "incumbent": inc_s.loss, "candidate": cs.loss},
                       **({"fused": fused_of[form]} if form in fused_of else {})},
            "promoted": promoted, "verdict": why, "incumbent": incumbent.name if incumbent else None,
            "dense_scale": scale_of.get(form, 1.0),
            "round": plan["created"],
        }
        from .adapters import save_version

        done = plan.setdefault("saved", {}).get(form)
        if done and done in {v.name for v in list_versions(ws.dir)}:
            saved[form] = done  # saved before a kill: not twice
            continue
        saved[form] = save_version(ws.dir, results[form], meta, keep=settings.keep).name
        plan["saved"][form] = saved[form]
        _write_json(folder / "plan.json", plan)
    from .adapters import activate, drop

    if _forgotten(db, [s for f in trainable for s in plan["train"][f]]):  # a forget raced the saves
        drop(ws.dir, list(saved.values()))
        shutil.rmtree(folder, ignore_errors=True)
        return _record(db, {**head, "status": "aborted", "counts": counts,
                            "reason": "episodes were forgotten during the round; it starts again"})
    if verdict.promote:
        try:
            activate(ws.dir, saved[best])
        except BadArgument:  # dropped by a forget that came after the check above
            shutil.rmtree(folder, ignore_errors=True)
            return _record(db, {**head, "status": "aborted", "counts": counts,
                                "reason": "episodes were forgotten during the round; it starts again"})
        say(f"{saved[best]} ({best}) is active: {verdict.reason}")
    elif back is not None:
        activate(ws.dir, None)  # `lmm adapters rollback` brings it back
        say(f"back to the base model, {back['from']} put aside: {back['reason']}")
    else:
        say(f"kept {incumbent.name if incumbent else 'the base model'}: the candidate is {verdict.reason}")
    active = active_version(ws.dir)
    _surprise(db, mined, _load_adapter(ws.dir, active), tau)
    outcome = {
        **head, "status": "promoted" if verdict.promote else "refused", "reason": verdict.reason,
        "resumed": resumed, "seconds": round(time.monotonic() - t0, 2), "counts": counts, "inputs": inputs,
        "incumbent": incumbent.name if incumbent else None, "best": best, "candidates": saved,
        "active": active.name if active else None,
        **({"back_to_base": back["from"]} if back is not None else {}),  # its figures and reason: scores
        "scores": {"recent": {"base": base_s.recent, "incumbent": inc_s.recent,
                              **{f: s.recent for f, s in cand_s.items()}},
                   "older": {"base": base_s.older, "incumbent": inc_s.older,
                             **{f: s.older for f, s in cand_s.items()}},
                   "loss": {"base": base_s.loss, "incumbent": inc_s.loss, **{f: s.loss for f, s in cand_s.items()}},
                   **({"fused": fused} if fused is not None else {}),
                   **({"back_to_base": back} if back is not None else {})},
        "train": {f: {"train_loss": r.train_loss, "val_loss": r.val_loss, "base_val_loss": r.base_val_loss,
                      "steps": r.steps, "seconds": round(r.seconds, 2), "stopped": r.stopped,
                      "resumed_from": r.resumed_from} for f, r in results.items()},
    }
    _record(db, outcome)
    shutil.rmtree(folder, ignore_errors=True)
    return outcome


def _forgotten(db: sqlite3.Connection, sources: Sequence[str]) -> list[str]:
    """The provenance ids among ``sources`` whose episode is gone from the store."""
    ids = {int(s[3:]) for s in sources if s.startswith("ep:")}
    have: set[int] = set()
    keys = sorted(ids)
    for i in range(0, len(keys), 500):
        part = keys[i:i + 500]
        have.update(r[0] for r in db.execute(f"SELECT id FROM episodes WHERE id IN ({','.join('?' * len(part))})", part))
    return [f"ep:{i}" for i in sorted(ids - have)]


def _surprise(db: sqlite3.Connection, mined: Mined, adapter: Any, tau: float) -> None:
    """Hand each episode's loss under the active adapter to the salience gate (when it is there).
    Never raises: salience is a refinement."""
    try:
        import numpy as np

        from ..embed.adapter import LinearAdapter
        from . import salience
        from .trainer import pair_losses

        if adapter is not None and not isinstance(adapter, LinearAdapter):
            return  # a LoRA version would need every query re-encoded: left to its next linear round
        rows = [(k, t) for k, e in enumerate(mined.examples) if e.episode_id is not None for t in e.targets]
        if not rows:
            return
        losses = pair_losses(adapter, mined.q[[k for k, _ in rows]], np.asarray([t for _, t in rows]), mined.docs, tau)
        per: dict[int, list[float]] = {}
        for (k, _), v in zip(rows, losses):
            eid = mined.examples[k].episode_id
            assert eid is not None
            per.setdefault(eid, []).append(float(v))
        salience.record_surprise(db, {eid: sum(v) / len(v) for eid, v in per.items()})
    except Exception:  # noqa: BLE001
        return


# --------------------------------------------------------------------------- when to train


def round_due(ws: Workspace, db: sqlite3.Connection) -> bool:
    """Whether an automatic round should start now: enabled, none running, embeddings present, and
    either a killed round to finish, ``train.min_new_salient`` new salient episodes since the last
    round, or the repository idle for ``train.idle_minutes`` with anything new."""
    if not auto_train_enabled(ws) or training_running(ws.dir):
        return False
    if (round_dir(ws.dir) / "plan.json").is_file():
        return True
    if db.execute("SELECT 1 FROM vectors LIMIT 1").fetchone() is None:
        return False
    settings = ws.config().train
    last = last_round(db) or {}
    upto = int(last.get("max_episode") or 0)
    kinds = "kind IN ('commit', 'note', 'session') AND valid_to IS NULL"
    salient = db.execute(f"SELECT count(*) FROM episodes WHERE id > ? AND {kinds} AND salience >= ?",
                         (upto, SALIENT)).fetchone()[0]
    if salient >= settings.min_new_salient:
        return True
    if settings.idle_minutes <= 0:
        return False
    new = db.execute(f"SELECT count(*) FROM episodes WHERE id > ? AND {kinds}", (upto,)).fetchone()[0]
    new += db.execute("SELECT count(*) FROM feedback WHERE useful = 1 AND ts > ?",
                      (float(last.get("at") or 0),)).fetchone()[0]
    if not new:
        return False
    newest = db.execute("SELECT max(captured_at) FROM episodes").fetchone()[0] or 0.0
    return time.time() - float(newest) >= settings.idle_minutes * 60


def start_training(ws: Workspace) -> int | None:
    """Start ``jobs.train`` detached (new session, stdio to /dev/null); its pid, or None."""
    import subprocess
    import sys

    try:
        ws.logs.mkdir(exist_ok=True)
        p = subprocess.Popen([sys.executable, "-m", "lmm_cli.jobs.train", str(ws.dir)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, close_fds=True, cwd=str(ws.dir))
    except OSError:
        return None
    return p.pid


# --------------------------------------------------------------------------- forgetting


def forget_sources(ws: Workspace, sources: list[str], *, foreground: bool = False,
                   say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Drop every version whose ``seen`` holds any of ``sources`` (provenance ids), make the newest
    remaining version that was ever promoted active (or the base) when the active one is dropped, and
    start a retrain from it: in this process with ``foreground``, else detached (when automatic
    training is on). An unfinished round that planned to train on them is discarded."""
    from .adapters import activate, active_version, drop, list_versions

    gone = set(sources)
    out: dict[str, Any] = {"dropped": [], "active": None, "retrain": None}
    plan = _read_plan(round_dir(ws.dir))
    if plan is not None and gone & ({s for v in plan.get("train", {}).values() for s in v}
                                    | set(plan.get("recent", [])) | set(plan.get("older", []))):
        shutil.rmtree(round_dir(ws.dir), ignore_errors=True)
    versions = list_versions(ws.dir)
    dropped = [v.name for v in versions if gone & set(v.seen)]
    active = active_version(ws.dir)
    if not dropped:
        out["active"] = active.name if active else None
        return out
    if active is not None and active.name in dropped:
        clean = [v for v in versions if v.name not in dropped and v.extra.get("promoted")]
        activate(ws.dir, clean[-1].name if clean else None)
    drop(ws.dir, dropped)
    now = active_version(ws.dir)
    out.update(dropped=dropped, active=now.name if now else None)
    if foreground:
        try:
            res = run_round(ws, say=say, foreground=True)
            out["retrain"] = {"status": res["status"], "active": res.get("active")}
        except TrainBusy:
            out["retrain"] = "busy"
    elif auto_train_enabled(ws) and not training_running(ws.dir):
        out["retrain"] = "started" if start_training(ws) else None
    else:
        out["retrain"] = "off" if not auto_train_enabled(ws) else "running"
    return out
