"""Training pairs mined from the store: what the repository's own history says a query should find.

A pair is a query text and the code chunk it should reach. Four sources, each a kind of evidence a
user or the history gave:

- **commits** — the cleaned message (``replay.clean_message``: trailers, PR numbers, URLs out) →
  each file the commit added, modified or renamed that exists in the code index now (followed
  through later renames);
- **notes** — the note → the files it names (its ``episode_files`` rows, and paths of the code
  index written out in its text);
- **session turns** — the user's prompt → the files the assistant edited in that turn;
- **feedback** — the query of a recall judged useful → the top files it returned.

A query's target in a file is that file's best-matching chunk under the BASE model's query vector
(the adapter learns to move the query towards the file, starting from where the base already
points inside it). Secret and binary files are never targets, nor files that nearly every commit
touches (changelogs, version files, lockfiles: ``churn.always_touched``), which would teach the
adapter that every query is about the changelog.

Each query carries its provenance id (``"ep:<episode id>"`` or ``"recall:<recall id>"``), which
versions record in ``seen`` so that ``lmm forget`` can find every version that learned from an
episode, and a weight from ``episodes.salience`` (``0.25 + 1.5 · salience``, normalised to mean 1
over a training set): what mattered weighs more than routine churn.

Documents (``docs``) are the stored base vectors of every code chunk, in the order of
``code_chunks`` rows that have one; base query vectors are cached in the ``vectors`` table under
the model id with ``QUERY_SUFFIX``, so a round encodes only query texts it has not seen before.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import BadInput

if TYPE_CHECKING:
    import numpy as np

    from ..embed.encoder import Encoder
    from .trainer import TrainSet

__all__ = ["Example", "Mined", "NoEmbeddings", "mine", "mine_pairs", "query_text", "weights_for", "is_probe",
           "QUERY_SUFFIX", "PROBE_BUCKETS", "MAX_FILES", "FEEDBACK_FILES", "FEEDBACK_SALIENCE", "CHURN_SHARE"]

QUERY_SUFFIX = "#query"  # vectors of query texts: kept apart from the documents' vectors recall loads
PROBE_BUCKETS = 10  # 1 in this many commits (by a hash of the sha) is a permanent probe: never trained on
MAX_FILES = 20  # a query touching more eligible files than this is a sweep (vendoring, reformatting): skipped
FEEDBACK_FILES = 3  # a useful recall's top files that become its targets
FEEDBACK_SALIENCE = 0.8  # a user said it helped: explicit importance
CHURN_SHARE = 0.25  # a file touched by more than this share of commits is churn (fallback rule)
_CHURN_NAME = re.compile(r"^(changes|changelog|history|news)([._-].*)?$|\.lock$|^package-lock\.json$", re.I)
_PATHLIKE = re.compile(r"[\w.\-/]+")

Progress = Callable[[int, int], None]


class NoEmbeddings(BadInput):
    """The store holds no vectors for the encoder: nothing to train against."""

    def __init__(self) -> None:
        super().__init__("no embeddings in this store: run `lmm ingest` (without --no-embed) first, then train")


def is_probe(key: str) -> bool:
    """Whether ``key`` (a commit sha, or another query's provenance id) falls in the permanent probe
    bucket: scored as older history every round, never trained on in any."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) % PROBE_BUCKETS == 0


@dataclass
class Example:
    """One query with its targets (one training pair per target)."""

    source: str                  # provenance id: "ep:<episode id>" or "recall:<recall id>"
    kind: str                    # commit, note, session, feedback
    ts: float
    text: str
    gold: list[str]              # the files it should find (paths in the code index now)
    key: str                     # what the probe bucket hashes: the sha for a commit, else the source
    salience: float = 0.5
    targets: list[int] = field(default_factory=list)  # per gold file: its best chunk (row of docs)

    @property
    def probe(self) -> bool:
        return self.kind == "commit" and is_probe(self.key)

    @property
    def episode_id(self) -> int | None:
        return int(self.source[3:]) if self.source.startswith("ep:") else None


@dataclass
class Mined:
    """Everything a round needs: the queries (newest first), their base vectors, the documents."""

    examples: list[Example]
    q: np.ndarray                # (len(examples), d) float32 base query vectors
    docs: np.ndarray             # (n_docs, d) float32 base chunk vectors
    doc_paths: list[str]         # per doc row: its file
    model: str                   # the base encoder's id

    def index(self) -> dict[str, int]:
        return {e.source: i for i, e in enumerate(self.examples)}

    def pairs(self, idx: Iterable[int] | None = None) -> int:
        rows = range(len(self.examples)) if idx is None else idx
        return sum(len(self.examples[i].targets) for i in rows)

    def trainset(self, idx: Sequence[int]) -> TrainSet:
        """The training pairs of the examples at ``idx``: one row per target, weighted by salience."""
        import numpy as np

        from .trainer import TrainSet

        rows = [(i, t) for i in idx for t in self.examples[i].targets]
        q = self.q[[i for i, _ in rows]] if rows else np.zeros((0, self.q.shape[1]), np.float32)
        sal = [self.examples[i].salience for i, _ in rows]
        return TrainSet(texts=[self.examples[i].text for i, _ in rows], q=np.asarray(q, np.float32),
                        target=np.asarray([t for _, t in rows], np.int64), weight=weights_for(sal),
                        source=[self.examples[i].source for i, _ in rows])


def weights_for(salience: Sequence[float]) -> np.ndarray:
    """Loss weights from salience: ``0.25 + 1.5 · s``, normalised to mean 1 (a routine commit at
    salience 0.1 weighs about a fifth of a user's correction at 1.0)."""
    import numpy as np

    w = 0.25 + 1.5 * np.clip(np.asarray(salience, np.float64), 0.0, 1.0)
    if len(w):
        w = w / w.mean()
    return w.astype(np.float32)


# --------------------------------------------------------------------------- texts


def _session_prompt(title: str, body: str) -> str:
    """The user's words of a session turn (its body is the prompt, then "Answer: …", "Failed: …")."""
    if body.startswith("Answer: ") or body.startswith("Failed: "):
        return ""
    prompt = re.split(r"\n\n(?:Answer|Failed): ", body, maxsplit=1)[0]
    return prompt.strip() or title.strip()


def query_text(kind: str, title: str, body: str) -> str:
    """The text a pair of this episode asks with: what a user would type for that work."""
    from .replay import clean_message

    if kind == "commit":
        return clean_message(f"{title}\n\n{body}" if body else title)
    if kind == "session":
        return _session_prompt(title, body)
    return f"{title}\n{body}".strip()


# --------------------------------------------------------------------------- what is a target


def _fallback_always_touched(db: sqlite3.Connection) -> set[str]:
    """Files that nearly every commit touches: more than ``CHURN_SHARE`` of the commits (once there
    are enough of them to say), or named like a changelog, a news file or a lockfile."""
    n = db.execute("SELECT count(*) FROM episodes WHERE kind = 'commit' AND valid_to IS NULL").fetchone()[0]
    out: set[str] = set()
    rows = db.execute("SELECT f.path, count(*) FROM episode_files f JOIN episodes e ON e.id = f.episode_id"
                      " WHERE e.kind = 'commit' AND e.valid_to IS NULL GROUP BY f.path").fetchall()
    for path, c in rows:
        if (n >= 20 and c > CHURN_SHARE * n) or _CHURN_NAME.search(path.rsplit("/", 1)[-1]):
            out.add(path)
    for (path,) in db.execute("SELECT path FROM code_files"):
        if _CHURN_NAME.search(path.rsplit("/", 1)[-1]):
            out.add(path)
    return out


def _always_touched(db: sqlite3.Connection) -> set[str]:
    try:
        from .churn import always_touched  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return _fallback_always_touched(db)
    found: set[str] = set(always_touched(db))
    return found


class _Paths:
    """Where a path recorded in history is now (following renames), and whether it may be a target."""

    def __init__(self, db: sqlite3.Connection, has_vectors: set[str]) -> None:
        from ..privacy.files import is_secret_file

        self.files = {r[0] for r in db.execute("SELECT path FROM code_files")}
        self.renames: dict[str, str] = {}
        for old, new in db.execute(
            "SELECT f.old_path, f.path FROM episode_files f JOIN episodes e ON e.id = f.episode_id"
            " WHERE f.status = 'R' AND f.old_path IS NOT NULL AND e.valid_to IS NULL ORDER BY e.ts"
        ):
            self.renames[old] = new
        self.churn = _always_touched(db)
        self.secret = is_secret_file
        self.embedded = has_vectors

    def current(self, path: str) -> str | None:
        seen: set[str] = set()
        while path not in self.files:
            if path in seen or path not in self.renames:
                return None
            seen.add(path)
            path = self.renames[path]
        return path

    def target(self, path: str) -> str | None:
        """The current path of ``path`` when it may be a target, else None."""
        if path in self.churn or self.secret(path):
            return None
        cur = self.current(path)
        if cur is None or cur in self.churn or self.secret(cur) or cur not in self.embedded:
            return None
        return cur


# --------------------------------------------------------------------------- mining


def _files_by_episode(db: sqlite3.Connection, kind: str, statuses: tuple[str, ...]) -> dict[int, list[str]]:
    marks = ",".join("?" * len(statuses))
    out: dict[int, list[str]] = {}
    for eid, path in db.execute(
        f"SELECT f.episode_id, f.path FROM episode_files f JOIN episodes e ON e.id = f.episode_id"
        f" WHERE e.kind = ? AND e.valid_to IS NULL AND f.status IN ({marks}) AND f.binary = 0 AND f.secret = 0"
        f" ORDER BY f.episode_id, f.path", (kind, *statuses)
    ):
        out.setdefault(eid, []).append(path)
    return out


def _candidates(db: sqlite3.Connection, paths: _Paths, exclude: set[str]) -> list[Example]:
    """Every query the store offers, newest first, with its gold files (targets not chosen yet)."""
    out: list[Example] = []

    def add(source: str, kind: str, ts: float, text: str, files: Iterable[str], key: str, salience: float) -> None:
        if source in exclude or not text.strip():
            return
        gold = list(dict.fromkeys(p for p in (paths.target(f) for f in files) if p is not None))
        if gold and len(gold) <= MAX_FILES:
            out.append(Example(source, kind, float(ts), text, sorted(gold), key, float(salience)))

    commit_files = _files_by_episode(db, "commit", ("A", "M", "R", "T"))
    for r in db.execute("SELECT id, source, ts, title, body, salience FROM episodes"
                        " WHERE kind = 'commit' AND valid_to IS NULL"):
        if r[0] in commit_files:
            add(f"ep:{r[0]}", "commit", r[2], query_text("commit", r[3], r[4]), commit_files[r[0]], r[1], r[5])
    note_files = _files_by_episode(db, "note", ("N", "A", "M", "E", "V"))
    for r in db.execute("SELECT id, source, ts, title, body, salience FROM episodes"
                        " WHERE kind = 'note' AND valid_to IS NULL"):
        text = query_text("note", r[3], r[4])
        named = [t.strip("./") for t in _PATHLIKE.findall(text) if "/" in t or "." in t]
        named = [p for p in named if p in paths.files]
        add(f"ep:{r[0]}", "note", r[2], text, [*note_files.get(r[0], []), *named], f"ep:{r[0]}", r[5])
    edited = _files_by_episode(db, "session", ("E",))
    for r in db.execute("SELECT id, source, ts, title, body, salience, data FROM episodes"
                        " WHERE kind = 'session' AND valid_to IS NULL"):
        if r[0] not in edited:
            continue
        try:
            by_user = json.loads(r[6] or "{}").get("by_user", True)
        except (ValueError, AttributeError):
            by_user = True
        if by_user is False:
            continue
        add(f"ep:{r[0]}", "session", r[2], query_text("session", r[3], r[4]), edited[r[0]], f"ep:{r[0]}", r[5])
    latest: dict[int, tuple[float, int]] = {}
    for rid, ts, useful in db.execute("SELECT recall_id, ts, useful FROM feedback ORDER BY ts, id"):
        latest[rid] = (ts, useful)  # the user's last word on a recall stands
    for rid, (ts, useful) in latest.items():
        if not useful:
            continue
        row = db.execute("SELECT query, files FROM recalls WHERE id = ?", (rid,)).fetchone()
        if row is None:
            continue
        try:
            files = [str(p) for p in json.loads(row[1])][:FEEDBACK_FILES]
        except (ValueError, TypeError):
            continue
        add(f"recall:{rid}", "feedback", ts, row[0], files, f"recall:{rid}", FEEDBACK_SALIENCE)
    out.sort(key=lambda e: (-e.ts, e.source))
    return out


def _chunk_docs(db: sqlite3.Connection, model: str) -> tuple[np.ndarray, list[str]]:
    from ..address.dense import DenseIndex

    chunks = db.execute("SELECT path, hash FROM code_chunks ORDER BY id").fetchall()
    index = DenseIndex.load(db, model, [c[1] for c in chunks])
    return index.matrix, [chunks[int(i)][0] for i in index.rows]


class _QueryEncoder:
    """The base encoder under the query-cache id (``<model>#query``), for ``embed_missing``."""

    def __init__(self, base: Encoder) -> None:
        self.base = base
        self.id = base.id + QUERY_SUFFIX
        self.dim = base.dim

    def encode(self, texts: list[str], *, batch_size: int = 32, progress: Progress | None = None) -> np.ndarray:
        return self.base.encode(texts, batch_size=batch_size, progress=progress)


def encode_queries(db: sqlite3.Connection, encoder: Encoder, texts: list[str], *,
                   progress: Progress | None = None) -> np.ndarray:
    """Base query vectors of ``texts`` (n, d), encoding only texts not cached in the store yet."""
    import numpy as np

    from ..address.dense import DenseIndex, embed_missing, text_hash

    qenc = _QueryEncoder(encoder)
    hashes = [text_hash(t) for t in texts]
    try:
        embed_missing(db, qenc, zip(hashes, texts), progress=progress)
    except Exception:  # noqa: BLE001 - a store we cannot write to (read-only): encode without the cache
        return np.asarray(encoder.encode(texts), np.float32)
    index = DenseIndex.load(db, qenc.id, hashes)
    if index.missing:
        out = np.zeros((len(texts), encoder.dim), np.float32)
        out[index.rows] = index.matrix
        miss = list(index.missing)
        out[miss] = np.asarray(encoder.encode([texts[i] for i in miss]), np.float32)
        return out
    order = np.argsort(index.rows)
    return np.asarray(index.matrix[order], np.float32)


def mine(db: sqlite3.Connection, encoder: Encoder, *, limit: int = 3000, exclude_sources: Iterable[str] = (),
         since_id: int | None = None, progress: Progress | None = None) -> Mined:
    """Mine up to ``limit`` pairs, newest queries first (a query contributes one pair per target).

    ``encoder`` is the BASE encoder (documents are stored under its id; targets are chosen under
    its query vectors). ``since_id``: only episodes after that id (feedback is always included).
    Raises ``NoEmbeddings`` when the store has no chunk vectors for it."""
    import numpy as np

    docs, doc_paths = _chunk_docs(db, encoder.id)
    if not len(doc_paths):
        raise NoEmbeddings()
    rows_of: dict[str, list[int]] = {}
    for i, p in enumerate(doc_paths):
        rows_of.setdefault(p, []).append(i)
    paths = _Paths(db, set(rows_of))
    cands = _candidates(db, paths, set(exclude_sources))
    if since_id is not None:
        cands = [e for e in cands if e.episode_id is None or e.episode_id > since_id]
    chosen: list[Example] = []
    total = 0
    for e in cands:
        if total >= limit:
            break
        e.gold = e.gold[:max(1, limit - total)]
        chosen.append(e)
        total += len(e.gold)
    q = encode_queries(db, encoder, [e.text for e in chosen], progress=progress) if chosen else \
        np.zeros((0, docs.shape[1]), np.float32)
    for e, qv in zip(chosen, q):
        e.targets = []
        for p in e.gold:
            rows = rows_of[p]
            e.targets.append(rows[int(np.argmax(docs[rows] @ qv))])
    return Mined(chosen, np.asarray(q, np.float32), docs, doc_paths, encoder.id)


def mine_pairs(db: sqlite3.Connection, encoder: Encoder, *, since_id: int | None = None, limit: int = 3000,
               exclude_sources: Iterable[str] = ()) -> tuple[TrainSet, np.ndarray, Mined]:
    """(every mined pair as a TrainSet, docs, the Mined set they came from: its queries and gold)."""
    m = mine(db, encoder, limit=limit, exclude_sources=exclude_sources, since_id=since_id)
    return m.trainset(range(len(m.examples))), m.docs, m


def file_rank(docs: np.ndarray, doc_paths: Sequence[str]) -> Callable[[np.ndarray, int], list[list[str]]]:
    """A dense-channel file ranking: chunk cosines → each file's best chunk → files best first.
    Returns ``rank(qvecs, depth) -> per query, the top ``depth`` paths``."""
    import numpy as np

    names = sorted(set(doc_paths))
    fid = {p: i for i, p in enumerate(names)}
    file_of = np.asarray([fid[p] for p in doc_paths], np.int64)
    order = np.argsort(file_of, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(file_of[order]) != 0])
    sorted_docs = docs[order]

    def rank(qvecs: np.ndarray, depth: int = 100) -> list[list[str]]:
        out: list[list[str]] = []
        for i in range(0, len(qvecs), 256):
            s = np.asarray(qvecs[i:i + 256], np.float32) @ sorted_docs.T
            per_file = np.maximum.reduceat(s, starts, axis=1)
            k = min(depth, per_file.shape[1])
            top = np.argsort(-per_file, axis=1, kind="stable")[:, :k]
            out.extend([[names[j] for j in row] for row in top])
        return out

    return rank

