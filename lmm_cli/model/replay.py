"""Replay: the repository's own history, cut in two, as questions with known answers.

Cut the history N non-merge commits before HEAD (on HEAD's first-parent line); everything a system
may learn from is what existed at the cut — the history reachable from it and the working tree
checked out at it in a temporary worktree — and each held-out commit is a question: its message
(trailers, PR/issue numbers and URLs stripped) asks, the files it modified, deleted or renamed away
from that existed at the cut answer — except the files nearly every commit before the cut touched
(changelogs, lockfiles: ``churn``), which say nothing about where the work was; a commit that
touched only those is no question. ``ReplayMemory`` is lmm's own memory built at the cut.

Learning fits on these questions (``fusion``), and ``bench`` scores lmm against its baselines on
them. Metrics: Hit@1/5/10 (any gold file in the top k), Recall@10, MRR (1/rank of the first gold
file within the top ``depth``=100), and p50/p95 latency of each ranking.

    with snapshot(repo, 300) as snap:              # build once, evaluate many settings
        memory = ReplayMemory(); memory.build(snap.root, snap.files, snap.history)
        early, late = tune_split(snap.queries)     # fit on early, score on late
        evaluate("lmm", memory.ranker(weights), late)
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..repo import run_git
from ..store.lock import process_alive, process_start

__all__ = [
    "HistoryCommit", "Query", "HeldOut", "Row", "Snapshot", "ReplayMemory", "held_out", "held_out_full", "chronic_before",
    "history_before", "files_at", "clean_message", "worktree_at", "snapshot", "evaluate", "tune_split",
    "percentile", "prune_leftovers", "TEMP_PREFIX",
]


@dataclass
class HistoryCommit:
    """One commit before the cut, oldest first (as ``git log --reverse`` lists the cut's ancestry).

    ``files`` are the paths the commit touched as they were *at that commit* (for a rename, the new
    path); ``renames`` lists the commit's renames as ``(old, new)`` so that a system can follow a
    file back through its names. Merge commits appear with empty ``files``."""

    sha: str
    message: str
    files: list[str]
    renames: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- git


def _git(repo: Path, *args: str) -> str:
    return run_git(repo, *args).decode("utf-8", "surrogateescape")


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
    # Files nearly every commit before the cut touched (changelogs, lockfiles: ``churn``), left out
    # of every gold set, and the shas of the commits that touched nothing else.
    chronic: list[str] = field(default_factory=list)
    dropped_chronic: list[str] = field(default_factory=list)


def chronic_before(repo: Path, cut: str) -> list[str]:
    """The files nearly every commit up to ``cut`` touched (``churn.chronic_in`` over the latest
    ``churn.WINDOW`` non-merge commits reachable from it): read from history before the cut only."""
    from .churn import WINDOW, always_touched_in

    out = _git(repo, "log", "--no-show-signature", "--no-merges", f"-n{WINDOW}", "-M", "--name-status", "-z",
               _LOG_FORMAT, cut)
    commits = _parse_log(out)[::-1]  # oldest first
    sets = [{ch[-1] for ch in c.changes} for c in commits]
    renames = [(ch[1], ch[2]) for c in commits for ch in c.changes if ch[0] == "R"]
    return sorted(always_touched_in(sets, renames))


def held_out_full(repo: Path, n: int, *, leave_out_chronic: bool = True) -> HeldOut:
    """``held_out`` with the count of dropped commits. If the oldest of the N commits is the root
    (the history is shorter than N+1), it is left out: the cut must be a commit. With
    ``leave_out_chronic``, the files nearly every commit before the cut touched are no answer
    (``chronic_before``); a commit that touched nothing else is dropped."""
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
    if leave_out_chronic:
        res.chronic = [p for p in chronic_before(repo, cut) if p in at_cut]
    chronic = set(res.chronic)
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
        if gold and gold <= chronic:
            res.dropped_chronic.append(c.sha)
            continue
        gold -= chronic
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
    modified later under its new name counts under its name at the cut), less the files nearly every
    commit before the cut touched. Commits with no gold file (they only add files, or only touch
    those) or with nothing left of their message are dropped: see ``held_out_full``."""
    h = held_out_full(repo, n)
    return h.cut, h.queries


def tune_split(queries: Sequence[Query], frac: float = 0.5) -> tuple[list[Query], list[Query]]:
    """(early, late): the first ``frac`` of the (oldest-first) queries and the rest — tune on early,
    score on late, to check that a tuning generalises forward in time."""
    cut = int(round(len(queries) * frac))
    return list(queries[:cut]), list(queries[cut:])


# --------------------------------------------------------------------------- temporary folders

# Replay's temporary worktree (lmm-bench-XXXX/tree) and memory (lmm-bench-store-XXXX/store). Each
# holds an ``owner`` file (pid and start time of the process that made it): a folder whose owner is
# gone was left by a run killed outright (kill -9), and the next run removes it.
TEMP_PREFIX = "lmm-bench-"
_OWNER = "owner"
_LEGACY_AGE = 86400.0  # folders from before owner files: removed once a day old


_STAGING = TEMP_PREFIX + "new-"  # made, owner not written yet: renamed to its real name once it is


def _make_temp(prefix: str) -> Path:
    """A temporary folder that names its owner from the moment it has its real name (a run killed
    in between leaves a staging folder, pruned after a minute)."""
    staging = Path(tempfile.mkdtemp(prefix=_STAGING))
    (staging / _OWNER).write_text(f"{os.getpid()} {process_start(os.getpid()) or ''}\n", encoding="utf-8")
    final = staging.with_name(prefix + staging.name[len(_STAGING):])
    os.rename(staging, final)
    return final


def _abandoned(folder: Path) -> bool:
    try:
        owner = (folder / _OWNER).read_text(encoding="utf-8").split()
    except FileNotFoundError:
        try:
            age = time.time() - folder.stat().st_mtime
        except OSError:
            return False
        if folder.name.startswith(_STAGING):
            return age > 60
        # Before owner files: only the shapes replay makes, once they are old.
        shaped = (folder / "tree" / ".git").is_file() or (folder / "store").is_dir()
        return shaped and age > _LEGACY_AGE
    except OSError:
        return False
    if not owner or not owner[0].isdigit():
        return False
    return not process_alive(int(owner[0]), owner[1] if len(owner) > 1 else None)


def prune_leftovers(repo: Path | None = None) -> list[str]:
    """Remove replay's temporary folders left by runs that were killed (their owner is gone), and
    the worktrees they registered (`git worktree prune`, in ``repo`` and in the repository each
    leftover worktree belonged to). Returns the folders removed."""
    removed: list[str] = []
    repos: set[Path] = set()
    base = Path(tempfile.gettempdir())
    try:
        entries = [e for e in os.scandir(base) if e.name.startswith(TEMP_PREFIX) and e.is_dir(follow_symlinks=False)]
    except OSError:
        entries = []
    for e in entries:
        folder = Path(e.path)
        if not _abandoned(folder):
            continue
        try:  # "gitdir: <common dir>/worktrees/<name>": the repository to prune afterwards
            link = (folder / "tree" / ".git").read_text(encoding="utf-8").split(":", 1)[1].strip()
            repos.add(Path(link).parent.parent)
        except (OSError, IndexError):
            pass
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(str(folder))
    if repo is not None:
        run_git(repo, "worktree", "prune", check=False)
    for common in repos:
        if common.is_dir():
            run_git(common, "worktree", "prune", check=False)
    return removed


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived: unwinds like Ctrl-C (and is reported like it), so every
    ``finally`` removes what it made."""


@contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """While the body runs, SIGTERM and SIGHUP raise ``Terminated`` instead of killing the process on
    the spot (SIGINT already raises KeyboardInterrupt), so the temporary worktree and memory are
    removed. Only the main thread can take signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise Terminated(signum)

    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                old[sig] = signal.signal(sig, handler)
        except (OSError, ValueError):
            pass
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


# --------------------------------------------------------------------------- worktree


@contextmanager
def worktree_at(repo: Path, sha: str) -> Iterator[Path]:
    """A detached worktree of ``repo`` at ``sha`` in a temporary directory; always removed (and
    pruned from the repository's worktree list), even when the body raises or the process is
    terminated (SIGTERM, SIGINT, SIGHUP). Hooks are disabled for the checkout so the repository's
    own hooks (lmm's among them) do not fire."""
    tmp = _make_temp(TEMP_PREFIX)
    wt = tmp / "tree"
    try:
        _git(repo, "-c", f"core.hooksPath={os.devnull}", "worktree", "add", "--detach", "--quiet",
             str(wt), sha)
        yield wt
    finally:
        run_git(repo, "worktree", "remove", "--force", "--force", str(wt), check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        run_git(repo, "worktree", "prune", check=False)


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
    prune_leftovers(repo)
    held = held_out_full(repo, holdout)
    files = files_at(repo, held.cut)
    history = history_before(repo, held.cut)
    with _terminate_cleanly(), worktree_at(repo, held.cut) as root:
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
    recalls: list[float] = field(default_factory=list)    # per query: Recall@k
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
    recalls: list[float] = []
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
        got = len(q.gold.intersection(ranked[:k])) / len(q.gold) if q.gold else 0.0
        recalls.append(got)
        recall += got
        rr += 1.0 / first if first else 0.0
    n = len(queries)
    d = n or 1
    return Row(name, n, hits[1] / d, hits[5] / d, hits[10] / d, recall / d, rr / d,
               percentile(lat, 50), percentile(lat, 95), build_s, k, firsts, recalls)


# --------------------------------------------------------------------------- lmm's memory at the cut


VECTOR_CACHE_ENV = "LMM_BENCH_VECTORS"
"""A SQLite file of (model, text hash) → vector that replay stores read from and add to: a benchmark
run again on the same repository embeds only text it has not seen (the vectors of a text under a
model never change, so a cached vector is the one the store would compute)."""


def _cache_db(path: Path) -> Any:
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(path), timeout=60)
    con.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, hash TEXT NOT NULL, dim INTEGER NOT NULL,"
                " vec BLOB NOT NULL, PRIMARY KEY (model, hash))")
    return con


def _vectors_from_cache(db: Any, path: Path) -> None:
    from ..store.db import transaction

    con = _cache_db(path)
    try:
        rows = con.execute("SELECT model, hash, dim, vec FROM vectors").fetchall()
    finally:
        con.close()
    with transaction(db):
        db.executemany("INSERT OR IGNORE INTO vectors (model, hash, dim, vec) VALUES (?, ?, ?, ?)", rows)


def _vectors_to_cache(db: Any, path: Path) -> None:
    con = _cache_db(path)
    try:
        with con:
            con.executemany("INSERT OR IGNORE INTO vectors (model, hash, dim, vec) VALUES (?, ?, ?, ?)",
                            db.execute("SELECT model, hash, dim, vec FROM vectors"))
    finally:
        con.close()


class ReplayMemory:
    """lmm's own memory of a repository as it was at a cut: a private store built from the worktree
    checked out there and the history up to it, ranked by the same ``Recaller`` a user's recall
    uses. Channel scores are cached per query, so trying fusion weights costs no index work."""

    name = "lmm"

    def __init__(self, *, embed: bool = True, weights: dict[str, float] | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> None:
        from ..address.recall import DEFAULT_WEIGHTS

        self.embed = embed
        self.weights = dict(weights or DEFAULT_WEIGHTS)
        self.progress = progress
        self.tmp: Path | None = None
        self.recaller: Any = None
        self.ws: Any = None
        self.cache: dict[str, dict[str, dict[str, float]]] = {}
        self._file_stats: Any = None
        self.build_seconds = 0.0

    def build(self, root: Path, files: list[str], history: Sequence[Any]) -> None:
        from ..address.build import refresh
        from ..address.dense import stored_encoder
        from ..address.recall import Recaller
        from ..capture.ingest import capture_history
        from ..repo import discover
        from ..workspace import Workspace

        t0 = time.monotonic()
        self.tmp = _make_temp(TEMP_PREFIX + "store-")
        ws = Workspace(repo=discover(root), dir=self.tmp / "store")
        ws.dir.mkdir(parents=True)
        # History up to the cut only: the other local branches may hold later commits.
        (ws.dir / "config.toml").write_text('[capture]\nbranches = "head"\n')
        db = ws.create()
        capture_history(ws, db, capture="bench")
        cache = os.environ.get(VECTOR_CACHE_ENV) if self.embed else None
        if cache:
            _vectors_from_cache(db, Path(cache))
        refresh(ws, db, embed=self.embed, progress=self.progress)
        if cache:
            _vectors_to_cache(db, Path(cache))
        encoder = stored_encoder(db) if self.embed else None
        self.ws = ws  # a real store: a training round can run on it as on a user's
        self.recaller = Recaller(db, root, encoder=encoder, weights=self.weights, ranker=None)
        self.build_seconds = time.monotonic() - t0

    def channels(self, query: str) -> dict[str, dict[str, float]]:
        if query not in self.cache:
            assert self.recaller is not None
            self.cache[query] = self.recaller.channel_scores(query)[0]
        return self.cache[query]

    def rank(self, query: str, k: int = 10, weights: dict[str, float] | None = None,
             learned: Any = None) -> list[str]:
        """The files for ``query``, best first: the fusion under ``weights`` (the memory's own when
        None) and, with ``learned`` (a ``rerank.LearnedRanker``), its top re-ordered by the trees as
        a user's recall does with an active ranker."""
        ranked, ch = self.fused(query, weights)
        if learned is not None:
            ranked = learned.rerank(ranked, ch, self.file_stats())
        return [p for p, _ in ranked][:k]

    def fused(self, query: str, weights: dict[str, float] | None = None,
              ) -> tuple[list[tuple[str, float]], dict[str, dict[str, float]]]:
        """(the linear fusion's files for ``query`` with their scores, best first; the channel
        scores it fused), under ``weights`` (the memory's own when None) with the adapter channel
        weighed by the query encoder's scale as in a user's recall (an adapter's fitted one)."""
        from ..address.recall import Recaller, adapter_weights

        assert self.recaller is not None
        w = adapter_weights(self.weights if weights is None else weights, getattr(self.recaller.encoder, "dense_scale", 1.0))
        ch = self.channels(query)
        return [(p, s) for p, s in Recaller.fuse(ch, w) if p in self.recaller.files], ch

    def file_stats(self) -> Any:
        """The store's ``rerank.FileStats`` at the cut (a learned ranker's features), computed once."""
        if self._file_stats is None:
            from ..address.rerank import file_stats

            assert self.recaller is not None
            self._file_stats = file_stats(self.recaller.db, self.recaller.current_path)
        return self._file_stats

    def ranker(self, weights: dict[str, float], depth: int = 100, learned: Any = None) -> Callable[[str], list[str]]:
        """Query → ranked paths under ``weights`` (from the cached channel scores), re-ordered by
        ``learned`` where given: for scoring fits."""
        return lambda query: self.rank(query, depth, weights, learned)

    def close(self) -> None:
        if self.recaller is not None:
            self.recaller.close()
            self.recaller.db.close()
            self.recaller = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
