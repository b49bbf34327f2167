"""The assistant integration: what Claude Code waits for, beside a baseline measured in the same run.

Measures, on a clone of a repository (default: /tmp/werkzeug; `git clone -q
../shared/repos/werkzeug.bundle /tmp/werkzeug`), initialised with embeddings (`lmm init --no-hooks --wait`):
- MCP `recall`, warm, through the real SDK client (in process, `Client(build_server(repo))`), p50/p95 ms
  over the subjects of the last commits, before and after the transcripts below are ingested; one
  `lmm mcp` over stdio the same way (first call and warm); beside a cold `lmm recall` process (median s);
- `lmm hook session-start` as a subprocess, a SessionStart payload on stdin: p50/p95 ms, beside `true`
  run the same way (the no-op hook: what spawning a process costs anyway);
- `lmm hook user-prompt-submit`, cold, a mix of questions about the code and chat ("thanks"): p95;
- `lmm hook session-end`: its return time (it only starts a detached capture), each run once the capture
  the run before it started has finished, as sessions end one at a time;
- `lmm ingest --sessions --no-embed` over a synthetic ~50 MB Claude Code transcript in the real record
  format (under a temporary CLAUDE_CONFIG_DIR, `cwd` = the repository): MB/s of the whole command, nothing
  subtracted; beside a plain `lmm ingest --no-embed` (nothing new to capture) as the baseline.
Targets (issue): MCP warm p50 <= 50 ms and p95 <= 150 ms; SessionStart p95 <= 500 ms; UserPromptSubmit
p95 <= 1.5 s; SessionEnd <= 100 ms; transcript ingest >= 20 MB/s.

    python benchmarks/bench_assistant.py --repo /tmp/werkzeug
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    bench_env,
    clone,
    lmm_command,
    lmm_status,
    make_tempdir,
    md_table,
    median,
    percentile,
    resolve_repo,
)

CHAT = ["thanks", "ok", "run the tests", "looks good, commit it", "yes", "go on", "thanks, that works",
        "can you explain that again?"]


def timed(cmd: list[str], env: dict[str, str], *, stdin: str = "", cwd: Path | None = None) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, input=stdin, env=env, cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({p.returncode}): {p.stderr[-800:]}")
    return dt, p.stdout


def fmt(xs: list[float], unit: str = "ms") -> str:
    k = 1000 if unit == "ms" else 1
    return f"{median(xs) * k:.0f} / {percentile(xs, 95) * k:.0f}"


def pf(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def mcp_in_process(repo: Path, queries: list[str]) -> tuple[float, list[float]]:
    from mcp import Client

    from lmm_cli.serve.mcp import build_server

    async with Client(build_server(str(repo))) as c:
        t = time.perf_counter()
        r = await c.call_tool("recall", {"query": queries[0]})
        first = time.perf_counter() - t
        assert not r.is_error, r.content
        warm = []
        for q in queries:
            t = time.perf_counter()
            r = await c.call_tool("recall", {"query": q})
            warm.append(time.perf_counter() - t)
            assert not r.is_error, r.content
    return first, warm


async def mcp_stdio(repo: Path, queries: list[str], env: dict[str, str], lmm: list[str]) -> tuple[float, list[float], int]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    e = dict(env)
    e["CLAUDE_PROJECT_DIR"] = str(repo)
    params = StdioServerParameters(command=lmm[0], args=[*lmm[1:], "mcp"], env=e, cwd="/")
    async with Client(params) as c:
        t = time.perf_counter()
        r = await c.call_tool("recall", {"query": queries[0]})
        first = time.perf_counter() - t
        assert not r.is_error, r.content
        warm, errors = [], 0
        for q in queries:
            t = time.perf_counter()
            r = await c.call_tool("recall", {"query": q})
            if r.is_error:  # counted, not timed: an error answers fast and would flatter the figures
                errors += 1
            else:
                warm.append(time.perf_counter() - t)
    return first, warm, errors


def synthetic_transcripts(config: Path, repo: Path, mb: float, seed: int = 7) -> int:
    """Claude Code transcripts (the record format of Claude Code 2.x) totalling about ``mb`` MB under
    ``config/projects/<project>/``: sessions of turns with a prompt, Read / Edit / Bash tool calls on
    real files of the repository, their results (file contents, test output) and an answer."""
    rnd = random.Random(seed)
    proj = config / "projects" / str(repo).replace("/", "-")
    proj.mkdir(parents=True, exist_ok=True)
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=repo, capture_output=True, text=True).stdout.split()
    files = [f for f in files if (repo / f).is_file()][:400] or ["README.md"]
    contents = {f: (repo / f).read_text(errors="replace")[:20000] for f in files}
    subjects = subprocess.run(["git", "log", "--no-merges", "-n500", "--format=%s"], cwd=repo, capture_output=True,
                              text=True).stdout.splitlines() or ["fix the thing"]
    target = int(mb * 1e6)
    total = 0
    n_sess = 0
    t0 = 1_780_000_000.0
    while total < target:
        sid = str(uuid.UUID(int=rnd.getrandbits(128)))
        base = {"sessionId": sid, "cwd": str(repo), "gitBranch": "main", "version": "2.1.197", "isSidechain": False,
                "userType": "external"}
        lines: list[str] = []
        ts = t0 + n_sess * 86400

        def stamp() -> str:
            nonlocal ts
            ts += rnd.uniform(1, 30)
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".000Z"

        def rec(obj: dict[str, Any], lines: list[str] = lines, base: dict[str, Any] = base) -> None:
            lines.append(json.dumps({**base, "uuid": str(uuid.UUID(int=rnd.getrandbits(128))),
                                     "timestamp": stamp(), **obj}))

        lines.append(json.dumps({"type": "queue-operation", "operation": "enqueue", "timestamp": stamp(),
                                 "sessionId": sid}))
        size = 0
        for turn in range(rnd.randint(20, 60)):
            prompt = rnd.choice(subjects) if rnd.random() < 0.7 else rnd.choice(CHAT)
            rec({"type": "user", "message": {"role": "user", "content": prompt}})
            for step in range(rnd.randint(1, 4)):
                f = rnd.choice(files)
                tid = f"toolu_{turn}_{step}"
                kind = rnd.choice(["Read", "Read", "Edit", "Bash"])
                if kind == "Read":
                    inp: dict[str, Any] = {"file_path": f"{repo}/{f}"}
                    out: Any = contents[f]
                    err = False
                elif kind == "Edit":
                    text = contents[f]
                    i = rnd.randrange(max(1, len(text) - 200))
                    inp = {"file_path": f"{repo}/{f}", "old_string": text[i:i + 120], "new_string": text[i:i + 120] + "  # fixed"}
                    out = f"The file {repo}/{f} has been updated."
                    err = False
                else:
                    inp = {"command": f"pytest tests/ -q -k {f.rsplit('/', 1)[-1][:-3]}"}
                    err = rnd.random() < 0.3
                    out = [{"type": "text", "text": ("FAILED tests/test_x.py::test_y - AssertionError\n1 failed, 40 passed"
                                                     if err else "41 passed in 2.31s") + "\n" + "." * rnd.randint(0, 4000)}]
                rec({"type": "assistant", "message": {"role": "assistant", "model": "claude-opus-4", "content": [
                    {"type": "thinking", "thinking": "Let me look at " + f, "signature": "x" * 200},
                    {"type": "tool_use", "id": tid, "name": kind, "input": inp}]}})
                rec({"type": "user", "message": {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": tid, "content": out, **({"is_error": True} if err else {})}]}})
            rec({"type": "assistant", "message": {"role": "assistant", "model": "claude-opus-4", "content": [
                {"type": "text", "text": f"Done: {prompt.lower()}. I changed {rnd.choice(files)} and the tests pass."}]}})
            if rnd.random() < 0.05:
                rec({"type": "user", "message": {"role": "user", "content":
                                                 "No, never change the public API without a deprecation warning."}})
        lines.append(json.dumps({"type": "summary", "summary": rnd.choice(subjects), "leafUuid": sid}))
        data = ("\n".join(lines) + "\n").encode()
        (proj / f"{sid}.jsonl").write_bytes(data)
        size += len(data)
        total += size
        n_sess += 1
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default="/tmp/werkzeug", help="repository to measure (cloned first; never modified)")
    ap.add_argument("--queries", type=int, default=50, help="MCP recall queries (default 50)")
    ap.add_argument("--cold", type=int, default=3, help="cold `lmm recall` runs (default 3)")
    ap.add_argument("--hooks", type=int, default=20, help="runs of each hook (default 20)")
    ap.add_argument("--transcript-mb", type=float, default=50, help="size of the synthetic transcripts (default 50)")
    ap.add_argument("--no-stdio", action="store_true", help="skip the `lmm mcp` stdio run")
    ap.add_argument("--lmm", help="how to run lmm (default: lmm on PATH, else python -m lmm_cli)")
    a = ap.parse_args()

    tmp = make_tempdir("lmm-bench-assistant-")
    gitcfg = tmp / "gitconfig"
    gitcfg.write_text("")
    env = bench_env(tmp / "lmm-home", gitcfg)
    claude = tmp / "claude"
    claude.mkdir()
    env["CLAUDE_CONFIG_DIR"] = str(claude)  # never the user's real transcripts
    env.pop("CLAUDE_PROJECT_DIR", None)
    lmm = lmm_command(a.lmm)
    repo = tmp / "repo"
    clone(resolve_repo(a.repo), repo, env)
    t0 = time.perf_counter()
    # --wait: embed in the foreground; timing hooks while the background embedding runs measures the embedding.
    subprocess.run([*lmm, "init", "--repo", str(repo), "--no-hooks", "--wait"], env=env, check=True, stdout=subprocess.DEVNULL)
    init_s = time.perf_counter() - t0
    subjects = subprocess.run(["git", "log", "--no-merges", f"-n{a.queries}", "--format=%s"], cwd=repo, env=env,
                              capture_output=True, text=True, check=True).stdout.splitlines()

    # MCP, warm, through the SDK client.
    os.environ.update(env)
    first, warm = asyncio.run(mcp_in_process(repo, subjects))
    stdio = None if a.no_stdio else asyncio.run(mcp_stdio(repo, subjects[:20], env, lmm))
    cold = [timed([*lmm, "recall", "--repo", str(repo), q], env)[0] for q in subjects[: a.cold]]

    # Hooks, each a fresh process with its JSON payload on stdin, as Claude Code runs them.
    def payload(event: str, **kw: Any) -> str:
        return json.dumps({"session_id": "0b6c5f0e-bench", "transcript_path": str(small), "cwd": str(repo),
                           "hook_event_name": event, "permission_mode": "default", **kw})

    small = tmp / "small.jsonl"
    small.write_text(json.dumps({"type": "user", "sessionId": "0b6c5f0e-bench", "cwd": str(repo), "uuid": "u1",
                                 "timestamp": "2026-01-01T00:00:00.000Z",
                                 "message": {"role": "user", "content": "hello"}}) + "\n")
    noop = [timed(["true"], env, stdin=payload("SessionStart", source="startup"), cwd=repo)[0] for _ in range(a.hooks)]
    start, brief_chars = [], 0
    for i in range(a.hooks):
        dt, out = timed([*lmm, "hook", "session-start"], env, cwd=repo,
                        stdin=payload("SessionStart", source=("startup", "resume", "clear", "compact")[i % 4]))
        start.append(dt)
        brief_chars = len(out)
    prompts = [subjects[i % len(subjects)] if i % 2 == 0 else CHAT[i % len(CHAT)] for i in range(a.hooks)]
    prompt_t, injected = [], 0
    for pr in prompts:
        dt, out = timed([*lmm, "hook", "user-prompt-submit"], env, cwd=repo, stdin=payload("UserPromptSubmit", prompt=pr))
        prompt_t.append(dt)
        injected += bool(out.strip())
    # Sessions end one at a time: each SessionEnd is timed once the capture the one before started
    # has finished (its line in logs/sessions.log), not while it still holds a core.
    sessions_log = Path(lmm_status(lmm, repo, env)["store"]) / "logs" / "sessions.log"

    def captures() -> int:
        return len(sessions_log.read_text().splitlines()) if sessions_log.exists() else 0

    end = []
    for _ in range(max(3, a.hooks // 4)):
        before = captures()
        end.append(timed([*lmm, "hook", "session-end"], env, cwd=repo,
                         stdin=payload("SessionEnd", reason="prompt_input_exit"))[0])
        deadline = time.monotonic() + 60
        while captures() == before and time.monotonic() < deadline:
            time.sleep(0.05)

    # Transcript ingest.
    size = synthetic_transcripts(claude, repo, a.transcript_mb)
    plain = timed([*lmm, "ingest", "--repo", str(repo), "--no-embed"], env)[0]
    sess, out = timed([*lmm, "ingest", "--repo", str(repo), "--sessions", "--no-embed"], env)
    mbps = size / 1e6 / sess
    # MCP again, now that the store holds the sessions too (what a store in use looks like).
    first_s, warm_s = asyncio.run(mcp_in_process(repo, subjects))

    print(f"## assistant integration: {a.repo}\n")
    print(f"lmm init (with embeddings): {init_s:.1f} s; {len(subjects)} queries; machine: {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at the end\n")
    rows = [
        ["MCP recall, warm, in-process SDK client (p50 / p95 ms)", fmt(warm), "<= 50 / <= 150",
         pf(median(warm) <= 0.05 and percentile(warm, 95) <= 0.15)],
        ["  first MCP recall of the server (ms)", f"{first * 1000:.0f}", "", ""],
        ["MCP recall, warm, after the transcripts are ingested (p50 / p95 ms)", fmt(warm_s), "<= 50 / <= 150",
         pf(median(warm_s) <= 0.05 and percentile(warm_s, 95) <= 0.15)],
    ]
    if stdio:
        rows += [[f"MCP recall, warm, `lmm mcp` over stdio (p50 / p95 ms; {stdio[2]}/{len(subjects[:20])} errors)",
                  fmt(stdio[1]) if stdio[1] else "-", "<= 50 / <= 150, no errors",
                  pf(not stdio[2] and median(stdio[1]) <= 0.05 and percentile(stdio[1], 95) <= 0.15)],
                 ["  first stdio recall, server start excluded (ms)", f"{stdio[0] * 1000:.0f}", "", ""]]
    rows += [
        ["baseline: cold `lmm recall` process (median s)", f"{median(cold):.2f}", "", ""],
        ["SessionStart hook (p50 / p95 ms)", fmt(start), "p95 <= 500", pf(percentile(start, 95) <= 0.5)],
        ["  baseline: `true` as the hook (p50 / p95 ms)", fmt(noop), "", ""],
        [f"UserPromptSubmit hook, cold (p50 / p95 ms; injected {injected}/{len(prompts)})", fmt(prompt_t),
         "p95 <= 1500", pf(percentile(prompt_t, 95) <= 1.5)],
        ["SessionEnd hook return (p50 / p95 ms)", fmt(end), "<= 100", pf(percentile(end, 95) <= 0.1)],
        [f"`lmm ingest --sessions --no-embed`, {size / 1e6:.1f} MB of transcripts (s; MB/s)",
         f"{sess:.1f}; {mbps:.1f}", ">= 20 MB/s", pf(mbps >= 20)],
        ["  baseline: `lmm ingest --no-embed` (s)", f"{plain:.2f}", "", ""],
    ]
    print(md_table(["measure", "value", "target", "result"], rows))
    print(f"\nSessionStart output: {brief_chars} chars; ingest said: {out.strip().splitlines()[-1] if out.strip() else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
