#!/usr/bin/env python3
"""Backfill throughput: `lmm init` on a history vs `git log -p` printing the same history.

What it measures
    * git log: the best of 3 wall times of
      ``git log --branches HEAD -p --numstat > /dev/null`` — git printing every patch of
      HEAD and the local branches, the history lmm captures;
    * lmm init: the wall time of one ``lmm init --repo CLONE --json`` (create the store,
      backfill that history, install the hooks), run as a subprocess.

    Output: a markdown table with the number of commits, both times, their ratio
    (lmm init / git log), commits per second of lmm init, the store size on disk and the
    target (ratio <= 3x) with pass/fail; then a check that lmm captured every commit. If
    lmm leaves work to a background drainer after ``init`` returns, the time until it
    is idle is reported on its own line.

Safety
    Your repository is never modified: it is cloned (``git clone --no-hardlinks
    --quiet``) into a temporary directory, with each of its branches recreated as a local
    branch of the clone; ``LMM_HOME`` points into that directory; your global/system git
    config is ignored for the duration. Everything is deleted at the end unless
    ``--keep`` is given.

Usage
    python benchmarks/bench_backfill.py                       # generated 5,000-commit repo
    python benchmarks/bench_backfill.py --generate 1000       # smaller generated repo
    python benchmarks/bench_backfill.py --repo ~/src/myapp    # your repository
    python benchmarks/bench_backfill.py --repo . --json

    lmm is run as ``lmm`` from PATH, else ``python -m lmm_cli``; ``--lmm "CMD"``
    overrides. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import shutil
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
    lmm_status,
    make_tempdir,
    md_table,
    resolve_repo,
)


def time_git_log(repo: Path, env: dict, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["git", "log", "--branches", "HEAD", "-p", "--numstat"], cwd=repo, env=env,
                       stdout=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - t0)
    return out


def wait_idle(lmm: list[str], repo: Path, env: dict, timeout: float) -> tuple[float, dict]:
    t0 = time.perf_counter()
    while True:
        st = lmm_status(lmm, repo, env)
        q, d = st.get("queue") or {}, st.get("drainer") or {}
        if int(q.get("pending", 0)) == 0 and not d.get("running", False):
            return time.perf_counter() - t0, st
        if time.perf_counter() - t0 > timeout:
            return time.perf_counter() - t0, st
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Time `lmm init` (backfill) against `git log --branches HEAD -p --numstat` on the same history.",
        epilog="Your repository is only read (cloned). Example: python benchmarks/bench_backfill.py --repo .")
    src_group = ap.add_mutually_exclusive_group()
    src_group.add_argument("--repo", help="repository to clone and measure")
    src_group.add_argument("--generate", type=int, metavar="N", default=5000,
                           help="generate an N-commit repository with genrepo.py (default 5000; ignored with --repo)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generated repository (default 1)")
    ap.add_argument("--git-runs", type=int, default=3, help="git log runs, best is kept (default 3)")
    ap.add_argument("--target", type=float, default=3.0, help="pass if lmm init / git log is at most this (default 3)")
    ap.add_argument("--idle-timeout", type=float, default=600.0, help="seconds to wait for background work after init (default 600)")
    ap.add_argument("--lmm", help='command that runs lmm (default: "lmm" from PATH, else "python -m lmm_cli")')
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (clone, LMM_HOME) for inspection")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    ap.add_argument("--check", action="store_true", help="exit 1 when the target is missed (for CI)")
    args = ap.parse_args(argv)

    lmm = lmm_command(args.lmm)
    tmp = make_tempdir("lmm-bench-backfill-")
    try:
        gitcfg = tmp / "gitconfig"
        gitcfg.write_text("")
        lmm_home = tmp / "lmm-home"
        env = bench_env(lmm_home, gitcfg)
        if args.repo:
            src = resolve_repo(args.repo)
            label = src.name
            print(f"source: {src} (cloned, not modified)")
        else:
            t0 = time.perf_counter()
            src = generated_repo(args.generate, args.seed, tmp)
            label = f"generated, {args.generate} commits, seed {args.seed}"
            print(f"source: generated {args.generate}-commit repository in {time.perf_counter() - t0:.1f} s")
        repo = tmp / "clone"
        clone(src, repo, env)
        commits = int(subprocess.run(["git", "rev-list", "--count", "--branches", "HEAD"], cwd=repo, env=env,
                                     check=True, capture_output=True, text=True).stdout)
        merges = int(subprocess.run(["git", "rev-list", "--count", "--merges", "--branches", "HEAD"], cwd=repo, env=env,
                                    check=True, capture_output=True, text=True).stdout)
        print(f"history: {commits} commits ({merges} merges) on HEAD + local branches")

        git_times = time_git_log(repo, env, max(1, args.git_runs))
        git_s = min(git_times)
        print(f"git log --branches HEAD -p --numstat: {', '.join(f'{t:.2f}' for t in git_times)} s")

        t0 = time.perf_counter()
        r = subprocess.run([*lmm, "init", "--repo", str(repo), "--json"], env=env, capture_output=True, text=True)
        init_s = time.perf_counter() - t0
        if r.returncode != 0:
            print(f"lmm init failed ({r.returncode}) after {init_s:.1f} s:\n{r.stderr.strip()[-2000:]}", file=sys.stderr)
            return 2
        print(f"lmm init --json: {init_s:.2f} s ({' '.join(lmm)})")
        try:
            init_out = json.loads(r.stdout)
        except ValueError:
            init_out = None
            print(f"note: lmm init --json did not print one JSON object (stdout starts {r.stdout[:120]!r})")
        bg_s, st = wait_idle(lmm, repo, env, args.idle_timeout)

        store_bytes = int(st["store_bytes"])
        ratio = init_s / git_s if git_s else float("inf")
        ok = ratio <= args.target
        print()
        print(f"## backfill ({label})")
        print()
        print(md_table(
            ["commits", f"git log s (best of {len(git_times)})", "lmm init s", "ratio", "commits/s", "store MB", "target", "result"],
            [[commits, f"{git_s:.2f}", f"{init_s:.2f}", f"{ratio:.2f}x", f"{commits / init_s:,.0f}",
              f"{store_bytes / 1e6:.2f}", f"<= {args.target:g}x", "PASS" if ok else "FAIL"]]))
        print()
        ingest = (init_out or {}).get("ingest") if isinstance(init_out, dict) else None
        if isinstance(ingest, dict) and isinstance(ingest.get("seconds"), (int, float)):
            print(f"of which lmm's own ingest timer: {ingest['seconds']:.2f} s; the rest is process start-up,"
                  " store creation and hook installation")
        if bg_s > 0.5:
            print(f"background work after init returned: {bg_s:.1f} s until lmm status reported idle")
        by_kind = st.get("by_kind") or {}
        captured = sum(v for k, v in by_kind.items() if k in ("commit", "merge") and isinstance(v, int))
        if by_kind:
            print(f"captured by lmm: {captured}/{commits} commits (by kind: "
                  + ", ".join(f"{k}={v}" for k, v in sorted(by_kind.items())) + ")"
                  + ("" if captured == commits else "  <-- MISMATCH"))
        if args.json:
            print(json.dumps({"commits": commits, "merges": merges, "git_log_s": git_times, "lmm_init_s": init_s,
                              "ratio": ratio, "commits_per_s": commits / init_s, "store_bytes": store_bytes,
                              "target": args.target, "pass": ok, "background_s": bg_s, "captured": captured,
                              "by_kind": by_kind, "init_output": init_out}))
        return 1 if args.check and not ok else 0
    finally:
        if args.keep:
            print(f"kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
