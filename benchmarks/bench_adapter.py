"""The repository adapter over time: retention across incremental rounds, seconds per round, size.

A clone of a real repository is rewound ``--rounds × --step`` first-parent commits and remembered
from there (capture, code index, embeddings: the same library calls `lmm init` makes). Then, ten
times: the branch moves ``--step`` commits forward (as `git pull` would), the new history is captured
and indexed, and one training round runs (``model.rounds.run_round``, the round `lmm train` and the
background trainer run: new pairs plus a salience-weighted replay of older ones, gated forward in
time, promoted or refused).

Measured, beside the base encoder in the same run:
- **retention**: a fixed set of queries about early history (commits before the first round that
  fall in the permanent probe bucket, so no round ever trains on them) is scored by the dense
  channel (Recall@10, Hit@5, MRR) under the active adapter after each round; target: after round
  10 they keep ≥ 95% of their Recall@10 after round 1. Gold is restricted to files that still exist.
  That figure also moves as the code moves away from what the probes ask (the base model's own
  figure shows how much), so forgetting alone is measured too: the first version made active is
  kept in memory and scored after every round on the same probes against the same documents as the
  active one; **retention on the same documents** = the active version's Recall@10 / the first's.
- **seconds per round** for the ``--step`` new commits (target ≤ 30 s per 100 new episodes on 2
  cores), with the pairs each round trained on;
- **size on disk** of each version (target ≤ 5 MB).

With ``--fit``, the store first fits its fusion weights and learned ranker once, as the background
does after `lmm init` (``fusion.tune_store``), so each round's whole-recall judge ranks as a fitted
store's recall does, ranker included (what a round costs on a user's store).

    python benchmarks/bench_adapter.py --repo /tmp/starlette [--rounds 10] [--step 100] [--fit] [--json]

``LMM_BENCH_VECTORS=/path/vectors.db`` reuses vectors embedded by an earlier run (benchmarks only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_IDENTITY, make_tempdir  # noqa: E402


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _probe_metrics(db: Any, base: Any, encoder: Any, probes: list[Any]) -> dict[str, float]:
    """Dense-channel file ranking of the fixed probe queries against the store's documents now."""
    import numpy as np

    from lmm_cli.model.pairs import _chunk_docs, file_rank
    from lmm_cli.model.replay import Query, evaluate

    docs, paths = _chunk_docs(db, base.id)
    have = set(paths)
    qs = [Query(e.source, e.text, {p for p in e.gold if p in have}) for e in probes]
    qs = [q for q in qs if q.gold]
    if not qs:
        return {"n": 0, "recall": 0.0, "hit5": 0.0, "mrr": 0.0}
    qv = np.asarray(encoder.encode([q.text for q in qs]), np.float32)
    ranked = file_rank(docs, paths)(qv, 100)
    lookup = {q.text: r for q, r in zip(qs, ranked)}
    row = evaluate("probe", lambda t: lookup[t], qs)
    return {"n": row.n, "recall": row.recall, "hit5": row.hit5, "mrr": row.mrr}


def run(repo: Path, rounds: int, step: int, say: Any, fit: bool = False) -> dict[str, Any]:
    os.environ.update(BENCH_IDENTITY)
    os.environ["LMM_AUTO_TUNE"] = os.environ["LMM_AUTO_TRAIN"] = "0"
    from lmm_cli.address.build import refresh
    from lmm_cli.address.dense import stored_encoder
    from lmm_cli.capture.ingest import capture_history
    from lmm_cli.model import adapters as versions
    from lmm_cli.model.pairs import mine
    from lmm_cli.model.replay import VECTOR_CACHE_ENV, _vectors_from_cache, _vectors_to_cache
    from lmm_cli.model.rounds import run_round
    from lmm_cli.repo import discover
    from lmm_cli.workspace import Workspace

    tmp = make_tempdir("lmm-bench-adapter-")
    work = tmp / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(repo), str(work)], check=True)
    line = _git(work, "rev-list", "--first-parent", "HEAD").split()
    if len(line) <= rounds * step + 50:
        raise SystemExit(f"{repo}: {len(line)} first-parent commits; need more than {rounds * step + 50}")
    marks = [line[rounds * step - i * step] for i in range(rounds + 1)]  # marks[0]: the start, then forward
    _git(work, "checkout", "-q", "-B", "lmm-bench", marks[0])
    ws = Workspace(repo=discover(work), dir=tmp / "store")
    ws.dir.mkdir()
    (ws.dir / "config.toml").write_text('[capture]\nbranches = "head"\n')
    db = ws.create()
    cache = os.environ.get(VECTOR_CACHE_ENV)

    def capture() -> float:
        t0 = time.monotonic()
        capture_history(ws, db, capture="bench")
        if cache:
            _vectors_from_cache(db, Path(cache))
        refresh(ws, db, embed=True)
        if cache:
            _vectors_to_cache(db, Path(cache))
        return time.monotonic() - t0

    say(f"start at {marks[0][:12]} ({rounds * step} first-parent commits before HEAD)")
    first_capture = capture()
    base = stored_encoder(db)
    probes = [e for e in mine(db, base, limit=100000).examples if e.probe][:200]
    say(f"captured in {first_capture:.0f}s; {len(probes)} probe queries about the history before round 1")
    out: dict[str, Any] = {"repo": str(repo), "rounds": [], "probes": len(probes), "step": step}
    if fit:
        from lmm_cli.model.fusion import tune_store

        t0 = time.monotonic()
        tuned = tune_store(ws)
        out["fit"] = {"status": tuned.get("status"), "ranker": (tuned.get("ranker") or {}).get("status"),
                      "seconds": round(time.monotonic() - t0, 1)}
        say(f"fusion fit: weights {out['fit']['status']}, learned ranker {out['fit']['ranker']} "
            f"in {out['fit']['seconds']:.0f}s")
    first_enc: Any = None  # the first version made active, in memory (a later round may prune its files)
    first_round = 0
    for i in range(1, rounds + 1):
        if i > 1:
            _git(work, "reset", "-q", "--hard", marks[i - 1])
            new_episodes = db.execute("SELECT count(*) FROM episodes").fetchone()[0]
            cap_s = capture()
            new_episodes = db.execute("SELECT count(*) FROM episodes").fetchone()[0] - new_episodes
        else:
            cap_s, new_episodes = first_capture, db.execute("SELECT count(*) FROM episodes").fetchone()[0]
        t0 = time.monotonic()
        outcome = run_round(ws, forms=["linear"])
        round_s = time.monotonic() - t0
        active = versions.active_version(ws.dir)
        enc = versions.load_query_encoder(ws.dir, base)
        if first_enc is None and active is not None:
            first_enc, first_round = enc, i
        row = {
            "round": i, "head": _git(work, "rev-parse", "--short", "HEAD").strip(), "new_episodes": new_episodes,
            "capture_s": round(cap_s, 1), "round_s": round(round_s, 1), "status": outcome.get("status"),
            "reason": outcome.get("reason"), "pairs": outcome.get("counts", {}).get("train", {}).get("linear"),
            "active": active.name if active else None, "size_bytes": active.size_bytes if active else 0,
            "probe_base": _probe_metrics(db, base, base, probes),
            "probe_active": _probe_metrics(db, base, enc, probes),
            "probe_first": _probe_metrics(db, base, first_enc, probes) if first_enc is not None else None,
            "recent": outcome.get("scores", {}).get("recent"),
            "ranked_by": (outcome.get("scores", {}).get("fused") or {}).get("ranked_by"),
            "back_to_base": outcome.get("back_to_base"),  # the version in use the base model put aside
            "back_to_base_figures": {k: v for k, v in (outcome.get("scores", {}).get("back_to_base") or {}).items()
                                     if k in ("gain", "se", "base", "in_use")} or None,
        }
        out["rounds"].append(row)
        say(f"round {i}: {row['status']} in {round_s:.1f}s ({row['pairs']} pairs, {new_episodes} new episodes); "
            f"probe R@10 base {row['probe_base']['recall']:.3f} active {row['probe_active']['recall']:.3f}")
    db.close()
    first = out["rounds"][0]["probe_active"]["recall"]
    last = out["rounds"][-1]["probe_active"]["recall"]
    out["retention"] = last / first if first else None
    # The same figure where round 1 kept the base: from the first round that made an adapter active,
    # and the base model's own over all rounds (the code moving away from what the probes ask).
    since = next((r for r in out["rounds"] if r["active"]), None)
    out["retention_since_active"] = (
        {"round": since["round"], "value": last / since["probe_active"]["recall"]}
        if since and since["probe_active"]["recall"] else None)
    b0, b1 = out["rounds"][0]["probe_base"]["recall"], out["rounds"][-1]["probe_base"]["recall"]
    out["retention_base"] = b1 / b0 if b0 else None
    # Forgetting without the drift: the active version against the first one made active, both on
    # the probes and the documents of the last round.
    end = out["rounds"][-1]
    out["retention_same_docs"] = (
        {"first": f"round {first_round}", "value": last / end["probe_first"]["recall"]}
        if end["probe_first"] and end["probe_first"]["recall"] else None)
    return out


def report(out: dict[str, Any]) -> str:
    fit = out.get("fit")
    lines = [f"## bench_adapter: {out['repo']} — {len(out['rounds'])} rounds of {out['step']} commits, "
             f"{out['probes']} probe queries about early history", "",
             *([f"Fitted first, as after `lmm init`: weights {fit['status']}, learned ranker {fit['ranker']} "
                f"({fit['seconds']:.0f}s).", ""] if fit else []),
             "| round | new episodes | round s | pairs | status | active | size MB | probe R@10 base | probe R@10 active "
             "| probe R@10 first active | probe MRR base | probe MRR active |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["rounds"]:
        pb, pa, pf = r["probe_base"], r["probe_active"], r.get("probe_first")
        lines.append(f"| {r['round']} | {r['new_episodes']} | {r['round_s']:.1f} | {r['pairs']} | {r['status']}"
                     f"{', back to base from ' + r['back_to_base'] if r.get('back_to_base') else ''} | "
                     f"{r['active'] or 'base'} | {r['size_bytes'] / 1e6:.2f} | {pb['recall']:.3f} | {pa['recall']:.3f} | "
                     f"{pf['recall'] if pf else float('nan'):.3f} | {pb['mrr']:.3f} | {pa['mrr']:.3f} |")
    ret = out["retention"]
    incr = [r["round_s"] for r in out["rounds"][1:]]
    lines += ["", "retention (probe Recall@10 after the last round / after round 1): "
                  + (f"{100 * ret:.1f}% (target ≥ 95%)" if ret is not None else "n/a"),
              *([f"  since round {out['retention_since_active']['round']}, the first with an adapter active: "
                 f"{100 * out['retention_since_active']['value']:.1f}%"] if out.get("retention_since_active") else []),
              *([f"  the base model over the same rounds: {100 * out['retention_base']:.1f}%"]
                if out.get("retention_base") is not None else []),
              *([f"retention on the same documents (the active version / the first active, {out['retention_same_docs']['first']}, "
                 f"both on the last round's code): {100 * out['retention_same_docs']['value']:.1f}%"]
                if out.get("retention_same_docs") else []),
              f"incremental rounds: median {sorted(incr)[len(incr) // 2]:.1f}s for {out['step']} new commits "
              "(target ≤ 30 s per 100 new episodes)" if incr else ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, required=True, help="a git repository (it is cloned, never modified)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--step", type=int, default=100, help="first-parent commits between rounds")
    ap.add_argument("--fit", action="store_true",
                    help="fit the fusion weights and learned ranker first, as the background does after init")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = run(args.repo, args.rounds, args.step, lambda m: print(m, file=sys.stderr, flush=True), fit=args.fit)
    print(json.dumps(out, indent=2, default=str) if args.json else report(out))


if __name__ == "__main__":
    main()
