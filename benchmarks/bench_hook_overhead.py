#!/usr/bin/env python3
"""How much time lmm's git hooks add to `git commit`.

What it measures
    The wall time of the `git commit` process (``time.perf_counter`` around the
    subprocess) in two clones of the same repository, in the same run:

    * A: a plain clone, no hooks;
    * B: the same clone after ``lmm init`` (store + backfill + git hooks).

    Each run changes one tracked file and runs ``git commit -q -am MSG`` in A and in B,
    interleaved, alternating which goes first. Before every timed commit in B, and
    after it, the script waits (untimed) until lmm's background drainer is idle —
    ``lmm status --json`` reports ``queue.pending == 0`` and ``drainer.running`` false —
    so each timed commit measures the hook itself, not a drainer still busy with the
    previous commit. The time from the end of a B commit until lmm is idle again is
    reported separately as background work (its resolution is about one
    ``lmm status`` call, also reported).

    Output: a markdown table with median and p90 commit time without and with hooks,
    the added time (median B - median A), the ratio, and the 15 ms target (added
    median <= 15 ms) with pass/fail (exit status 1 on a miss only with ``--check``); then the background drain time per commit; then
    a check that lmm captured every benchmark commit.

Safety
    Your repository is never modified: it is cloned twice
    (``git clone --no-hardlinks --quiet``) into a temporary directory, ``LMM_HOME``
    points into that directory, and your global/system git config is ignored for the
    duration (a fixed committer identity is used). Everything is deleted at the end
    unless ``--keep`` is given.

Usage
    python benchmarks/bench_hook_overhead.py                      # generated 300-commit repo
    python benchmarks/bench_hook_overhead.py --repo ~/src/myapp   # your repository
    python benchmarks/bench_hook_overhead.py --repo . --runs 100 --json

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
    median,
    percentile,
    resolve_repo,
)

TEXT_EXTS = {
    ".py": "#", ".sh": "#", ".rb": "#", ".yaml": "#", ".yml": "#", ".toml": "#", ".go": "//",
    ".rs": "//", ".java": "//", ".ts": "//", ".tsx": "//", ".js": "//", ".c": "//", ".h": "//",
    ".cpp": "//", ".hpp": "//", ".kt": "//", ".swift": "//", ".md": "", ".txt": "",
}


def pick_files(repo: Path, env: dict) -> list[str]:
    """Up to 8 tracked text files of moderate size, spread over the tree, to edit."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, env=env, check=True,
                         capture_output=True).stdout.decode(errors="replace").split("\0")
    cands = []
    for p in out:
        ext = Path(p).suffix
        if ext in TEXT_EXTS and (repo / p).is_file() and not (repo / p).is_symlink():
            size = (repo / p).stat().st_size
            if 200 <= size <= 200_000:
                cands.append(p)
    cands.sort()
    code = [p for p in cands if TEXT_EXTS[Path(p).suffix] == "//" or Path(p).suffix == ".py"]
    if len(code) >= 4:
        cands = code
    if not cands:
        return []
    step = max(1, len(cands) // 8)
    return cands[::step][:8]


def change_file(repo: Path, rel: str, n: int) -> None:
    prefix = TEXT_EXTS.get(Path(rel).suffix, "#")
    with open(repo / rel, "a", encoding="utf-8", newline="\n") as fh:
        fh.write(f"{prefix + ' ' if prefix else ''}lmm bench change {n}\n")


def git_commit(repo: Path, msg: str, env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(["git", "commit", "-q", "-am", msg], cwd=repo, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"git commit failed in {repo}: {r.stderr.decode(errors='replace').strip()}")
    return dt


class Idle:
    """Polls `lmm status --json` until the queue is empty and no drainer runs."""

    def __init__(self, lmm: list[str], repo: Path, env: dict, timeout: float):
        self.lmm, self.repo, self.env, self.timeout = lmm, repo, env, timeout
        self.status_call_s: list[float] = []
        self.notes: list[str] = []

    def state(self) -> tuple[bool, dict]:
        t0 = time.perf_counter()
        st = lmm_status(self.lmm, self.repo, self.env)
        self.status_call_s.append(time.perf_counter() - t0)
        q, d = st.get("queue"), st.get("drainer")
        if not isinstance(q, dict) or "pending" not in q or not isinstance(d, dict) or "running" not in d:
            raise RuntimeError("lmm status --json has no queue.pending / drainer.running "
                               f"(top-level keys: {sorted(st)}); cannot tell when the drainer is idle")
        return (int(q["pending"]) == 0 and not d["running"]), st

    def wait(self) -> tuple[float, float, bool]:
        """Seconds until idle: a lower bound (the start of the first poll that found lmm
        idle) and an upper bound (its end), both from this call; and whether lmm got idle
        before the timeout."""
        t0 = time.perf_counter()
        while True:
            t_poll = time.perf_counter()
            idle, _ = self.state()
            if idle:
                return t_poll - t0, time.perf_counter() - t0, True
            if time.perf_counter() - t0 > self.timeout:
                return t_poll - t0, time.perf_counter() - t0, False
            time.sleep(0.01)


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Time `git commit` with lmm's hooks vs without, on two clones of the same repository.",
        epilog="Your repository is only read (cloned). Example: python benchmarks/bench_hook_overhead.py --repo . --runs 40")
    ap.add_argument("--repo", help="repository to clone (default: generate a 300-commit repository with genrepo.py)")
    ap.add_argument("--runs", type=int, default=40, help="timed commits per clone (default 40)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed commits per clone first (default 2)")
    ap.add_argument("--commits", type=int, default=300, help="size of the generated repository (default 300)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the generated repository (default 1)")
    ap.add_argument("--target-ms", type=float, default=15.0, help="pass if the added median is at most this (default 15)")
    ap.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to wait for lmm to go idle (default 30)")
    ap.add_argument("--lmm", help='command that runs lmm (default: "lmm" from PATH, else "python -m lmm_cli")')
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (clones, LMM_HOME) for inspection")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    ap.add_argument("--check", action="store_true", help="exit 1 when the target is missed (for CI)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")

    lmm = lmm_command(args.lmm)
    tmp = make_tempdir("lmm-bench-hooks-")
    try:
        gitcfg = tmp / "gitconfig"
        gitcfg.write_text("")
        env = bench_env(tmp / "lmm-home", gitcfg)
        if args.repo:
            src = resolve_repo(args.repo)
            print(f"source: {src} (cloned, not modified)")
        else:
            t0 = time.perf_counter()
            src = generated_repo(args.commits, args.seed, tmp)
            print(f"source: generated {args.commits}-commit repository in {time.perf_counter() - t0:.1f} s")
        a, b = tmp / "A-no-hooks", tmp / "B-lmm"
        clone(src, a, env)
        clone(src, b, env)

        t0 = time.perf_counter()
        r = subprocess.run([*lmm, "init", "--repo", str(b), "--json"], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"lmm init failed ({r.returncode}):\n{r.stderr.strip()[-2000:]}", file=sys.stderr)
            return 2
        print(f"lmm init on clone B: {time.perf_counter() - t0:.1f} s ({' '.join(lmm)})")
        idle = Idle(lmm, b, env, args.drain_timeout)
        idle.wait()
        _, st0 = idle.state()
        hooks = [h for h in (st0.get("hooks") or {}).get("states", [])]
        hook_desc = ", ".join(f"{h.get('name', h.get('hook', '?'))}={h.get('state', h.get('status', '?'))}" for h in hooks) or "?"
        print(f"hooks in B: {hook_desc}")
        commits0 = (st0.get("by_kind") or {}).get("commit")

        files = pick_files(a, env)
        if not files:  # nothing suitable: add one small file to both clones first
            for repo in (a, b):
                (repo / "lmm-bench.txt").write_text("lmm benchmark scratch file\n" * 10)
                subprocess.run(["git", "add", "lmm-bench.txt"], cwd=repo, env=env, check=True)
                git_commit(repo, "Add lmm benchmark scratch file", env)
                if repo == b:
                    idle.wait()
            files = ["lmm-bench.txt"]
        print(f"editing {len(files)} file(s) in turn, e.g. {files[0]}")

        times = {"A": [], "B": []}
        drain: list[float] = []     # upper bounds: end of the first idle poll
        drain_lo: list[float] = []  # lower bounds: start of that poll
        timeouts = 0
        n = 0
        total = args.warmup + args.runs
        for i in range(total):
            timed = i >= args.warmup
            order = ("A", "B") if i % 2 == 0 else ("B", "A")
            rel = files[i % len(files)]
            for which in order:
                repo = a if which == "A" else b
                n += 1
                change_file(repo, rel, n)
                msg = f"Bench change {i}: touch {Path(rel).name}"
                if which == "B":
                    idle.wait()  # untimed: the previous commit's drain is finished
                dt = git_commit(repo, msg, env)
                if which == "B":
                    lo, hi, ok = idle.wait()  # untimed for the commit: background work
                    if timed:
                        drain.append(hi)
                        drain_lo.append(lo)
                        timeouts += not ok
                if timed:
                    times[which].append(dt)
            if timed:
                done = i - args.warmup + 1
                if done % 10 == 0 or done == args.runs:
                    sys.stdout.flush()
                    print(f"  {done}/{args.runs} runs", file=sys.stderr, flush=True)

        _, st1 = idle.state()
        commits1 = (st1.get("by_kind") or {}).get("commit")

        ma, mb = median(times["A"]), median(times["B"])
        added = mb - ma
        ok = added * 1000 <= args.target_ms
        print()
        print(f"## git commit, {args.runs} runs each, interleaved ({'generated repo' if not args.repo else src.name})")
        print()
        print(md_table(["", "median ms", "p90 ms", "min ms", "max ms"], [
            ["without hooks (A)", ms(ma), ms(percentile(times["A"], 90)), ms(min(times["A"])), ms(max(times["A"]))],
            ["with lmm hooks (B)", ms(mb), ms(percentile(times["B"], 90)), ms(min(times["B"])), ms(max(times["B"]))],
        ]))
        print()
        print(md_table(["added ms (median B - median A)", "ratio B/A", "target", "result"], [
            [ms(added), f"{mb / ma:.2f}x" if ma else "n/a", f"added <= {args.target_ms:g} ms", "PASS" if ok else "FAIL"],
        ]))
        print()
        status_ms = median(idle.status_call_s)
        print("## background work after each commit in B (not part of the commit time)")
        print()
        first = sum(1 for x in drain_lo if x < 0.001)
        print(md_table(["drain until idle: median ms", "p90 ms", "max ms", "idle at first poll", "timeouts",
                        "one lmm status call"], [
            [ms(median(drain)), ms(percentile(drain, 90)), ms(max(drain)), f"{first}/{len(drain)}",
             f"{timeouts}/{len(drain)}", f"~{ms(status_ms)} ms"],
        ]))
        print()
        print("(time from the end of each `git commit` in B until `lmm status --json` reports queue.pending == 0 and"
              " drainer.running false. These are upper bounds with the resolution of one status call: \"idle at first"
              " poll\" means the drain took less than one `lmm status` call.)")
        print()
        expected = total + (1 if files == ["lmm-bench.txt"] else 0)
        if isinstance(commits0, int) and isinstance(commits1, int):
            got = commits1 - commits0
            print(f"captured by lmm: {got}/{expected} benchmark commits"
                  + ("" if got == expected else "  <-- MISMATCH: hooks/drainer did not capture every commit"))
        else:
            print("captured by lmm: unknown (lmm status has no by_kind.commit)")
        if args.json:
            print(json.dumps({
                "runs": args.runs, "without_hooks_ms": [round(x * 1000, 3) for x in times["A"]],
                "with_hooks_ms": [round(x * 1000, 3) for x in times["B"]],
                "median_without_ms": ma * 1000, "median_with_ms": mb * 1000, "added_ms": added * 1000,
                "p90_without_ms": percentile(times["A"], 90) * 1000, "p90_with_ms": percentile(times["B"], 90) * 1000,
                "ratio": mb / ma if ma else None, "target_ms": args.target_ms, "pass": ok,
                "drain_ms": [round(x * 1000, 3) for x in drain], "drain_lower_bound_ms": [round(x * 1000, 3) for x in drain_lo],
                "drain_timeouts": timeouts,
                "status_call_ms": status_ms * 1000,
                "captured": None if not isinstance(commits1, int) or not isinstance(commits0, int) else commits1 - commits0,
            }))
        return 1 if args.check and not ok else 0
    finally:
        if args.keep:
            print(f"kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
