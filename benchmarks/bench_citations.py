"""Citations: do the symbol lines a brief prints name the definition, and does a long task still get a brief?

Two measurements on any repository (used in place: lmm's store goes to a temporary LMM_HOME, no
hooks are installed, nothing in the repository is written):

1. Definition lines. ``lmm recall --fast --json`` for the subjects of ``--queries`` commits spread
   over the history, and ``lmm brief``. Every ``name (Lnn)`` a recall brief prints, every symbol line
   in the JSON answer, and every central module's ``path:line`` in the repo brief is checked against
   the file: it is the definition line when the line holds the symbol's name and is not a
   decorator, annotation, attribute or comment line (``@``, ``#[``, ``[``, ``//``, ``/*``, ``*``,
   ``#``). Reported: the share that is not.
2. Long tasks. ``lmm recall "<task>"`` for tasks of 2 KB, 20 KB and 100 KB made of the repository's
   own commit messages (as a pasted issue would be): wall seconds of the process, and whether a
   brief came out (not "No memory of that") while ``--json`` ranks files.

    python benchmarks/bench_citations.py --repo /path/to/repo
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_env, lmm_command, make_tempdir, md_table, resolve_repo  # noqa: E402

_LREF = re.compile(r"`([^`]+)` \(L(\d+)\)")
_NOT_DEF = ("@", "#[", "[", "//", "/*", "*", "#", "'''", '"""')


def definition_line(repo: Path, path: str, line: int, name: str, cache: dict[str, list[str]]) -> bool:
    if path not in cache:
        try:
            cache[path] = (repo / path).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            cache[path] = []
    lines = cache[path]
    if not 1 <= line <= len(lines):
        return False
    text = lines[line - 1].strip()
    if not text or text.startswith(_NOT_DEF) and not text.startswith("#define"):
        return text.startswith("#") and text.lstrip("#").startswith(" ") and name in text  # a markdown heading
    last = re.split(r"[.:]+", name)[-1] if not name.startswith("~") else name
    return last in text


def queries(repo: Path, n: int) -> list[str]:
    subjects = subprocess.run(["git", "log", "--no-merges", "--format=%s"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.splitlines()
    subjects = [s for s in subjects if len(s.split()) >= 3]
    step = max(1, len(subjects) // n)
    return subjects[::step][:n]


def long_task(repo: Path, size: int) -> str:
    text = subprocess.run(["git", "log", "--no-merges", "--format=%B"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout
    text = "\n".join(ln for ln in text.splitlines() if ln.strip())
    while len(text.encode()) < size:
        text += "\n" + text
    return text.encode()[:size].decode("utf-8", "ignore")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", required=True, help="repository to measure (not modified)")
    ap.add_argument("--queries", type=int, default=30, help="recall queries (default 30)")
    ap.add_argument("--sizes", default="2000,20000,100000", help="long task sizes in bytes")
    ap.add_argument("--lmm", help="how to run lmm (default: lmm on PATH, else python -m lmm_cli)")
    ap.add_argument("--home", help="LMM_HOME to use (default: a new temporary folder)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    a = ap.parse_args()

    repo = resolve_repo(a.repo)
    tmp = make_tempdir("lmm-bench-cite-")
    gitcfg = tmp / "gitconfig"
    gitcfg.write_text("")
    env = bench_env(Path(a.home) if a.home else tmp / "lmm-home", gitcfg)
    lmm = lmm_command(a.lmm)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # cwd: not the checkout (``python -m`` would import the package there, not the one measured)
        return subprocess.run([*lmm, *args, "--repo", str(repo)], env=env, capture_output=True, text=True, cwd=tmp)

    st = run("status", "--json")
    if st.returncode != 0 or not json.loads(st.stdout).get("episodes"):
        t0 = time.perf_counter()
        p = run("init", "--no-embed", "--no-hooks")
        if p.returncode != 0:
            raise SystemExit(f"lmm init failed: {p.stderr[-800:]}")
        print(f"init: {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    cache: dict[str, list[str]] = {}
    printed = [0, 0]  # (Lnn) in recall briefs: [wrong, total]
    answered = [0, 0]  # symbol lines in the JSON answers
    central = [0, 0]  # central modules' path:line in the repo brief
    examples: list[str] = []
    for q in queries(repo, a.queries):
        p = run("recall", "--fast", "--json", q)
        if p.returncode != 0:
            print(f"recall failed for {q!r}: {p.stderr.strip()[-300:]}", file=sys.stderr)
            continue
        out = json.loads(p.stdout)
        for ln in out["brief"].splitlines():
            m = re.match(r"- `([^`]+)` — ", ln)
            if not m:
                continue
            for name, no in _LREF.findall(ln):
                ok = definition_line(repo, m.group(1), int(no), name, cache)
                printed[0] += not ok
                printed[1] += 1
                if not ok and len(examples) < 8:
                    examples.append(f"{m.group(1)}:{no} `{name}`: {cache[m.group(1)][int(no) - 1].strip()[:60]!r}"
                                    if 0 < int(no) <= len(cache[m.group(1)]) else f"{m.group(1)}:{no}")
        for f in out["files"]:
            for s in f["symbols"]:
                ok = definition_line(repo, f["path"], int(s["line"]), s["name"], cache)
                answered[0] += not ok
                answered[1] += 1
    p = run("brief", "--json")
    md = json.loads(p.stdout)["brief"] if p.returncode == 0 else ""
    in_central = False
    for ln in md.splitlines():
        if ln.startswith("## "):
            in_central = ln == "## Central modules"
            continue
        m = re.match(r"- `([^`]+)`[^:]*: `([^`]+)`.*\(`[^`]+:(\d+)`\)$", ln) if in_central else None
        if m:
            ok = definition_line(repo, m.group(1), int(m.group(3)), m.group(2), cache)
            central[0] += not ok
            central[1] += 1

    def share(x: list[int]) -> str:
        return f"{x[0] / x[1]:.0%} ({x[0]}/{x[1]})" if x[1] else "n/a"

    print(f"## Definition lines: {repo.name}\n")
    print(md_table(["where", "not the definition line"],
                   [["recall briefs, `name (Lnn)`", share(printed)], ["recall --json symbols", share(answered)],
                    ["repo brief, central modules", share(central)]]))
    if examples:
        print("\nExamples:\n" + "\n".join(f"- {e}" for e in examples))

    rows = []
    figures: dict[str, object] = {"printed": printed, "answered": answered, "central": central, "long": {}}
    for size in [int(s) for s in a.sizes.split(",") if s]:
        task = long_task(repo, size)
        t0 = time.perf_counter()
        p = run("recall", "--fast", task)
        secs = time.perf_counter() - t0
        pj = run("recall", "--fast", "--json", task)
        files = len(json.loads(pj.stdout)["files"]) if pj.returncode == 0 else -1
        brief = p.returncode == 0 and not p.stdout.startswith("No memory")
        if p.returncode != 0:
            print(f"recall of {size} bytes exited {p.returncode}:\n{p.stderr.strip()[-2000:]}", file=sys.stderr)
        head = p.stdout.splitlines()[0] if p.stdout else f"exit {p.returncode}"
        rows.append([f"{size // 1000} KB", f"{secs:.2f}", "yes" if brief else "no", files, len(p.stdout), head[:70]])
        figures["long"][size] = {"seconds": round(secs, 3), "brief": brief, "files": files}  # type: ignore[index]
    print(f"\n## Long tasks: {repo.name}\n")
    print(md_table(["task", "recall s", "brief", "--json files", "brief chars", "first line"], rows))
    if a.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
