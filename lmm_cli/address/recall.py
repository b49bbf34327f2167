"""Recall: rank the files, commits, notes and session turns that matter for a task, each with the reasons why.

Channels, each a score per file (query-dependent ones first):

- ``lexical``   BM25 over code chunks (FTS5, code-aware terms): the words of the task in the code.
- ``names``     BM25 over each file's path and the names it defines: which file *is* the thing.
- ``history``   BM25 over commits, notes and assistant session turns: what changed (or what an
                assistant edited and read) when similar work was done, mapped through renames to
                the files that exist now.
- ``dense``     sentence-embedding similarity of the task to code chunks, commit messages, notes
                and session turns, under the base model.
- ``adapted``   where this repository's adapter is active (``model.adapters``): the similarity of
                the adapted task vector to the code chunks, weighed by the dense weight times the
                version's fitted multiple (``adapter_weights``).
- ``mentions``  files the task names outright: a file name or path (``plan.py``), a code name the
                file defines (``retry_profile``), a commit id or a quoted commit subject
                (``Revert "…"``) and the files that commit touched.
- ``intent``    a task about tests lifts the test files of the best candidates so far; a task about
                documentation lifts the documentation among them.
- ``cochange``  files that change together with the best candidates so far.
- ``structure`` centrality in the reference graph (PageRank over who-uses-whom).
- ``recency``   the working set: uncommitted changes, files edited in the last half hour (``lmm watch``,
                the Cursor hook; decaying) and the latest commits.
- ``fixes``     fix and revert density: where things tend to break.

``Recaller(as_of=ts)`` answers as the memory stood at ``ts``: history, dense episodes, named commits,
co-change and the priors see only episodes from before it (the code index is today's). Training
rounds judge a candidate adapter that way, on commits the recall had not yet seen.

A long task (a pasted issue of 100 KB) is read up to bounds (``MAX_TERMS``, ``MENTION_CHARS``), so
recall stays as fast as for a short one. The answer names no commit git no longer has (reset away
and pruned: the store keeps it, no hook reports it): one ``git cat-file --batch-check`` for all the
commits read (``missing_commits``). A file's symbols are given with their definition lines.

Each channel is normalised to [0, 1] per query and fused by a weighted sum. The weights come from
the store (``lmm bench localize --tune`` fits them on the repository's own history) and fall back
to ``DEFAULT_WEIGHTS``. Where the store holds a learned ranker that beat this fusion on later
history (``model.ranker`` fits it, ``rerank`` applies it), it re-orders the fusion's top files;
each file's reasons still name its channels. A recall with no lexical, history or close dense
evidence is "no memory".

Left out here: training the adapter (``model``) and consolidated facts.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..repo import GitError, object_checker, run_git
from ..store.activity import recent as recent_activity
from ..text import query_phrases, query_terms
from .intent import (
    identifier_mentions,
    is_doc,
    is_test,
    path_mentions,
    quoted_subjects,
    sha_mentions,
    subject_key,
    wants_docs,
    wants_tests,
)
from .languages import language_of

__all__ = ["CHANNELS", "DEFAULT_WEIGHTS", "FileHit", "CommitHit", "NoteHit", "SessionHit", "Recall", "Recaller",
           "load_weights", "save_weights", "fts_query", "missing_commits", "MAX_TERMS", "adapter_weights", "ADAPTED"]

CHANNELS = ("lexical", "names", "history", "dense", "mentions", "intent", "cochange", "structure", "recency",
            "fixes")
QUERY_CHANNELS = ("lexical", "names", "history", "dense", "mentions")
# The repository adapter's channel (``model.adapters``): code chunks met by the task's adapted vector.
# Where a version is active it ranks beside the dense channel, which stays on the base model's
# vectors; its weight is the dense channel's times the version's fitted multiple (``adapter_weights``).
ADAPTED = "adapted"
FUSED = (*CHANNELS, ADAPTED)  # what the fusion sums
FOUND_BY = (*QUERY_CHANNELS, "intent", "cochange", ADAPTED)  # channels that can bring a file into the answer
DEFAULT_WEIGHTS: dict[str, float] = {
    "lexical": 1.0, "names": 1.0, "history": 0.5, "dense": 0.7, "mentions": 2.0, "intent": 2.0, "cochange": 0.1,
    "structure": 0.25, "recency": 0.1, "fixes": 0.05,
}
MAX_SESSIONS = 3  # session turns an answer quotes at most
SESSION_ROWS = 100  # session turns the history channel reads at most, besides its 200 commits and notes
DENSE_EPISODES_KEPT = 20_000  # episodes (row and files) a Recaller keeps between queries at most
NAMED = 1e6  # the evidence score of a commit the task names: listed before any matched one
# Why a file the adapter's channel found is there. The brief prefers a reason that names evidence
# (the task's words, matching commits) and gives this one only where nothing else found the file.
ADAPTER_REASON = "this repository's adapter leads the task here"
DENSE_RELEVANT = 0.35  # a best cosine below this, with no lexical or history match, is "no memory"
_FIX = re.compile(r"\b(fix(e[sd])?|bug|hotfix|regression|crash|broken)\b", re.I)
_REVERT = re.compile(r"^revert\b", re.I)
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# A task is read up to these bounds (a pasted issue can be 100 KB): its first distinct terms, and the
# names, paths, commit ids and quoted subjects in its first MENTION_CHARS characters. No commit
# message in six real histories has more than 360 terms; nearly all have under 60.
MAX_TERMS = 128
MENTION_CHARS = 8000
MAX_MENTIONS = 32
# The episodes recall searches besides code: git's commits, the user's notes, assistant session turns.
HISTORY_KINDS = "('commit', 'note', 'session')"
# How the lines above a definition that its chunk takes along begin: doc comments and attributes.
_LEADING_TEXT = ("//", "/*", "*", "#[", "#!", "@", "[")


def missing_commits(root: Path, shas: Iterable[str]) -> set[str]:
    """The commits among ``shas`` (full object ids) that git no longer has: reset away and pruned,
    or never fetched here. One ``git cat-file --batch-check`` for all of them (the long-lived one a
    warm caller keeps, where there is one). When git cannot answer, every one counts as missing: a
    citation that cannot be checked is not made."""
    want = list(dict.fromkeys(shas))
    ask = [s for s in want if _OBJECT_ID.fullmatch(s)]
    missing = set(want) - set(ask)
    if not ask:
        return missing
    checker = object_checker(root)
    lines = checker.lines(ask) if checker is not None else None
    if lines is None:
        try:
            out = run_git(root, "cat-file", "--batch-check", input=("\n".join(ask) + "\n").encode())
        except (GitError, OSError):
            return set(want)
        lines = out.decode("utf-8", "replace").splitlines()
    if len(lines) != len(ask):
        return set(want)
    for sha, line in zip(ask, lines):
        parts = line.split()
        if len(parts) < 2 or parts[0] != sha or parts[1] != "commit":
            missing.add(sha)
    return missing


@dataclass
class FileHit:
    path: str
    score: float
    why: list[str]
    symbols: list[dict[str, Any]] = field(default_factory=list)  # {name, kind, line}
    channels: dict[str, float] = field(default_factory=dict)


@dataclass
class CommitHit:
    sha: str
    date: str
    subject: str
    why: str
    score: float
    files: list[str] = field(default_factory=list)
    body: str = ""


@dataclass
class NoteHit:
    id: int
    date: str
    text: str
    why: str
    score: float


@dataclass
class SessionHit:
    """A turn of an assistant session: what was asked, what the assistant said last."""
    id: int
    date: str
    turn: str  # the turn's id in its session, as `lmm log` shows it
    tool: str
    prompt: str
    answer: str
    why: str
    score: float
    files: list[str] = field(default_factory=list)


@dataclass
class Recall:
    query: str
    files: list[FileHit]
    commits: list[CommitHit]
    notes: list[NoteHit]
    relevant: bool
    seconds: float = 0.0
    sessions: list[SessionHit] = field(default_factory=list)
    # Commits asked about in git while answering → whether git still has them: the brief built from
    # this answer reuses it instead of asking git again.
    in_git: dict[str, bool] = field(default_factory=dict)
    ranked_by: str = "fusion"  # how the files were ordered: the linear fusion or the learned ranker (``rerank``)

    def as_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "files": [{"path": f.path, "score": round(f.score, 4), "why": f.why, "symbols": f.symbols,
                       "channels": {k: round(v, 4) for k, v in f.channels.items()}} for f in self.files],
            "commits": [{"sha": c.sha, "date": c.date, "subject": c.subject, "why": c.why,
                         "score": round(c.score, 4)} for c in self.commits],
            "notes": [asdict(n) for n in self.notes],
            "sessions": [asdict(s) for s in self.sessions],
            "ranked_by": self.ranked_by,
        }


def fts_query(terms: Sequence[str], phrases: Sequence[str] = ()) -> str:
    """An FTS5 OR-query of quoted terms and phrases (quoting keeps user text from being read as
    FTS syntax). A phrase is one more OR-ed item: BM25 gives it its own, higher IDF, so text with
    the words side by side outranks text with the same words apart."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in [*terms, *phrases])


def load_weights(db: sqlite3.Connection) -> dict[str, float]:
    row = db.execute("SELECT value FROM state WHERE key = 'fusion_weights'").fetchone()
    weights = dict(DEFAULT_WEIGHTS)
    if row:
        try:
            weights.update({k: float(v) for k, v in json.loads(row[0]).items() if k in CHANNELS})
        except (ValueError, TypeError, AttributeError):
            pass
    return weights


def save_weights(db: sqlite3.Connection, weights: dict[str, float]) -> None:
    db.execute(
        "INSERT INTO state (key, value) VALUES ('fusion_weights', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (json.dumps({k: round(float(weights[k]), 4) for k in CHANNELS}),),
    )


def adapter_weights(weights: dict[str, float], scale: float) -> dict[str, float]:
    """``weights`` with the adapter channel's: the dense channel's times ``scale`` (an adapter
    version's round fits it, ``model.rounds``). Without an active adapter the channel is empty."""
    return {**weights, ADAPTED: weights.get("dense", 0.0) * scale}


STORE_RANKER: Any = object()  # Recaller(ranker=…): the store's active learned ranker, if any


def _store_file(db: sqlite3.Connection) -> Path | None:
    """``db``'s main database file, None for an in-memory one."""
    try:
        for _seq, name, file in db.execute("PRAGMA database_list"):
            if name == "main" and file:
                return Path(file)
    except sqlite3.Error:
        pass
    return None


def _store_folder(db: sqlite3.Connection) -> Path | None:
    """The folder of ``db``'s main database file (the store folder), None for an in-memory one."""
    file = _store_file(db)
    return file.parent if file is not None else None


def _meanwhile(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    """Start ``fn(*args)`` on a thread of its own; the callable returned waits for its result (or
    raises what it raised)."""
    import threading

    out: list[Any] = []

    def work() -> None:
        try:
            out.append((True, fn(*args)))
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            out.append((False, e))

    t = threading.Thread(target=work, name="lmm-recall", daemon=True)
    t.start()

    def wait() -> Any:
        t.join()
        ok, value = out[0]
        if not ok:
            raise value
        return value

    return wait


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts))


def _normalise(scores: dict[str, float]) -> dict[str, float]:
    top = max(scores.values(), default=0.0)
    return {k: v / top for k, v in scores.items()} if top > 0 else {}


@dataclass
class _Evidence:
    """What each channel saw, kept to explain the ranking."""
    lexical_terms: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # path → (score, symbol, chunk start line, chunk end line, channel)
    chunks: dict[str, list[tuple[float, str | None, int, int, str]]] = field(default_factory=lambda: defaultdict(list))
    commits_for: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    episodes: dict[int, tuple[float, sqlite3.Row]] = field(default_factory=dict)
    dense_for: dict[str, tuple[float, str | None, int, int]] = field(default_factory=dict)
    adapted_for: dict[str, tuple[float, str | None, int, int]] = field(default_factory=dict)
    cochange_with: dict[str, tuple[str, int]] = field(default_factory=dict)
    mentioned: dict[str, str] = field(default_factory=dict)      # path → how the task names it
    intent_from: dict[str, tuple[str, str]] = field(default_factory=dict)  # path → (kind, candidate)
    dense_best: float = 0.0
    episode_cos: dict[int, float] = field(default_factory=dict)  # episode id → its dense similarity
    gone: set[str] = field(default_factory=set)  # commits in the store that git no longer has


class Recaller:
    """Answers recalls over one store. Keep one around to answer many (indexes stay loaded)."""

    def __init__(self, db: sqlite3.Connection, root: Path, *, encoder: Any = None,
                 weights: dict[str, float] | None = None, ranker: Any = STORE_RANKER,
                 as_of: float | None = None) -> None:
        self.db = db
        self.as_of = as_of  # None: now; else only episodes from before this time count
        self.root = root
        self.encoder = encoder  # None: no dense channel (the --fast path)
        self.weights = weights or load_weights(db)
        # The learned ranker (``rerank``): STORE_RANKER reads the store's active one on first use;
        # None fuses linearly.
        self._ranker = ranker
        self._stats: Any = None
        self._files: set[str] | None = None
        self._has_sessions: bool | None = None
        self._renames: dict[str, str] | None = None
        self._current: dict[str, str | None] = {}  # current_path's answers
        self._side: sqlite3.Connection | bool | None = None  # _side_db's connection; False: none
        self._dense_episodes: dict[int, tuple[Any, list[str]]] = {}  # id → (row, files), as read
        self._dense: Any = None
        self._dense_refs: list[tuple[str, str | None, int, int] | int] = []
        self._dense_chunks = 0
        self._priors: dict[str, dict[str, float]] | None = None
        self._by_name: dict[str, list[str]] | None = None
        self._tests_by_key: dict[str, list[str]] | None = None
        self._defs: dict[str, dict[str, list[tuple[int, int]]]] = {}  # path → name → [(line, end)]
        # What is the same for every query while the store is (a file's co-changes, its fixes):
        # a Recaller lives no longer than the store it read stays unchanged.
        self.memo: dict[tuple[str, str], Any] = {}

    # -- shared lookups ---------------------------------------------------------------------
    def _before(self, alias: str = "e") -> str:
        """The SQL condition (with a leading AND) that keeps episodes from before ``as_of``."""
        if self.as_of is None:
            return ""
        return f" AND {alias + '.' if alias else ''}ts < {float(self.as_of)!r}"

    @property
    def files(self) -> set[str]:
        if self._files is None:
            self._files = {r[0] for r in self.db.execute("SELECT path FROM code_files")}
        return self._files

    @property
    def has_sessions(self) -> bool:
        """Whether the store holds assistant session turns (a store built from git alone does not)."""
        if self._has_sessions is None:
            self._has_sessions = self.db.execute(
                "SELECT 1 FROM episodes WHERE kind = 'session' AND valid_to IS NULL LIMIT 1").fetchone() is not None
        return self._has_sessions

    def _rename_map(self) -> dict[str, str]:
        """old path → new path for every rename in the (current) history, latest last."""
        if self._renames is None:
            self._renames = {}
            for old, new in self.db.execute(
                "SELECT f.old_path, f.path FROM episode_files f JOIN episodes e ON e.id = f.episode_id"
                " WHERE f.status = 'R' AND e.valid_to IS NULL ORDER BY e.ts"
            ):
                self._renames[old] = new
        return self._renames

    def current_path(self, path: str) -> str | None:
        """The path a file has now, following renames recorded in history; None if it is gone."""
        try:
            return self._current[path]  # asked for tens of thousands of times a recall
        except KeyError:
            pass
        asked, now = path, None
        if path in self.files:
            now = path
        else:
            renames = self._rename_map()
            seen = set()
            while path in renames and path not in seen:
                seen.add(path)
                path = renames[path]
                if path in self.files:
                    now = path
                    break
        self._current[asked] = now
        return now

    def definition_line(self, path: str, symbol: str, start: int, end: int) -> int:
        """The line to cite for ``symbol`` found in the chunk ``start``..``end`` of ``path``: the line
        of its definition (``def``, ``fn``, ``class`` …), not the chunk's first line, which may be a
        decorator or doc comment above it, or a line inside it when a long definition is cut into
        pieces. Text without code symbols (a markdown section cut in pieces) gets its first piece's
        line: where the heading is."""
        defs = self._defs.get(path)
        if defs is None:
            defs = self._defs[path] = defaultdict(list)
            for name, line, last in self.db.execute(
                    "SELECT name, start_line, end_line FROM code_symbols WHERE path = ?", (path,)):
                defs[name].append((line, last))
        found = defs.get(symbol)
        if found:
            inside = [ln for ln, _ in found if start <= ln <= end]  # defined in the chunk: the first one
            if inside:
                return min(inside)
            around = [ln for ln, last in found if ln <= start <= last]  # a piece of it: the innermost
            if around:
                return max(around)
            # Outside every definition of that name: a piece of a long decorator list above one, or a
            # Rust impl block named after its type. The nearest definition, the one below on a tie.
            return min(found, key=lambda d: (d[0] - end, 0) if d[0] > end else (start - d[1], 1))[0]
        # No code symbol: walk back over the contiguous chunks of the same name (a markdown section
        # cut in pieces; a Rust impl block of a type defined elsewhere)…
        for s, e in self.db.execute(
                "SELECT start_line, end_line FROM code_chunks WHERE path = ? AND symbol = ? AND start_line < ?"
                " ORDER BY start_line DESC LIMIT 200", (path, symbol, start)):
            if e + 1 < start:
                break
            start = s
        if language_of(path) is None:
            return start
        # …and in code, past the doc comments and attributes the first piece starts with.
        row = self.db.execute("SELECT text FROM code_chunks WHERE path = ? AND symbol = ? AND start_line = ?",
                              (path, symbol, start)).fetchone()
        for i, text in enumerate(row[0].split("\n") if row else []):
            if text.strip() and not text.lstrip().startswith(_LEADING_TEXT):
                return start + i
        return start

    # -- channels ---------------------------------------------------------------------------
    def _lexical(self, terms: list[str], phrases: list[str], ev: _Evidence) -> dict[str, float]:
        if not terms:
            return {}
        rows = self.db.execute(
            "SELECT c.path, c.symbol, c.start_line, c.end_line, -bm25(code_fts, 3.0, 4.0, 1.0, 1.0) AS s"
            " FROM code_fts JOIN code_chunks c ON c.id = code_fts.rowid"
            " WHERE code_fts MATCH ? ORDER BY bm25(code_fts, 3.0, 4.0, 1.0, 1.0) LIMIT 400",
            (fts_query(terms, phrases),),
        ).fetchall()
        per_file: dict[str, list[float]] = defaultdict(list)
        for path, symbol, line, end, s in rows:
            per_file[path].append(s)
            ev.chunks[path].append((s, symbol, line, end, "lexical"))
        out = {}
        for path, ss in per_file.items():
            ss.sort(reverse=True)
            out[path] = ss[0] + 0.3 * sum(ss[1:4])
        return out

    def _names(self, terms: list[str], phrases: list[str], ev: _Evidence) -> dict[str, float]:
        if not terms:
            return {}
        rows = self.db.execute(
            "SELECT f.path, -bm25(file_fts, 2.0, 3.0, 1.5) AS s FROM file_fts"
            " JOIN code_files f ON f.rowid = file_fts.rowid"
            " WHERE file_fts MATCH ? ORDER BY bm25(file_fts, 2.0, 3.0, 1.5) LIMIT 200",
            (fts_query(terms, phrases),),
        ).fetchall()
        return {path: s for path, s in rows}

    def _history_rows(self, db: sqlite3.Connection, terms: list[str], phrases: list[str],
                      sessions: bool) -> tuple[list[sqlite3.Row], dict[int, list[str]]]:
        """The episodes the history channel ranks, and their files: by BM25, the best 200 commits
        and notes, and apart (so that many session turns never crowd commits out) the best session
        turns."""
        files: dict[int, list[str]] = defaultdict(list)
        if not terms:
            return [], files
        sql = ("SELECT e.id, e.kind, e.source, e.title, e.body, e.ts, -bm25(episodes_fts, 4.0, 1.5, 2.0, 2.0, 0.3, 1.0) AS s"
               " FROM episodes_fts JOIN episodes e ON e.id = episodes_fts.rowid"
               " WHERE episodes_fts MATCH ? AND e.valid_to IS NULL AND e.kind IN {}" + self._before() +
               " ORDER BY s DESC LIMIT ?")
        match = fts_query(terms, phrases)
        rows = db.execute(sql.format("('commit', 'note')"), (match, 200)).fetchall()
        if sessions:
            rows += db.execute(sql.format("('session')"), (match, SESSION_ROWS)).fetchall()
        if rows:
            ids = [r["id"] for r in rows]
            q = ",".join("?" * len(ids))
            for eid, path in db.execute(f"SELECT episode_id, path FROM episode_files WHERE episode_id IN ({q})", ids):
                files[eid].append(path)
        return rows, files

    def _side_db(self) -> sqlite3.Connection | None:
        """A second, read-only connection to the store: the history channel's queries run on it on
        another thread while this one encodes the query. None where there can be none: an
        in-memory store, or this connection in the middle of a write the other would not see."""
        if self.db.in_transaction or self._side is False:
            return None
        if self._side is None:
            self._side = False
            file = _store_file(self.db)
            if file is not None:
                from urllib.parse import quote

                try:
                    self._side = sqlite3.connect(f"file:{quote(str(file))}?mode=ro", uri=True,
                                                 check_same_thread=False)
                    self._side.row_factory = self.db.row_factory
                except sqlite3.Error:
                    pass
        return self._side if isinstance(self._side, sqlite3.Connection) else None

    def close(self) -> None:
        """Close the second connection, if one was opened (the caller's own stays open)."""
        if isinstance(self._side, sqlite3.Connection):
            self._side.close()
        self._side = False

    def _history(self, terms: list[str], phrases: list[str], ev: _Evidence,
                 found: tuple[list[sqlite3.Row], dict[int, list[str]]] | None = None) -> dict[str, float]:
        rows, files = found if found is not None else self._history_rows(self.db, terms, phrases, self.has_sessions)
        if not rows:
            return {}
        for r in rows:
            ev.episodes[r["id"]] = (r["s"], r)
        out: dict[str, float] = defaultdict(float)
        for r in rows:
            paths = files.get(r["id"], [])
            if not paths:
                continue
            share = r["s"] / math.sqrt(len(paths))
            for p in paths:
                cur = self.current_path(p)
                if cur is None:
                    continue
                out[cur] += share
                ev.commits_for[cur].append((r["s"], r["id"]))
        return dict(out)

    def _load_dense(self) -> None:
        from .dense import DenseIndex

        chunks = self.db.execute("SELECT path, symbol, start_line, end_line, hash FROM code_chunks").fetchall()
        eps = self.db.execute(
            f"SELECT id, title, body FROM episodes WHERE kind IN {HISTORY_KINDS} AND valid_to IS NULL"
            + self._before("")).fetchall()
        from .dense import text_hash

        hashes = [c["hash"] for c in chunks] + [text_hash(episode_text(e["title"], e["body"])) for e in eps]
        self._dense_refs = [(c["path"], c["symbol"], c["start_line"], c["end_line"]) for c in chunks] + [
            e["id"] for e in eps]
        self._dense = DenseIndex.load(self.db, self.encoder.id, hashes)
        self._dense_chunks = len(chunks)  # positions from here on are episodes

    def _query_vectors(self, query: str) -> tuple[Any, Any]:
        """The query's vectors: (the adapted one, the base one) where a repository adapter is
        active (it maps a task towards this repository's code: the adapter's channel); (the base
        one, None) without one."""
        both = getattr(self.encoder, "encode_both", None)
        if both is None:
            return self.encoder.encode([query])[0], None
        adapted, base = both([query])
        return adapted[0], base[0]

    def _dense_hits(self, query: str, *, dense: bool = True,
                    ) -> tuple[list[tuple[int, float]] | None, list[tuple[int, float]] | None]:
        """The query's nearest stored vectors, (position, cosine) best first: the 300 code chunks
        and episodes nearest it under the base model (None with ``dense`` off), and where a
        repository adapter is active, the 300 code chunks nearest the adapted query (else None)."""
        if self._dense is None:
            self._load_dense()
        code_vec, base_vec = self._query_vectors(query)
        if base_vec is None:
            return (self._dense.search(code_vec, 300) if dense else None), None
        hits = self._dense.search(base_vec, 300) if dense else None
        return hits, self._dense.search(code_vec, 300, below=self._dense_chunks)

    def _dense_channel(self, hits: list[tuple[int, float]], ev: _Evidence) -> dict[str, float]:
        out: dict[str, float] = {}
        # The episodes among the hits, their rows and files: kept from earlier queries (the store
        # has not changed while this Recaller lives), the others read in two statements.
        known = self._dense_episodes
        eids = sorted({ref for ref in (self._dense_refs[pos] for pos, _ in hits)
                       if isinstance(ref, int) and ref not in known})
        if eids:
            if len(known) + len(eids) > DENSE_EPISODES_KEPT:
                known.clear()
            q = ",".join("?" * len(eids))
            got = {r["id"]: r for r in self.db.execute(
                f"SELECT id, kind, source, title, body, ts FROM episodes WHERE id IN ({q})", eids)}
            got_files: dict[int, list[str]] = defaultdict(list)
            for eid, p in self.db.execute(
                    f"SELECT episode_id, path FROM episode_files WHERE episode_id IN ({q}) ORDER BY rowid", eids):
                got_files[eid].append(p)
            for eid in eids:  # an episode forgotten since the index was read: None, as before
                known[eid] = (got.get(eid), got_files.get(eid, []))
        for pos, cos in hits:
            ref = self._dense_refs[pos]
            ev.dense_best = max(ev.dense_best, cos)
            if isinstance(ref, int):  # a commit, note or session turn: its files inherit part of the similarity
                row, paths = known[ref]
                if ref not in ev.episodes:
                    ev.episodes[ref] = (0.0, row)
                ev.episode_cos[ref] = max(ev.episode_cos.get(ref, 0.0), cos)
                for p in paths:
                    cur = self.current_path(p)
                    if cur is not None:
                        out[cur] = max(out.get(cur, 0.0), 0.8 * cos)
                continue
            path, symbol, line, end = ref
            if cos > out.get(path, 0.0):
                out[path] = cos
                ev.dense_for[path] = (cos, symbol, line, end)
        # Similarities crowd near the top; what separates files is the distance above the crowd.
        floor = min(out.values(), default=0.0)
        return {p: max(0.0, s - floor) for p, s in out.items()}

    def _adapted_channel(self, hits: list[tuple[int, float]], ev: _Evidence) -> dict[str, float]:
        """The repository adapter's channel: each file by its best code chunk under the adapted
        task vector, above the crowd as in the dense channel.

        The adapter learned which code this repository's tasks lead to; the dense channel also
        finds files through past commits like the task, which the base model already reads well.
        Beside it, not in its place, the adapter adds what it learned without taking that away."""
        out: dict[str, float] = {}
        for pos, cos in hits:
            ref = self._dense_refs[pos]
            assert not isinstance(ref, int)
            path, symbol, line, end = ref
            if path not in out or cos > out[path]:
                out[path] = cos
                ev.adapted_for[path] = (cos, symbol, line, end)
        floor = min(out.values(), default=0.0)
        return {p: max(0.0, s - floor) for p, s in out.items()}

    def _cochange(self, seeds: list[str], ev: _Evidence) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for seed in seeds:
            rows = self.memo.get(("cochange", seed))
            if rows is None:
                rows = self.memo[("cochange", seed)] = self.db.execute(
                    "SELECT f2.path, count(*) FROM episode_files f1"
                    " JOIN episodes e ON e.id = f1.episode_id AND e.kind = 'commit' AND e.valid_to IS NULL" + self._before() +
                    " JOIN episode_files f2 ON f2.episode_id = f1.episode_id AND f2.path != f1.path"
                    " WHERE f1.path = ? AND e.id IN (SELECT episode_id FROM episode_files WHERE path = ?"
                    "   ORDER BY episode_id DESC LIMIT 200)"
                    " GROUP BY f2.path ORDER BY count(*) DESC LIMIT 20",
                    (seed, seed),
                ).fetchall()
            for path, n in rows:
                cur = self.current_path(path)
                if cur is None or cur in seeds:
                    continue
                if n >= 2:
                    out[cur] += n
                    if n > ev.cochange_with.get(cur, ("", 0))[1]:
                        ev.cochange_with[cur] = (seed, n)
        return dict(out)

    def _files_named(self, token: str) -> list[str]:
        """Files a written name or path refers to: the exact path, a path ending in it, or (for a
        bare name) the same file name; a path that has since been renamed maps to its file now."""
        if self._by_name is None:
            self._by_name = defaultdict(list)
            for p in self.files:
                self._by_name[p.rsplit("/", 1)[-1].lower()].append(p)
        name = token.rsplit("/", 1)[-1]
        hits = [p for p in self._by_name.get(name, [])
                if "/" not in token or p.lower() == token or p.lower().endswith("/" + token)]
        if not hits:  # an old name: follow the renames recorded in history
            olds = [o for o in self._rename_map()
                    if o.lower() == token or o.lower().endswith("/" + token)
                    or ("/" not in token and o.rsplit("/", 1)[-1].lower() == token)]
            hits = sorted({c for c in (self.current_path(o) for o in olds) if c})
        return sorted(hits)

    def _commits_named(self, query: str) -> list[tuple[sqlite3.Row, str]]:
        """Commits the task names: by id (a unique prefix of 7+ hex digits) or by quoted subject."""
        out: list[tuple[sqlite3.Row, str]] = []
        cols = "id, kind, source, title, body, ts"
        for h in sha_mentions(query)[:MAX_MENTIONS]:
            rows = self.db.execute(
                f"SELECT {cols} FROM episodes WHERE source >= ? AND source < ? AND kind = 'commit'"
                " AND valid_to IS NULL" + self._before("") + " LIMIT 2", (h, h + "g")).fetchall()
            if len(rows) == 1:
                out.append((rows[0], f"the task names commit {h[:7]}"))
        for subject in quoted_subjects(query)[:MAX_MENTIONS]:
            words = re.findall(r"\w+", subject)
            phrase = "title : " + fts_query([" ".join(words)])
            rows = self.db.execute(  # the phrase is quoted words only: no FTS syntax can get in
                "SELECT e.id, e.kind, e.source, e.title, e.body, e.ts FROM episodes_fts"
                " JOIN episodes e ON e.id = episodes_fts.rowid"
                " WHERE episodes_fts MATCH ? AND e.kind = 'commit' AND e.valid_to IS NULL" + self._before() +
                " ORDER BY e.ts DESC LIMIT 20", (phrase,)).fetchall()
            want = " ".join(w.lower() for w in words)
            for r in rows:
                if " ".join(w.lower() for w in re.findall(r"\w+", r["title"] or "")) == want:
                    out.append((r, f"the task quotes “{subject[:60]}”"))
                    break
        return out

    def _mentions(self, query: str, ev: _Evidence) -> dict[str, float]:
        """Files the task names: by file name, by a code name they define, or through a commit it
        names. A name shared by n files gives each 1/√n; a named commit's files share its weight
        the same way. Not normalised: an ambiguous name must stay weaker than a unique one."""
        out: dict[str, float] = {}
        for token in path_mentions(query)[:MAX_MENTIONS]:
            hits = self._files_named(token)
            for p in hits:
                score = 1.0 / math.sqrt(len(hits))
                if score > out.get(p, 0.0):
                    out[p] = score
                    ev.mentioned[p] = f"the task names {token}"
        for name in identifier_mentions(query)[:MAX_MENTIONS]:
            defs = sorted({p for (p,) in self.db.execute("SELECT path FROM code_symbols WHERE name = ?", (name,))})
            for p in defs:  # a defined name is a little weaker than a written file name
                score = 0.8 / math.sqrt(len(defs))
                if score > out.get(p, 0.0):
                    out[p] = score
                    ev.mentioned[p] = f"defines {name}, which the task names"
        for row, how in self._commits_named(query):
            paths = [p for (p,) in self.db.execute("SELECT path FROM episode_files WHERE episode_id = ?", (row["id"],))]
            current = sorted({c for c in (self.current_path(p) for p in paths) if c})
            if not current:
                continue
            ev.episodes[row["id"]] = (NAMED, row)
            for p in current:
                score = max(0.3, 1.0 / math.sqrt(len(current)))
                if score > out.get(p, 0.0):
                    out[p] = score
                    ev.mentioned[p] = f"{how}, which changed it"
        return out

    def _tests_for(self, path: str) -> list[str]:
        """The test files named for ``path``'s subject, nearest folders first."""
        if self._tests_by_key is None:
            self._tests_by_key = defaultdict(list)
            for p in self.files:
                if is_test(p):
                    self._tests_by_key[subject_key(p)].append(p)
        cands = self._tests_by_key.get(subject_key(path), [])

        def shared(p: str) -> int:
            a, b = path.split("/")[:-1], p.split("/")[:-1]
            n = 0
            while n < min(len(a), len(b)) and a[n] == b[n]:
                n += 1
            return n
        return sorted(cands, key=lambda p: (-shared(p), p))[:2]

    def _intent(self, query: str, prelim: Counter[str], ev: _Evidence) -> dict[str, float]:
        """A task about tests: the best candidates' test files (and the test files among them); a
        task about documentation: the documentation among the candidates. Each scored with the
        candidate's preliminary score."""
        tests, docs = wants_tests(query), wants_docs(query)
        if not (tests or docs):
            return {}
        out: dict[str, float] = {}
        for path, score in prelim.most_common(10):
            if score <= 0:
                continue
            targets: list[tuple[str, str]] = []
            if tests:
                targets += [(path, "tests")] if is_test(path) else [(t, "tests") for t in self._tests_for(path)]
            if docs and is_doc(path):
                targets.append((path, "docs"))
            for t, kind in targets:
                if score > out.get(t, 0.0):
                    out[t] = score
                    ev.intent_from[t] = (kind, path)
        return out

    def priors(self) -> dict[str, dict[str, float]]:
        """Query-independent channels, computed once per Recaller."""
        if self._priors is not None:
            return self._priors
        structure = {p: r for p, r in self.db.execute("SELECT path, rank FROM code_rank")}
        recency: dict[str, float] = defaultdict(float)
        latest = self.db.execute(
            "SELECT id FROM episodes WHERE kind = 'commit' AND valid_to IS NULL" + self._before("")
            + " ORDER BY ts DESC, id DESC LIMIT 30").fetchall()  # same second: captured later is newer
        for i, (eid,) in enumerate(latest):
            for (p,) in self.db.execute("SELECT path FROM episode_files WHERE episode_id = ?", (eid,)):
                cur = self.current_path(p)
                if cur:
                    recency[cur] += 1.0 / (1 + i)
        if self.as_of is None:  # the working tree and the editor's activity are today's
            self._working_set(recency)
        fixes: dict[str, float] = {}
        for path, n in self.db.execute(
            "SELECT f.path, count(*) FROM episode_files f JOIN episodes e ON e.id = f.episode_id"
            " WHERE e.kind = 'commit' AND e.valid_to IS NULL AND e.salience >= 0.7" + self._before() + " GROUP BY f.path"
        ):
            cur = self.current_path(path)
            if cur:
                fixes[cur] = fixes.get(cur, 0) + n
        self._priors = {"structure": _normalise(structure), "recency": _normalise(dict(recency)),
                        "fixes": _normalise(fixes)}
        return self._priors

    def _working_set(self, recency: dict[str, float]) -> None:
        """Adds to ``recency`` the files with uncommitted changes and, from what is active now (`lmm
        watch`, the Cursor hook), the files edited in the last half hour, decaying."""
        try:
            dirty = run_git(self.root, "status", "--porcelain", "-z", "--untracked-files=no", check=False)
            for item in dirty.decode("utf-8", "backslashreplace").split("\0"):
                if len(item) > 3 and item[3:] in self.files:
                    recency[item[3:]] = recency.get(item[3:], 0.0) + 3.0
        except Exception:  # a recall never fails for want of git status
            pass
        for p, w in recent_activity(self.db).items():
            cur = self.current_path(p)
            if cur:
                recency[cur] = recency.get(cur, 0.0) + 3.0 * w

    def _query_channels(self, query: str, head: str, ev: _Evidence, reuse: dict[str, dict[str, float]] | None,
                        side: sqlite3.Connection | None) -> dict[str, dict[str, float]]:
        """The lexical, names, history and dense channels, and the adapter's where one is active.
        ``side``: a second connection, on which
        the history channel's SQL (SQLite lets go of the GIL as it works) runs on a thread of its
        own while this one encodes the query."""
        hits: tuple[list[tuple[int, float]] | None, list[tuple[int, float]] | None] | None = None
        if reuse is None:
            terms, phrases = query_terms(query)[:MAX_TERMS], query_phrases(head)
            history = None
            if side is not None:
                history = _meanwhile(self._history_rows, side, terms, phrases, self.has_sessions)
                hits = self._dense_hits(head)
            ch: dict[str, dict[str, float]] = {
                "lexical": _normalise(self._lexical(terms, phrases, ev)),
                "names": _normalise(self._names(terms, phrases, ev)),
                "history": _normalise(self._history(terms, phrases, ev, history() if history else None)),
            }
        else:
            ch = {c: reuse[c] for c in ("lexical", "names", "history")}
        if self.encoder is None:
            ch["dense"] = {}
            return ch
        if hits is None:  # with ``reuse``, the dense channel as it was: the base model's, whatever adapter is active
            hits = self._dense_hits(head, dense=reuse is None)
        base_hits, adapted_hits = hits
        if base_hits is None:
            assert reuse is not None
            ch["dense"] = reuse["dense"]
        else:
            ch["dense"] = _normalise(self._dense_channel(base_hits, ev))
        if adapted_hits is not None:
            ch[ADAPTED] = _normalise(self._adapted_channel(adapted_hits, ev))
        return ch

    def channel_scores(self, query: str, *, reuse: dict[str, dict[str, float]] | None = None,
                       ) -> tuple[dict[str, dict[str, float]], _Evidence]:
        """Every channel's normalised scores for ``query`` (what fusion and tuning work on).

        A long task (a pasted issue) is read up to bounds: its first ``MAX_TERMS`` distinct terms,
        and its first ``MENTION_CHARS`` characters for what it names and what it is about.
        ``reuse``: channel scores of an earlier call for the same query whose lexical, names,
        history, mentions and dense channels are taken as they are (only the adapter changed
        since: the dense channel is the base model's whichever is active)."""
        head = query[:MENTION_CHARS]
        ev = _Evidence()
        side = self._side_db() if (self.encoder is not None and reuse is None
                                   and (os.cpu_count() or 1) >= 2) else None
        if side is None:
            ch = self._query_channels(query, head, ev, reuse, None)
        else:
            from ..embed.encoder import sharing_cores

            with sharing_cores():  # one core for this thread's products: the other runs the SQL
                ch = self._query_channels(query, head, ev, reuse, side)
        ch["mentions"] = self._mentions(head, ev) if reuse is None else reuse["mentions"]
        prelim: Counter[str] = Counter()  # float scores: Counter only for most_common()
        for c in QUERY_CHANNELS:
            for p, s in ch[c].items():
                prelim[p] += self.weights.get(c, 0.0) * s  # type: ignore[assignment]
        ch["intent"] = _normalise(self._intent(head, prelim, ev))
        seeds = [p for p, _ in prelim.most_common(5)]
        ch["cochange"] = _normalise(self._cochange(seeds, ev))
        ch.update(self.priors())
        return ch, ev

    @staticmethod
    def fuse(ch: dict[str, dict[str, float]], weights: dict[str, float]) -> list[tuple[str, float]]:
        """Weighted sum over channels; priors only re-rank files some query channel found."""
        found: set[str] = set()
        for c in FOUND_BY:
            found.update(ch.get(c, {}))
        total: dict[str, float] = {}
        for p in found:
            total[p] = sum(weights.get(c, 0.0) * ch.get(c, {}).get(p, 0.0) for c in FUSED)
        return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))

    def learned_ranker(self) -> Any:
        """The learned ranker this recall uses (``rerank.LearnedRanker``), or None: the store's
        active one when it was fitted on the channels this recall has (with or without dense)."""
        if self._ranker is STORE_RANKER:
            from .rerank import load_ranker

            self._ranker = load_ranker(_store_folder(self.db))
        r = self._ranker
        return r if r is not None and r.compatible(self.encoder is not None) else None

    @property
    def fusion_weights(self) -> dict[str, float]:
        """The weights the fusion ranks by: the store's, and the adapter channel's, the dense
        channel's times the query encoder's ``dense_scale`` (an adapter version's round fits how
        much its channel is worth in the whole recall: ``model.rounds``; sane by then: ``model.adapters``)."""
        return adapter_weights(self.weights, getattr(self.encoder, "dense_scale", 1.0))

    def order(self, ch: dict[str, dict[str, float]],
              weights: dict[str, float] | None = None) -> tuple[list[tuple[str, float]], str]:
        """The files for channel scores ``ch``, best first, and what ordered them: the linear fusion
        (under ``weights``, default ``fusion_weights``), its top re-ranked by the learned ranker
        where one applies (one that fails is dropped)."""
        ranked = [(p, s) for p, s in self.fuse(ch, self.fusion_weights if weights is None else weights)
                  if p in self.files]
        ranker = self.learned_ranker()
        if ranker is None:
            return ranked, "fusion"
        try:
            if self._stats is None:
                from .rerank import file_stats

                self._stats = file_stats(self.db, self.current_path, self.as_of)
            return ranker.rerank(ranked, ch, self._stats), ranker.label
        except Exception:  # noqa: BLE001 - a ranker that cannot score is no ranker: the linear fusion answers
            self._ranker = None
            return ranked, "fusion"

    def rank_files(self, query: str, k: int = 10) -> list[str]:
        ch, _ = self.channel_scores(query)
        return [p for p, _ in self.order(ch)[0][:k]]

    # -- the full answer --------------------------------------------------------------------
    def recall(self, query: str, *, k_files: int = 10, k_commits: int = 8) -> Recall:
        t0 = time.perf_counter()
        ch, ev = self.channel_scores(query)
        ordered, ranked_by = self.order(ch)
        ranked = ordered[:k_files]
        relevant = bool(ch["lexical"] or ch["names"] or ch["history"] or ch["mentions"]
                        or ev.dense_best >= DENSE_RELEVANT
                        # a note or session turn that matches the task's words, even one naming no file
                        or any(s > 0 and row is not None and row["kind"] in ("note", "session")
                               for s, row in ev.episodes.values()))
        if not relevant:
            return Recall(query, [], [], [], False, time.perf_counter() - t0)
        # Commits reset away and pruned stay in the store: never cite or quote one git no longer has.
        asked = [row["source"] for _, row in ev.episodes.values() if row is not None and row["kind"] == "commit"]
        ev.gone = missing_commits(self.root, asked)
        files = [self._file_hit(p, s, ch, ev) for p, s in ranked]
        commits, notes, sessions = self._episodes(ev, [f.path for f in files], k_commits)
        return Recall(query, files, commits, notes, True, time.perf_counter() - t0, sessions,
                      {sha: sha not in ev.gone for sha in asked}, ranked_by)

    def _file_hit(self, path: str, score: float, ch: dict[str, dict[str, float]], ev: _Evidence) -> FileHit:
        weights = self.fusion_weights
        contrib = {c: weights.get(c, 0.0) * ch.get(c, {}).get(path, 0.0) for c in FUSED}
        why: list[str] = []
        for c, v in sorted(contrib.items(), key=lambda kv: -kv[1]):
            if v <= 0 or len(why) >= 3:
                continue
            why.append(self._explain(c, path, ev))
        symbols: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _, symbol, line, end, _src in sorted(ev.chunks.get(path, []), key=lambda t: -t[0]):
            if symbol and symbol not in seen:
                seen.add(symbol)
                symbols.append({"name": symbol, "line": self.definition_line(path, symbol, line, end)})
        for found in (ev.adapted_for, ev.dense_for):
            if path in found and found[path][1] and found[path][1] not in seen:
                _, sym, line, end = found[path]
                assert sym is not None
                seen.add(sym)
                symbols.append({"name": sym, "line": self.definition_line(path, sym, line, end)})
        if not symbols:
            symbols = [{"name": n, "line": ln} for n, ln in self.db.execute(
                "SELECT name, start_line FROM code_symbols WHERE path = ? AND parent IS NULL ORDER BY start_line LIMIT 3",
                (path,))]
        return FileHit(path=path, score=score, why=[w for w in why if w], symbols=symbols[:5],
                       channels={c: v for c, v in contrib.items() if v > 0})

    def _explain(self, channel: str, path: str, ev: _Evidence) -> str:
        if channel == "lexical":
            best = max(ev.chunks.get(path, [(0.0, None, 0, 0, "")]), key=lambda t: t[0])
            return f"the task's words appear in its code{f' ({best[1]})' if best[1] else ''}"
        if channel == "names":
            return "its path or the names it defines match the task"
        if channel == "history":
            hits = [h for h in sorted(ev.commits_for.get(path, []), reverse=True)
                    if ev.episodes[h[1]][1]["source"] not in ev.gone]
            if hits:
                row = ev.episodes[hits[0][1]][1]
                n = len(hits)
                what = f"“{row['title'][:60]}”" + (f" ({row['source'][:7]})" if row["kind"] == "commit" else
                                                   " (an assistant session)" if row["kind"] == "session" else " (a note)")
                return f"changed by {n} matching commit{'s' if n != 1 else ''}, e.g. {what}"
            return "changed by matching commits"
        if channel == "dense":
            d = ev.dense_for.get(path)
            return f"similar in meaning{f' ({d[1]})' if d and d[1] else ''}"
        if channel == ADAPTED:
            d = ev.adapted_for.get(path)
            return f"{ADAPTER_REASON}{f' ({d[1]})' if d and d[1] else ''}"
        if channel == "mentions":
            return ev.mentioned.get(path, "the task names it")
        if channel == "intent":
            kind, cand = ev.intent_from.get(path, ("", ""))
            if kind == "tests":
                return "the task is about tests" + (f"; tests {cand}" if cand and cand != path else "")
            return "the task is about documentation"
        if channel == "cochange":
            seed, n = ev.cochange_with.get(path, ("", 0))
            return f"changes together with {seed} ({n} commits)" if seed else "changes together with the top files"
        if channel == "structure":
            return "central: many files use it"
        if channel == "recency":
            return "in the working set (recently or currently changed)"
        if channel == "fixes":
            return "often fixed"
        return channel

    def _episodes(self, ev: _Evidence, top_files: list[str],
                  k: int) -> tuple[list[CommitHit], list[NoteHit], list[SessionHit]]:
        scored = sorted(ev.episodes.values(), key=lambda t: -t[0])
        commits: list[CommitHit] = []
        notes: list[NoteHit] = []
        sessions: list[SessionHit] = []
        top_set = set(top_files)
        for s, row in scored:
            if row is None:
                continue
            how = "named in the task" if s >= NAMED else "matches the task" if s > 0 else "similar in meaning"
            if row["kind"] == "note":
                if len(notes) < 5:
                    text = (row["title"] + ("\n" + row["body"] if row["body"] else "")).strip()
                    notes.append(NoteHit(row["id"], _day(row["ts"]), text, how, s))
            elif row["kind"] == "session":
                # A turn found by meaning alone is quoted only when close (a "thanks" is near everything).
                if len(sessions) < MAX_SESSIONS and (s > 0 or ev.episode_cos.get(row["id"], 0.0) >= DENSE_RELEVANT):
                    sessions.append(self._session_hit(row, how, s))
            elif len(commits) < k and row["source"] not in ev.gone:
                paths = [p for (p,) in self.db.execute(
                    "SELECT path FROM episode_files WHERE episode_id = ?", (row["id"],))]
                near = next((p for p in paths if self.current_path(p) in top_set), None)
                commits.append(CommitHit(row["source"], _day(row["ts"]), row["title"],
                                         how + (f"; touched {near}" if near else ""), s, paths[:10], row["body"]))
            if len(commits) >= k and len(notes) >= 5 and len(sessions) >= MAX_SESSIONS:
                break  # enough: the rest would only cost queries
        return commits, notes, sessions

    def _session_hit(self, row: sqlite3.Row, how: str, score: float) -> SessionHit:
        prompt, _, rest = (row["body"] or "").partition("\n\nAnswer: ")
        answer = rest.split("\n\nFailed: ", 1)[0]
        if prompt.startswith("Answer: "):  # a turn with no prompt of its own
            prompt, answer = "", prompt[len("Answer: "):].split("\n\nFailed: ", 1)[0]
        source = row["source"]
        paths = [p for (p,) in self.db.execute(
            "SELECT path FROM episode_files WHERE episode_id = ? ORDER BY status, path", (row["id"],))]
        return SessionHit(row["id"], _day(row["ts"]), source.rsplit(":", 1)[-1], source.split(":", 1)[0],
                          prompt.strip() or row["title"], answer.strip(), how, score, paths[:10])


def episode_text(title: str, body: str) -> str:
    """What is embedded for a commit, note or session turn: its title, the first lines of the body."""
    return (title + "\n" + "\n".join(body.splitlines()[:6])).strip()[:1000]
