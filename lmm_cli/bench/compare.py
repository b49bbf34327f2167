"""`lmm bench localize`: lmm against the baselines on the repository's own held-out history.

One snapshot at the cut serves every system. Besides the table over all held-out commits, the
fusion weights are fitted on the early half and scored on the late half, next to the default
weights, the learned ranker fitted on the early half (``model.ranker``) and the baselines on that
same late half: the check that tuning generalises. With
``tune``, the fit is kept under the same promotion rule `lmm tune` uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..address.recall import CHANNELS, DEFAULT_WEIGHTS
from ..errors import BadArgument, BadInput, HistoryTooShort
from ..model.fusion import MIN_TUNE_QUERIES, fit, settle
from ..model.replay import ReplayMemory, evaluate, held_out_full, snapshot, tune_split
from ..workspace import Workspace

__all__ = ["bench_localize", "tune_refused", "localize", "report_markdown", "BASELINES"]

BASELINES = ("bm25", "history", "dense", "repomap")


def _baselines(names: Sequence[str]) -> list[Any]:
    from . import baselines as B

    make = {"bm25": B.BM25Contents, "history": B.BM25PathHistory, "dense": B.DenseChunks, "repomap": B.RepoMap}
    return [make[n]() for n in names]


def _ranker(system: Any, depth: int = 100) -> Callable[[str], list[str]]:
    return lambda text: list(system.rank(text, depth))


def localize(repo: Path, holdout: int, *, baselines: Sequence[str] = BASELINES, embed: bool = True,
             say: Callable[[str], None] | None = None, adapter: Sequence[str] = ()) -> dict[str, Any]:
    say = say or (lambda _m: None)
    with snapshot(Path(repo), holdout) as snap:
        queries = snap.held.queries
        say(f"cut {snap.cut[:12]}: {len(snap.files)} files, {len(snap.history)} commits before it, "
            f"{len(queries)} queries")
        lmm = ReplayMemory(embed=embed)
        systems: list[Any] = [lmm, *_baselines(baselines)]
        rows = []
        try:
            for s in systems:
                t0 = time.perf_counter()
                s.build(snap.root, list(snap.files), list(snap.history))
                build_s = time.perf_counter() - t0
                say(f"{s.name}: built in {build_s:.1f}s")
                rows.append(evaluate(s.name, _ranker(s), queries, 10, 100, build_s))
            early, late = tune_split(queries)
            tuned_early, _ = fit(lmm, early)
            split_rows = [
                evaluate("lmm, default weights", lmm.ranker(DEFAULT_WEIGHTS), late),
                evaluate("lmm, tuned on the early half", lmm.ranker(tuned_early), late),
            ] + [evaluate(s.name, _ranker(s), late) for s in systems[1:]]
            learned = _learned_ranker(lmm, early, late, tuned_early, split_rows)
            tuned_all, _ = fit(lmm, queries)
            adapted = None
            if adapter:  # last: the round trains on the replay store; nothing above sees its adapter
                from .adapter import adapter_rows

                adapted = adapter_rows(lmm, queries, forms=adapter, say=say)
        finally:
            lmm.close()
    return {
        "repo": str(repo), "cut": snap.cut, "holdout": holdout, "queries": len(queries),
        "files": len(snap.files), "history": len(snap.history),
        "dropped": len(snap.held.dropped_no_gold) + len(snap.held.dropped_empty) + len(snap.held.dropped_chronic),
        "chronic": list(snap.held.chronic),
        "rows": rows, "split": {"early": len(early), "late": len(late), "rows": split_rows},
        "weights": {"default": DEFAULT_WEIGHTS, "tuned_early": tuned_early, "tuned_all": tuned_all},
        "tuned": len(queries) >= MIN_TUNE_QUERIES, "adapter": adapted, "ranker": learned,
    }


def _learned_ranker(lmm: Any, early: Sequence[Any], late: Sequence[Any], tuned_early: dict[str, float],
                    split_rows: list[Any]) -> dict[str, Any]:
    """The learned ranker fitted on the early half (``model.ranker.trial``), scored on the later
    half beside the linear fusion it would replace there — the tuned weights where they beat the
    defaults on the later half (as `lmm tune` keeps them), else the defaults. Its row goes in
    ``split_rows`` under the two linear ones."""
    from ..model import promote
    from ..model.ranker import trial

    def m(row: Any) -> dict[str, float]:
        return {"hit5": row.hit5, "mrr": row.mrr}

    keep = promote.judge(m(split_rows[0]), m(split_rows[1])).promote
    try:
        res = trial(lmm, early, late, dict(tuned_early) if keep else dict(DEFAULT_WEIGHTS))
    except Exception as e:  # noqa: BLE001 - the rest of the report stands without it
        return {"error": f"not fitted: {type(e).__name__}: {e}"[:300]}
    if res is None:
        from ..model.ranker import MIN_QUERIES

        return {"error": f"not fitted: fewer than {MIN_QUERIES} of the {len(early)} early questions have a "
                         "changed file among their candidates"}
    row = res["rows"][1]
    row.name = "lmm, learned ranker fitted on the early half"
    split_rows.insert(2, row)
    verdict = promote.judge(res["linear"], res["ranker"])
    return {"incumbent": "tuned" if keep else "default", "linear": res["linear"], "ranker": res["ranker"],
            "kept": verdict.promote, "reason": verdict.reason, "trees": res["fitted"].trees,
            "fit_queries": res["fitted"].queries, "seconds": round(res["fitted"].seconds, 1)}


def bench_localize(ws: Workspace, *, holdout: int, baselines: Sequence[str] = BASELINES, embed: bool = True,
                   tune: bool = False, say: Callable[[str], None] | None = None,
                   adapter: Sequence[str] = ()) -> dict[str, Any]:
    """Check the arguments, run the comparison, and with ``tune`` keep the fit when it generalises.
    ``saved_weights`` in the result says whether recall now uses the fitted weights."""
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise BadArgument(f"--baselines: unknown {', '.join(unknown)} (choose from {', '.join(BASELINES)})")
    if holdout < 2:
        raise BadArgument(f"--holdout must be at least 2, got {holdout}")
    names = [b for b in baselines if embed or b != "dense"]
    bad = [f for f in adapter if f not in ("linear", "lora")]
    if bad:
        raise BadArgument(f"--adapter: unknown form {', '.join(bad)} (choose from linear, lora)")
    if adapter and not embed:
        raise BadArgument("--adapter needs the dense channel: drop --no-embed")
    try:
        held_out_full(ws.repo.root, 1)
    except ValueError:
        raise HistoryTooShort("nothing to hold out: the history needs at least two commits on HEAD "
                              "(a commit with a parent to ask about)") from None
    rep = localize(ws.repo.root, holdout, baselines=names, embed=embed, say=say, adapter=adapter)
    rep["saved_weights"] = False
    if tune and rep["tuned"]:
        default, tuned = rep["split"]["rows"][0], rep["split"]["rows"][1]
        late = {"queries": rep["split"]["late"],
                "default": {"hit1": default.hit1, "hit5": default.hit5, "mrr": default.mrr},
                "tuned": {"hit1": tuned.hit1, "hit5": tuned.hit5, "mrr": tuned.mrr}}
        db = ws.connect()
        try:
            out = settle(db, {"holdout": rep["holdout"], "queries": rep["queries"], "cut": rep["cut"],
                              "embed": embed, "by": "bench"}, late, dict(rep["weights"]["tuned_all"]))
        finally:
            db.close()
        rep["saved_weights"] = out["status"] == "saved"
    return rep


def tune_refused(rep: dict[str, Any]) -> BadInput:
    """The error for ``--tune`` on too few held-out commits (raised after the report is printed)."""
    return HistoryTooShort(f"--tune: only {rep['queries']} usable held-out commits; at least {MIN_TUNE_QUERIES} are "
                           "needed to fit weights worth keeping (raise --holdout if the history is long enough)")


def _table(rows: Sequence[Any], latency: bool = True) -> list[str]:
    head = "| system | Hit@1 | Hit@5 | Hit@10 | Recall@10 | MRR |" + (" build s | p50 ms | p95 ms |" if latency else "")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r.name, f"{r.hit1:.3f}", f"{r.hit5:.3f}", f"{r.hit10:.3f}", f"{r.recall:.3f}", f"{r.mrr:.3f}"]
        if latency:
            cells += [f"{r.build_s:.1f}", f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}"]
        out.append("| " + " | ".join(cells) + " |")
    return out


def report_markdown(rep: dict[str, Any]) -> str:
    rows = rep["rows"]
    lmm = next(r for r in rows if r.name == "lmm")
    base = [r for r in rows if r.name != "lmm"]
    lines = [f"## lmm bench localize: {rep['repo']}", "",
             f"cut {rep['cut'][:12]} · {rep['files']} files · {rep['history']} commits before the cut · "
             f"{rep['queries']} held-out commits as queries ({rep['dropped']} dropped: no gold file at the cut "
             "or an empty message)", ""]
    if rep.get("chronic"):
        lines[-1:-1] = ["", "Left out of every answer, as files nearly every commit before the cut touched: "
                        + ", ".join(f"`{p}`" for p in rep["chronic"]) + " (a commit that touched only those is no query)."]
    lines += _table(rows)
    if rep["queries"] < MIN_TUNE_QUERIES:
        lines += ["", f"Only {rep['queries']} queries: one query moves Hit@k by {100 / max(1, rep['queries']):.0f} "
                      "points, so read these figures as anecdotes (hold out more commits if the history has them)."]
    if base:
        best5 = max(base, key=lambda r: r.hit5)
        bestm = max(base, key=lambda r: r.mrr)
        lines += ["", f"lmm vs the best baseline: Hit@5 {lmm.hit5:.3f} vs {best5.hit5:.3f} ({best5.name}), "
                      f"{100 * (lmm.hit5 - best5.hit5):+.1f} points (target +10); MRR {lmm.mrr:.3f} vs "
                      f"{bestm.mrr:.3f} ({bestm.name}) (target: not below)"]
    sp = rep["split"]
    if sp["early"] < MIN_TUNE_QUERIES:
        lines += ["", f"Weights are not tuned on fewer than {MIN_TUNE_QUERIES} queries (the early half has "
                      f"{sp['early']}): the defaults are used."]
    lines += ["", f"### Does tuning generalise? Tuned on the early {sp['early']} queries, scored on the later {sp['late']}", ""]
    lines += _table(sp["rows"], latency=False)
    lines += ["", _ranker_note(rep.get("ranker") or {}, sp["late"])]
    w = rep["weights"]
    lines += ["", "| weights | " + " | ".join(CHANNELS) + " |", "|---|" + "---|" * len(CHANNELS)]
    for name in ("default", "tuned_early", "tuned_all"):
        lines.append(f"| {name} | " + " | ".join(f"{w[name][c]:g}" for c in CHANNELS) + " |")
    if rep.get("adapter"):
        lines += ["", *_adapter_section(rep["adapter"])]
    return "\n".join(lines) + "\n"


def _ranker_note(r: dict[str, Any], late: int) -> str:
    """One sentence: the learned ranker beside the linear fusion it would replace, and the verdict."""
    if not r or r.get("error"):
        return f"Learned ranker: {r.get('error', 'not run')}."
    a, b = r["linear"], r["ranker"]
    weights = "tuned" if r["incumbent"] == "tuned" else "default"
    return (f"Learned ranker (LightGBM lambdarank, {r['trees']} trees on {r['fit_queries']} early queries) vs the "
            f"linear fusion with the {weights} weights, on the later {late}: Hit@5 {b['hit5']:.3f} vs {a['hit5']:.3f}, "
            f"MRR {b['mrr']:.3f} vs {a['mrr']:.3f}: {'kept' if r['kept'] else 'not kept'} by the promotion rule "
            f"({r['reason']}).")


def _adapter_section(ad: dict[str, Any]) -> list[str]:
    if ad.get("error"):
        return ["### Repository adapter", "", ad["error"]]
    out = ad["round"]
    fusion = ad.get("fusion") or {}
    lines = ["### Repository adapter, trained at the cut on the history before it", "",
             f"Fusion weights fitted at the cut first, as the background does after `lmm init` "
             f"({fusion.get('seconds', 0):.0f}s): {fusion.get('status', '?')}"
             + (f" — {fusion['reason']}" if fusion.get("reason") else "")
             + f"; learned ranker: {(fusion.get('ranker') or {}).get('status', 'not fitted')}"
             + (" (it re-orders every fused row below today's linear fusion, as recall would)"
                if fusion.get("ranker_active") else ""), "",
             f"One training round on the replay store ({ad['round_s']:.1f}s): {out.get('status', '?')}"
             + (f" — {out['reason']}" if out.get("reason") else ""), ""]
    lines += _table(ad["rows"], latency=False)
    if ad.get("changes"):
        lines += ["", "What each change is worth on these queries, query by query (points, ± one standard error; "
                      "within two standard errors of zero, chance alone could give it):", "",
                  "| change | queries | Hit@5 | MRR | Recall@10 |", "|---|---|---|---|---|"]
        for c in ad["changes"]:
            cells = [f"{100 * c[k]['gain']:+.1f} ± {100 * c[k]['se']:.1f}" for k in ("hit5", "mrr", "recall")]
            lines.append(f"| {c['after']} vs {c['before']} | {c['queries']} | " + " | ".join(cells) + " |")
    if ad["versions"]:
        lines += ["", "| version | form | pairs | size | active |", "|---|---|---|---|---|"]
        for v in ad["versions"]:
            lines.append(f"| {v['name']} | {v['form']} | {v['pairs']} | {v['size_bytes'] / 1e6:.2f} MB | "
                         f"{'yes' if v['active'] else 'no'} |")
    return lines
