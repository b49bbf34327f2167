"""`lmm bench localize --adapter`: the repository adapter, measured forward in time.

At the cut, lmm's replay memory (a real store holding only the history before it) first fits its
fusion weights as the background does after `lmm init` (``fusion.tune_store``; where the fit does
not generalise, the defaults stay), then runs one training round exactly as a user's store would
(``model.rounds.run_round``: pairs mined from that history, trained, scored on the round's own
recent and older held-out slices, promoted or refused). Then the held-out commits after the cut are
asked these ways, all from the same store and the same run:

- the code chunks alone, under the base encoder and under each trained candidate (the adapter's
  channel, whether or not the round promoted it), and the dense channel under the base encoder;
- the fused recall under the base encoder (today's fusion: the default weights, and the weights
  fitted at the cut where the fit kept them) and with each candidate's channel beside the others,
  at the store's dense weight and at the multiple of it its round fitted;
- lmm as it would run: the base, or the candidate the round promoted, at the weight its round fitted.

Where the fit at the cut kept a learned ranker (``model.ranker``), it re-orders the top of every
fused row after today's linear fusion, as a user's recall would, and the round's whole-recall
judge ranks through it too.

A gain in the candidate rows says the adapter learned something that holds in the future; "as it
would run" says whether the promotion rule kept it where it helps and out of the way where not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from ..model.replay import Query, ReplayMemory, Row, evaluate

__all__ = ["adapter_rows", "dense_ranker", "paired"]


def dense_ranker(memory: ReplayMemory, depth: int = 100) -> Callable[[str], list[str]]:
    """Query → files by the dense channel alone (a file's best chunk or episode cosine)."""
    def rank(query: str) -> list[str]:
        dense = memory.channels(query).get("dense", {})
        files = memory.recaller.files
        ranked = sorted((p for p in dense if p in files), key=lambda p: (-dense[p], p))
        return ranked[:depth]
    return rank


def _with_encoder(memory: ReplayMemory, encoder: Any, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with recall's query encoder swapped (its channel cache kept apart)."""
    saved_encoder, saved_cache = memory.recaller.encoder, memory.cache
    memory.recaller.encoder, memory.cache = encoder, {}
    try:
        return fn()
    finally:
        memory.recaller.encoder, memory.cache = saved_encoder, saved_cache


def _fit_fusion(memory: ReplayMemory, say: Callable[[str], None]) -> tuple[dict[str, float], Any, dict[str, Any]]:
    """Fit the fusion weights and the learned ranker on the replay store as a user's background fit
    would after `lmm init` (``fusion.tune_store``: its own cut, its own promotion rule), and make the
    memory rank with those weights: (the weights recall now uses, the learned ranker it now applies
    or None, what the fit recorded)."""
    from ..address.recall import load_weights
    from ..address.rerank import load_ranker
    from ..model.fusion import tune_store

    t0 = time.monotonic()
    try:
        out = tune_store(memory.ws, say=say)
    except Exception as e:  # noqa: BLE001 - the adapter is still measured, under the weights in use
        out = {"status": "failed", "reason": f"{type(e).__name__}: {e}"[:300]}
    weights = load_weights(memory.recaller.db)
    if weights != memory.recaller.weights:
        memory.weights = memory.recaller.weights = weights
        memory.cache = {}  # the intent and co-change channels are seeded by the weights: ask again
    learned = load_ranker(memory.ws.dir)
    if learned is not None and not learned.compatible(memory.recaller.encoder is not None):
        learned = None
    rk = out.get("ranker") or {}
    say(f"fusion fit at the cut: {out.get('status')}, learned ranker {rk.get('status', 'not fitted')}, "
        f"in {time.monotonic() - t0:.0f}s")
    return weights, learned, {
        "status": out.get("status"), "reason": out.get("reason"), "weights": weights,
        "seconds": round(time.monotonic() - t0, 1), "queries": out.get("queries"),
        "ranker": {k: rk[k] for k in ("status", "reason", "late") if k in rk}, "ranker_active": learned is not None}


def paired(before: Row, after: Row) -> dict[str, Any]:
    """``after`` against ``before`` on the same queries, query by query: the mean gain in Hit@5, MRR
    and Recall@k, each with its standard error (``promote.paired_gain``, the statistic the rounds
    judge by), so a difference can be told from chance."""
    from ..model.promote import paired_gain

    def hit5(r: Row) -> list[float]:
        return [1.0 if 0 < f <= 5 else 0.0 for f in r.first_rank]

    def rr(r: Row) -> list[float]:
        return [1.0 / f if f else 0.0 for f in r.first_rank]

    out: dict[str, Any] = {"before": before.name, "after": after.name, "queries": before.n}
    for key, per_query in (("hit5", hit5), ("mrr", rr), ("recall", lambda r: r.recalls)):
        gain, se = paired_gain(per_query(before), per_query(after))
        out[key] = {"gain": gain, "se": se}
    return out


def adapter_rows(memory: ReplayMemory, queries: Sequence[Query], *, forms: Sequence[str] = ("linear",),
                 say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit the fusion weights at the cut and train there as a user's store would, then score base
    and adapted recall on ``queries``: the adapter is measured against the fusion a user's recall
    would run, not against the default weights."""
    from ..address.recall import DEFAULT_WEIGHTS
    from ..model import adapters as versions
    from ..model.rounds import run_round

    say = say or (lambda _m: None)
    base = memory.recaller.encoder
    if base is None:
        return {"error": "the adapter needs the dense channel (run without --no-embed)"}
    default_row = evaluate("lmm fused, base encoder, default weights", memory.ranker(dict(DEFAULT_WEIGHTS)), queries)
    weights, learned, fusion = _fit_fusion(memory, say)
    ws = memory.ws
    t0 = time.monotonic()
    outcome = run_round(ws, forms=list(forms), say=say)
    round_s = time.monotonic() - t0
    say(f"adapter round at the cut: {outcome.get('status', '?')} in {round_s:.1f}s")
    from ..model.pairs import _chunk_docs, file_rank

    docs, doc_paths = _chunk_docs(memory.recaller.db, base.id)
    by_chunks = file_rank(docs, doc_paths)

    def chunk_ranker(enc: Any) -> Callable[[str], list[str]]:
        # The code chunks alone (a file by its best chunk), as the adapter is trained: no commit or note vectors.
        return lambda text: by_chunks(enc.encode([text]), 100)[0]

    # Every fused row below today's fusion is ranked as the store would rank it: where the fit kept
    # a learned ranker, it re-orders the fusion's top files.
    rk = ", learned ranker" if learned is not None else ""

    def fused(w: dict[str, float]) -> Callable[[str], list[str]]:
        return memory.ranker(w, learned=learned)

    fused_base = "lmm fused, base encoder" + (", weights fitted at the cut" if fusion["status"] == "saved" else "")
    chunks_base = evaluate("code chunks only, base encoder", chunk_ranker(base), queries)
    dense_base = evaluate("dense channel, base encoder", dense_ranker(memory), queries)
    today = evaluate(fused_base, memory.ranker(weights), queries)
    today_rk = evaluate(fused_base + rk, fused(weights), queries) if learned is not None else today
    rows: list[Row] = [
        chunks_base, dense_base,
        *([default_row] if fusion["status"] == "saved" else []),
        today,
        *([today_rk] if learned is not None else []),
    ]
    # What each change is worth, query by query: the adapter's channel against the code chunks
    # under the base encoder (what it learned), recall with that channel against recall without it
    # (ranked the same way), and everything this store would run now against today's linear fusion.
    changes: list[dict[str, Any]] = []
    from ..embed.adapter import AdaptedEncoder, load_adapter

    candidates = {}
    for v in versions.list_versions(ws.dir):
        candidates[v.form] = v  # the newest of each form this round trained
    for form, v in sorted(candidates.items()):
        adapter = load_adapter(versions.version_dir(ws.dir, v.name), v.form)
        enc = AdaptedEncoder(base, adapter, v.name)
        # The adapter's channel alone: code chunks met by the adapted task vector, as it is trained.
        rows.append(evaluate(f"adapter channel alone, {form} {v.name}", chunk_ranker(enc), queries))
        changes.append(paired(chunks_base, rows[-1]))
        # Recall with the adapter's channel beside the others, at the store's dense weight, and at
        # the multiple of it the round fitted for this version.
        fused_name = f"lmm fused + {form} adapter {v.name}"
        rows.append(_with_encoder(memory, enc, partial(evaluate, f"{fused_name}, adapter weight ×1{rk}",
                                                       fused(weights), queries)))
        changes.append(paired(today_rk, rows[-1]))
        if v.dense_scale != 1.0:
            scaled = AdaptedEncoder(base, adapter, v.name, dense_scale=v.dense_scale)
            rows.append(_with_encoder(memory, scaled, partial(
                evaluate, f"{fused_name}, adapter weight ×{v.dense_scale:g}{rk}", fused(weights), queries)))
            changes.append(paired(today_rk, rows[-1]))
    active = versions.active_version(ws.dir)
    live = versions.load_query_encoder(ws.dir, base)
    label = (f"lmm as it would run ({active.form} {active.name} active, adapter weight ×{active.dense_scale:g}{rk})"
             if active else f"lmm as it would run (base: none promoted{rk})")
    rows.append(_with_encoder(memory, live, lambda: evaluate(label, fused(weights), queries)))
    changes.append(paired(today, rows[-1]))
    return {
        "round": outcome, "round_s": round_s, "rows": rows, "fusion": fusion, "changes": changes,
        "versions": [{"name": v.name, "form": v.form, "pairs": v.pairs, "size_bytes": v.size_bytes,
                      "active": v.active, "dense_scale": v.dense_scale, "scores": v.scores}
                     for v in versions.list_versions(ws.dir)],
    }
