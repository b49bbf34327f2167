"""``lmm bench localize``: time travel on a repository to measure file localisation.

Cut the history N non-merge commits before HEAD (on HEAD's first-parent line); build every system
only from what existed at the cut — the history reachable from the cut and the working tree checked
out at the cut in a temporary worktree — and use each held-out commit as a query: its message (with
trailers, PR/issue numbers and URLs stripped) is the question, the files it modified, deleted or
renamed away from that existed at the cut are the gold answer.

Reported per system: Hit@1/5/10 (any gold file in the top k), Recall@10 (mean fraction of the gold
files in the top 10), MRR (1/rank of the first gold file within the top ``depth``=100), the index
build time and p50/p95 query latency. One markdown table.

Usage::

    python -m lmm_cli.bench.localize --repo PATH --holdout 100 [--systems bm25,history,dense,repomap]

From Python (how the lmm system and fusion tuning plug in)::

    from lmm_cli.bench import localize as L
    report = L.run(repo, 100, [my_system, *baselines.all_baselines()])
    print(L.markdown(report))

    with L.snapshot(repo, 300) as snap:            # build once, evaluate many settings
        sys.build(snap.root, snap.files, snap.history)
        early, late = L.tune_split(snap.queries)    # tune on early, score on late
        ...L.evaluate("lmm w=0.3", lambda q: sys.rank(q, 100), late)

A system is any object with ``name``, ``build(root, files, history)`` and ``rank(query, k)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from lmm_cli.bench.baselines import HistoryCommit

__all__ = [
    "Query", "HeldOut", "Row", "Report", "Snapshot", "held_out", "held_out_full", "history_before",
    "files_at", "clean_message", "worktree_at", "snapshot", "evaluate", "run", "markdown",
    "tune_split", "percentile", "main",
]

# --------------------------------------------------------------------------- git


def _git(repo: Path, *args: str) -> str:
    p = subprocess.run(["git", "-C", str(repo), *args], capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({p.returncode}): "
                           f"{p.stderr.decode('utf-8', 'replace').strip()}")
    return p.stdout.decode("utf-8", "surrogateescape")


_LOG_FORMAT = "--format=%x1e%H%x1f%P%x1f%B%x1f"


@dataclass
class _Commit:
    sha: str
    parents: list[str]
    message: str
    changes: list[tuple[str, ...]]  # (status letter, path) or (R|C, old, new)


def _parse_log(out: str) -> list[_Commit]:
    """Parse ``git log -z --name-status`` output made with ``_LOG_FORMAT``."""
    commits = []
    for rec in out.split("\x1e")[1:]:
        head, _, rest = rec.rpartition("\x1f")
        sha, parents, body = head.split("\x1f", 2)
        toks = rest.lstrip("\n\0").split("\0")
        changes: list[tuple[str, ...]] = []
        i = 0
        while i < len(toks):
            st = toks[i].strip()
            if not st:
                i += 1
                continue
            if st[0] in "RC":
                if i + 2 < len(toks):
                    changes.append((st[0], toks[i + 1], toks[i + 2]))
                i += 3
            else:
                if i + 1 < len(toks):
                    changes.append((st[0], toks[i + 1]))
                i += 2
        commits.append(_Commit(sha.strip(), parents.split(), body.strip(), changes))
    return commits


def files_at(repo: Path, sha: str) -> list[str]:
    """Every blob path in the tree of ``sha`` (``git ls-tree -r``), sorted; submodules left out."""
    out = _git(repo, "ls-tree", "-r", "-z", "--full-tree", sha)
    files = []
    for entry in out.split("\0"):
        if not entry:
            continue
        meta, _, path = entry.partition("\t")
        if meta.split()[1:2] == ["blob"]:
            files.append(path)
    return sorted(files)


def history_before(repo: Path, cut: str) -> list[HistoryCommit]:
    """The commits reachable from ``cut`` (the cut included), oldest first, with the paths each
    touched at that commit and its renames (``git log -M --name-status``). Merges have no files."""
    out = _git(repo, "log", "--no-show-signature", "--reverse", "-M", "--name-status", "-z",
               _LOG_FORMAT, cut)
    hist = []
    for c in _parse_log(out):
        files: list[str] = []
        renames: list[tuple[str, str]] = []
        for ch in c.changes:
            if ch[0] == "R":
                renames.append((ch[1], ch[2]))
                files.append(ch[2])
            elif ch[0] == "C":
                files.append(ch[2])
            else:
                files.append(ch[1])
        hist.append(HistoryCommit(c.sha, c.message, files, renames))
    return hist


# --------------------------------------------------------------------------- queries

_KNOWN_TRAILER = re.compile(
    r"^[ \t]*(?:signed-off-by|co-authored-by|change-id|reviewed-by|reviewed-on|acked-by|tested-by|"
    r"reported-by|suggested-by|helped-by|approved-by|requested-by|cc|[a-z0-9-]+-by)[ \t]*:.*$\n?",
    re.IGNORECASE | re.MULTILINE)
_TRAILER_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):\s+\S.*$")
_TRAILER_TOKEN = re.compile(
    r"^(?:.+-by|.+-id|.+-on|bug|bugs|issue|issues|fixes|closes|resolves|refs?|see-also|link|jira|ticket|"
    r"pr|pull-request|task|story|cc|tags?|signed-off|co-authored)$", re.IGNORECASE)
_CHERRY = re.compile(r"^\s*\(cherry picked from commit [0-9a-f]+\)\s*$\n?", re.IGNORECASE | re.MULTILINE)
_MERGE_PR = re.compile(r"\bMerge pull request\s+(?:[\w.-]+/[\w.-]+)?#\d+(?:\s+from\s+\S+)?", re.IGNORECASE)
_MERGE_REQ = re.compile(r"\bSee merge request\s+\S+", re.IGNORECASE)
_CLOSES = re.compile(
    r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?|refs?|see|related to|part of)\s*:?\s*"
    r"(?:[\w.-]+/[\w.-]+)?(?:#|GH-)\d+(?:\s*,\s*(?:[\w.-]+/[\w.-]+)?(?:#|GH-)\d+)*",
    re.IGNORECASE)
_URL = re.compile(r"(?:https?|ftp)://\S+|\bwww\.\S+", re.IGNORECASE)
_PAREN_REF = re.compile(r"\s*\(\s*(?:[\w.-]+/[\w.-]+)?(?:#|GH-|!)\d+\s*\)")
_BARE_REF = re.compile(r"(?:(?<=\s)|^)(?:[\w.-]+/[\w.-]+)?(?:#|GH-)\d+\b", re.MULTILINE)


def clean_message(msg: str) -> str:
    """The message as a question: trailers (Signed-off-by:, Co-authored-by:, Change-Id:, Reviewed-by:,
    a closing paragraph of ``Token: value`` lines where one token is a known trailer),
    ``(cherry picked from …)``,
    PR and issue numbers (``(#123)``, ``Fixes #12``, ``Merge pull request #12 from a/b``, ``GH-7``)
    and URLs removed; blank-line runs collapsed."""
    text = msg.replace("\r\n", "\n")
    # git's trailer block: the last paragraph, when every line of it is `Token: value`
    paras = re.split(r"\n\s*\n", text.strip())
    if len(paras) > 1:
        ms = [_TRAILER_LINE.match(ln) for ln in paras[-1].splitlines() if ln.strip()]
        if ms and all(ms) and any(_TRAILER_TOKEN.match(m.group(1)) for m in ms if m):
            paras = paras[:-1]
    text = "\n\n".join(paras)
    text = _KNOWN_TRAILER.sub("", text)
    text = _CHERRY.sub("", text)
    text = _MERGE_PR.sub("", text)
    text = _MERGE_REQ.sub("", text)
    kept = []
    for ln in text.split("\n"):  # a line that was little more than a URL ("See <url>", "Link: <url>") goes
        bare = _URL.sub("", ln)
        if bare != ln and len(re.findall(r"\w+", bare)) <= 2:
            continue
        kept.append(bare)
    text = "\n".join(kept)
    text = _CLOSES.sub("", text)
    text = _PAREN_REF.sub("", text)
    text = _BARE_REF.sub("", text)
    lines = []
    for ln in text.splitlines():  # tidy what the removals left: " , ." runs, leading punctuation
        ln = re.sub(r"[ \t]+", " ", ln)
        ln = re.sub(r"\s+([,.;:!?])", r"\1", ln)
        ln = re.sub(r"[,;:]+([.!?])", r"\1", ln)
        ln = re.sub(r"([,;:])[,;:]+", r"\1", ln)
        ln = re.sub(r"^[\s,.;:]+", "", ln).strip()
        lines.append(ln if re.search(r"\w", ln) else "")
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text


@dataclass
class Query:
    sha: str
    text: str
    gold: set[str]


@dataclass
class HeldOut:
    cut: str
    queries: list[Query]                                  # oldest first
    commits: int                                          # held-out commits looked at
    dropped_no_gold: list[str] = field(default_factory=list)   # shas: only created files / none at the cut
    dropped_empty: list[str] = field(default_factory=list)     # shas: nothing left of the message


def held_out_full(repo: Path, n: int) -> HeldOut:
    """``held_out`` with the count of dropped commits. If the oldest of the N commits is the root
    (the history is shorter than N+1), it is left out: the cut must be a commit."""
    if n < 1:
        raise ValueError("holdout must be ≥ 1")
    out = _git(repo, "log", "--no-show-signature", "--first-parent", "--no-merges", f"-n{n}", "-M",
               "--name-status", "-z", _LOG_FORMAT, "HEAD")
    commits = _parse_log(out)[::-1]  # oldest first
    while commits and not commits[0].parents:
        commits.pop(0)
    if not commits:
        raise ValueError(f"{repo}: no non-merge commit with a parent to hold out")
    cut = commits[0].parents[0]
    at_cut = set(files_at(repo, cut))
    alias: dict[str, str] = {}  # path after the cut → its path at the cut (renames inside the window)
    res = HeldOut(cut, [], len(commits))
    for c in commits:
        gold: set[str] = set()
        for ch in c.changes:
            st = ch[0]
            if st in "MDT":  # modified, deleted, type changed
                p = alias.get(ch[1], ch[1])
                if p in at_cut:
                    gold.add(p)
                if st == "D":
                    alias.pop(ch[1], None)
            elif st == "R":
                old, new = ch[1], ch[2]
                p = alias.pop(old, old)
                if p in at_cut:
                    gold.add(p)
                alias[new] = p
            # A (added) and C (copied: the source is not changed) give no gold
        text = clean_message(c.message)
        if not gold:
            res.dropped_no_gold.append(c.sha)
        elif not text:
            res.dropped_empty.append(c.sha)
        else:
            res.queries.append(Query(c.sha, text, gold))
    return res


def held_out(repo: Path, n: int) -> tuple[str, list[Query]]:
    """(cut sha, queries oldest first) for the last ``n`` non-merge commits on HEAD's first-parent line.

    The cut is the parent of the oldest of them; a query's gold is the set of files the commit
    modified, deleted or renamed away from that exist at the cut (a file renamed after the cut and
    modified later under its new name counts under its name at the cut). Commits with no gold file
    (they only add files) or with nothing left of their message are dropped: see ``held_out_full``."""
    h = held_out_full(repo, n)
    return h.cut, h.queries


def tune_split(queries: Sequence[Query], frac: float = 0.5) -> tuple[list[Query], list[Query]]:
    """(early, late): the first ``frac`` of the (oldest-first) queries and the rest — tune on early,
    score on late, to check that a tuning generalises forward in time."""
    cut = int(round(len(queries) * frac))
    return list(queries[:cut]), list(queries[cut:])


# --------------------------------------------------------------------------- worktree


@contextmanager
def worktree_at(repo: Path, sha: str) -> Iterator[Path]:
    """A detached worktree of ``repo`` at ``sha`` in a temporary directory; always removed (and
    pruned from the repository's worktree list), even when the body raises. Hooks are disabled for
    the checkout so the repository's own hooks (lmm's among them) do not fire."""
    tmp = Path(tempfile.mkdtemp(prefix="lmm-bench-"))
    wt = tmp / "tree"
    try:
        _git(repo, "-c", f"core.hooksPath={os.devnull}", "worktree", "add", "--detach", "--quiet",
             str(wt), sha)
        yield wt
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", "--force", str(wt)],
                       capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


@dataclass
class Snapshot:
    repo: Path
    cut: str
    root: Path                       # the worktree at the cut
    files: list[str]                 # blob paths at the cut
    history: list[HistoryCommit]     # commits reachable from the cut, oldest first
    held: HeldOut

    @property
    def queries(self) -> list[Query]:
        return self.held.queries


@contextmanager
def snapshot(repo: Path, holdout: int) -> Iterator[Snapshot]:
    """Everything a system may see, at the cut ``holdout`` commits back; the worktree lives as long
    as the ``with`` block (build once, evaluate as many settings as you like inside it)."""
    repo = Path(repo).resolve()
    held = held_out_full(repo, holdout)
    files = files_at(repo, held.cut)
    history = history_before(repo, held.cut)
    with worktree_at(repo, held.cut) as root:
        yield Snapshot(repo, held.cut, root, files, history, held)


# --------------------------------------------------------------------------- metrics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Row:
    name: str
    n: int
    hit1: float
    hit5: float
    hit10: float
    recall: float                     # Recall@k
    mrr: float                        # over the top ``depth`` returned
    p50_ms: float
    p95_ms: float
    build_s: float = 0.0
    k: int = 10
    first_rank: list[int] = field(default_factory=list)   # per query: rank of the first gold file, 0 = none
    error: str | None = None


def evaluate(name: str, rank: Callable[[str], list[str]], queries: Sequence[Query], k: int = 10,
             depth: int = 100, build_s: float = 0.0) -> Row:
    """Score ``rank`` (query text → paths, best first) on ``queries``.

    Hit@j: fraction of queries with at least one gold file in the top j (j = 1, 5, 10);
    Recall@k: mean |gold ∩ top k| / |gold|; MRR: mean 1/rank of the first gold file among the first
    ``depth`` results (0 when none); latency of each ``rank`` call, p50/p95 in ms. Repeated paths in a
    ranking count once, at their first position."""
    hits = {1: 0, 5: 0, 10: 0}
    recall = 0.0
    rr = 0.0
    lat: list[float] = []
    firsts: list[int] = []
    for q in queries:
        t0 = time.perf_counter()
        ranked = rank(q.text)
        lat.append((time.perf_counter() - t0) * 1000.0)
        seen: dict[str, None] = {}
        for p in ranked:
            if p not in seen:
                seen[p] = None
                if len(seen) >= depth:
                    break
        ranked = list(seen)
        first = next((i + 1 for i, p in enumerate(ranked) if p in q.gold), 0)
        firsts.append(first)
        for j in hits:
            if first and first <= j:
                hits[j] += 1
        if q.gold:
            recall += len(q.gold.intersection(ranked[:k])) / len(q.gold)
        rr += 1.0 / first if first else 0.0
    n = len(queries)
    d = n or 1
    return Row(name, n, hits[1] / d, hits[5] / d, hits[10] / d, recall / d, rr / d,
               percentile(lat, 50), percentile(lat, 95), build_s, k, firsts)


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
                row = evaluate(name, lambda text, s=system: s.rank(text, depth), held.queries, k, depth,
                               build_s)
            except Exception as e:  # noqa: BLE001
                if not keep_going:
                    raise
                row = Row(name, 0, 0, 0, 0, 0, 0, 0, 0, 0, k, [], f"{type(e).__name__}: {e}")
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
