"""The baselines' harness: ``python -m lmm_cli.bench.localize`` scores any set of systems by replay.

Every system is built only from what existed at the cut and asked each held-out commit's message
(``model.replay`` makes the cut, the questions and the metrics). Reported per system: Hit@1/5/10,
Recall@10, MRR, build time and p50/p95 latency, in one markdown table.

Usage::

    python -m lmm_cli.bench.localize --repo PATH --holdout 100 [--systems bm25,history,dense,repomap]

From Python::

    from lmm_cli.bench import localize as L
    report = L.run(repo, 100, [my_system, *baselines.all_baselines()])
    print(L.markdown(report))

A system is any object with ``name``, ``build(root, files, history)`` and ``rank(query, k)``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..model.replay import Row, evaluate, snapshot

__all__ = ["Report", "run", "markdown", "main"]


@dataclass
class Report:
    repo: str
    cut: str
    holdout: int
    commits: int
    queries: int
    dropped_no_gold: int
    dropped_empty: int
    files: int
    history: int
    rows: list[Row]
    k: int = 10
    depth: int = 100


def _named(systems: Sequence[Any] | Mapping[str, Any]) -> list[tuple[str, Any]]:
    if isinstance(systems, Mapping):
        return list(systems.items())
    return [(getattr(s, "name", type(s).__name__), s) for s in systems]


def _ranker(system: Any, depth: int) -> Callable[[str], list[str]]:
    return lambda text: list(system.rank(text, depth))


def run(repo: Path, holdout: int, systems: Sequence[Any] | Mapping[str, Any], k: int = 10,
        depth: int = 100, keep_going: bool = False,
        progress: Callable[[str], None] | None = None) -> Report:
    """Build every system at the cut and score it on the held-out queries.

    ``systems``: objects with ``name``, ``build(root, files, history)`` and ``rank(query, k)`` (a
    mapping name → system also works). ``keep_going``: a system whose build or ranking raises gets a
    row with its error instead of stopping the run."""
    say = progress or (lambda _m: None)
    with snapshot(Path(repo), holdout) as snap:
        held = snap.held
        say(f"cut {snap.cut[:12]}: {len(snap.files)} files, {len(snap.history)} commits of history, "
            f"{len(held.queries)} queries ({len(held.dropped_no_gold)} without gold, "
            f"{len(held.dropped_empty)} empty dropped)")
        rows = []
        for name, system in _named(systems):
            try:
                t0 = time.perf_counter()
                system.build(snap.root, list(snap.files), list(snap.history))
                build_s = time.perf_counter() - t0
                say(f"{name}: built in {build_s:.1f}s")
                row = evaluate(name, _ranker(system, depth), held.queries, k, depth,
                               build_s)
            except Exception as e:  # noqa: BLE001
                if not keep_going:
                    raise
                row = Row(name, 0, 0, 0, 0, 0, 0, 0, 0, 0, k, error=f"{type(e).__name__}: {e}")
            say(f"{name}: Hit@1 {row.hit1:.3f}  MRR {row.mrr:.3f}" if not row.error else f"{name}: {row.error}")
            rows.append(row)
        return Report(str(snap.repo), snap.cut, holdout, held.commits, len(held.queries),
                      len(held.dropped_no_gold), len(held.dropped_empty), len(snap.files),
                      len(snap.history), rows, k, depth)


def markdown(report: Report) -> str:
    """One markdown table (with a one-line caption saying what was measured)."""
    r = report
    dropped = r.dropped_no_gold + r.dropped_empty
    short = f" (of {r.holdout} asked: the first-parent line is no longer)" if r.commits < r.holdout else ""
    cap = (f"Localisation on `{r.repo}` at cut `{r.cut[:12]}`: {r.commits} held-out commits{short} → "
           f"{r.queries} queries ({dropped} dropped: {r.dropped_no_gold} with no gold file at the cut"
           + (f", {r.dropped_empty} with an empty message" if r.dropped_empty else "")
           + f"); {r.files} files, {r.history} commits of history. MRR over the top {r.depth}.")
    head = (f"| System | Hit@1 | Hit@5 | Hit@10 | Recall@{r.k} | MRR | Build (s) | p50 (ms) | p95 (ms) |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [cap, "", head]
    for row in r.rows:
        if row.error:
            lines.append(f"| {row.name} | — | — | — | — | — | — | — | — |  <!-- {row.error} -->")
            continue
        lines.append(f"| {row.name} | {row.hit1:.3f} | {row.hit5:.3f} | {row.hit10:.3f} | {row.recall:.3f} "
                     f"| {row.mrr:.3f} | {row.build_s:.1f} | {row.p50_ms:.1f} | {row.p95_ms:.1f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI

_SYSTEMS = ("bm25", "history", "dense", "repomap")


def _make(names: Sequence[str]) -> list[Any]:
    from lmm_cli.bench import baselines as B

    make = {"bm25": B.BM25Contents, "history": B.BM25PathHistory, "dense": B.DenseChunks,
            "repomap": B.RepoMap}
    return [make[n]() for n in names]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lmm_cli.bench.localize",
                                 description="Time-travel file localisation benchmark (baselines).")
    ap.add_argument("--repo", type=Path, default=Path("."), help="git repository (default: .)")
    ap.add_argument("--holdout", type=int, default=100, help="non-merge commits held out (default 100)")
    ap.add_argument("--systems", default=",".join(_SYSTEMS),
                    help=f"comma-separated, from {','.join(_SYSTEMS)} (default: all)")
    ap.add_argument("--k", type=int, default=10, help="k of Recall@k (default 10)")
    ap.add_argument("--depth", type=int, default=100, help="results asked for, MRR depth (default 100)")
    ap.add_argument("--json", type=Path, help="also write the report as JSON here")
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    a = ap.parse_args(argv)
    names = [s.strip() for s in a.systems.split(",") if s.strip()]
    bad = [n for n in names if n not in _SYSTEMS]
    if bad:
        ap.error(f"unknown system(s): {', '.join(bad)}")
    say = None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    # a kill (SIGTERM) unwinds like an exception, so the worktree at the cut is still removed
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report = run(a.repo, a.holdout, _make(names), k=a.k, depth=a.depth, keep_going=True, progress=say)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(markdown(report))
    if a.json:
        a.json.write_text(json.dumps(asdict(report), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
