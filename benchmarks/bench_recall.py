"""Recall speed: what a person waits for, against `git grep` in the same run.

Measures, on a clone of any repository (default: a generated 5,000-commit history):
- warm in-process recall (one Recaller kept loaded, as the MCP server keeps it): p50/p95 ms;
- a cold `lmm recall "<query>"` process, model load included: median seconds;
- a cold `lmm recall --fast` process (lexical + history, no model): median seconds;
- the baseline: `git grep -n -i -e <term> …` for the same queries, what people run today.
Queries are the subjects of the last commits (ordinary task descriptions).
Targets (issue 3): warm p50 < 100 ms, cold < 2.5 s, --fast cold < 0.5 s.

    python benchmarks/bench_recall.py --repo /path/to/repo
    python benchmarks/bench_recall.py --generate 5000
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    bench_env,
    clone,
    generated_repo,
    lmm_command,
    make_tempdir,
    md_table,
    median,
    percentile,
    resolve_repo,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--repo", help="repository to measure (cloned first; never modified)")
    src.add_argument("--generate", type=int, default=5000, help="commits of a generated history (default 5000)")
    ap.add_argument("--queries", type=int, default=40, help="warm queries (default 40)")
    ap.add_argument("--cold", type=int, default=5, help="cold process runs each (default 5)")
    ap.add_argument("--no-embed", action="store_true", help="skip embeddings (measures --fast paths only)")
    ap.add_argument("--lmm", help="how to run lmm (default: lmm on PATH, else python -m lmm_cli)")
    a = ap.parse_args()

    tmp = make_tempdir("lmm-bench-recall-")
    gitcfg = tmp / "gitconfig"
    gitcfg.write_text("")
    env = bench_env(tmp / "lmm-home", gitcfg)
    lmm = lmm_command(a.lmm)
    if a.repo:
        repo = tmp / "repo"
        clone(resolve_repo(a.repo), repo, env)
        label = a.repo
    else:
        repo = generated_repo(a.generate, 1, tmp)
        label = f"generated, {a.generate} commits"
    t0 = time.perf_counter()
    init = [*lmm, "init", "--repo", str(repo), "--no-hooks"] + (["--no-embed"] if a.no_embed else ["--wait"])
    subprocess.run(init, env=env, check=True, stdout=subprocess.DEVNULL)
    init_s = time.perf_counter() - t0
    subjects = subprocess.run(["git", "log", "--no-merges", f"-n{a.queries}", "--format=%s"], cwd=repo, env=env,
                              capture_output=True, text=True, check=True).stdout.splitlines()

    # Warm, in process: the Recaller a long-lived server keeps.
    os.environ.update(env)
    from lmm_cli.address.dense import stored_encoder
    from lmm_cli.address.recall import Recaller
    from lmm_cli.workspace import open_workspace

    ws = open_workspace(repo)
    db = ws.connect()
    encoder = None if a.no_embed else stored_encoder(db)
    rec = Recaller(db, ws.repo.root, encoder=encoder)
    rec.recall(subjects[0])  # load the indexes once
    warm = []
    for q in subjects:
        t = time.perf_counter()
        rec.recall(q)
        warm.append((time.perf_counter() - t) * 1000)

    def cold(extra: list[str]) -> float:
        runs = []
        for q in subjects[: a.cold]:
            t = time.perf_counter()
            subprocess.run([*lmm, "recall", "--repo", str(repo), q, *extra], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            runs.append(time.perf_counter() - t)
        return median(runs)

    cold_full = None if a.no_embed else cold([])
    cold_fast = cold(["--fast"])
    grep = []
    for q in subjects:
        terms = [w for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]{2,}", q)][:6]
        args = ["git", "grep", "-n", "-i", "-I"] + [x for t in terms for x in ("-e", t)]
        t = time.perf_counter()
        subprocess.run(args, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        grep.append((time.perf_counter() - t) * 1000)

    print(f"## recall speed: {label}\n")
    print(f"lmm init (capture + code index{'' if a.no_embed else ' + embeddings'}): {init_s:.1f} s\n")
    rows = [
        ["warm recall, in process (p50 / p95 ms)", f"{median(warm):.1f} / {percentile(warm, 95):.1f}", "< 100 ms p50",
         "PASS" if median(warm) < 100 else "FAIL"],
        ["cold `lmm recall` (median s)", "-" if cold_full is None else f"{cold_full:.2f}", "< 2.5 s",
         "-" if cold_full is None else ("PASS" if cold_full < 2.5 else "FAIL")],
        ["cold `lmm recall --fast` (median s)", f"{cold_fast:.2f}", "< 0.5 s", "PASS" if cold_fast < 0.5 else "FAIL"],
        ["baseline: `git grep` of the query words (p50 ms)", f"{median(grep):.1f}", "", ""],
    ]
    print(md_table(["measure", "value", "target", "result"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
