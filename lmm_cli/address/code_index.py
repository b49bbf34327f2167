"""The code structure index: symbols, chunks and a file reference graph of the working tree.

``index_worktree`` walks the files git sees in the work tree (tracked, plus untracked files that
are not ignored), minus ``.lmmignore`` matches, secret files (never read), binaries and files over
1 MB, and fills the ``code_*`` tables of migration ``m002``:

code_files    one row per indexed file with its content hash (the git blob id). A file whose
              (path, hash) is already there is not read again: a re-run with nothing changed costs
              two ``git ls-files`` and one SELECT.
code_symbols  definitions found by tree-sitter (functions, classes, methods, structs, traits, …),
              1-based inclusive line ranges, the enclosing class/impl as ``parent``, and a
              one-line redacted signature.
code_chunks   the text units for embeddings and lexical search: one per top-level definition (a
              class over ~80 lines is split into its methods plus a header chunk), the code between
              definitions in pieces of at most 60 lines; files of languages without a grammar are
              cut into 60-line windows overlapping by 10. Text is redacted, capped at ~4,000 chars.
code_idents   identifiers each file uses but does not define itself, with counts.
code_refs     file → file edges, rebuilt from code_idents and code_symbols after each run that
              changed something: a use of a name defined by another file adds ``count / number of
              files defining it``; names defined by more than 20 files are ignored.
code_fts      contentless FTS5 over chunks (rowid = code_chunks.id). Entries are deleted with the
              FTS5 'delete' command and exactly the values they were inserted with, both made by
              :func:`fts_values`.

tree-sitter is imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import sqlite3
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..capture.ignore import IgnoreRules
from ..capture.redact import is_secret_file, redact
from ..repo import run_git
from .terms import code_terms

__all__ = [
    "IndexStats",
    "Symbol",
    "Chunk",
    "index_worktree",
    "language_of",
    "extract",
    "fts_values",
    "rebuild_refs",
    "MAX_FILE_BYTES",
]

MAX_FILE_BYTES = 1 << 20  # larger files are left out (generated code, data, vendored bundles)
BINARY_PROBE = 8192  # a NUL byte in the first 8 KB: binary
CHUNK_MAX_CHARS = 4000
CLASS_SPLIT_LINES = 80  # a class (or impl, namespace…) longer than this is chunked by its members
GAP_LINES = 60  # code between definitions: pieces of at most this many lines
WINDOW_LINES = 60  # files without a grammar: windows of 60 lines…
WINDOW_OVERLAP = 10  # …each overlapping the previous by 10
SIGNATURE_MAX = 200
MAX_DEFINERS = 20  # a name defined by more files than this makes no edges (get, init, run…)
BATCH_FILES = 200  # files per write transaction
_REFS_STALE_KEY = "code_index.refs_stale"
_VERSION_KEY = "code_index.version"
INDEX_VERSION = "2"  # bump when extraction changes: the next run re-reads every file (2: markdown sections)

# Lock files: large, machine-written, and of no use to search.
_SKIP_NAMES = frozenset(
    """package-lock.json npm-shrinkwrap.json yarn.lock pnpm-lock.yaml cargo.lock poetry.lock
    pipfile.lock uv.lock go.sum composer.lock gemfile.lock flake.lock bun.lockb""".split()
)


@dataclass
class IndexStats:
    files: int  # files in the index after the run
    parsed: int  # files read and (re)indexed by this run
    removed: int  # files dropped from the index by this run (gone, now ignored, binary or too big)
    symbols: int  # symbols in the index after the run
    chunks: int  # chunks in the index after the run
    seconds: float


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    kind: str  # function, method, class, struct, interface, enum, trait, type, module, …
    parent: str | None  # the enclosing definition's name (class/impl/struct for methods)
    start_line: int  # 1-based, inclusive
    end_line: int
    signature: str  # the definition's first line up to its body, whitespace-collapsed, redacted


@dataclass(frozen=True, slots=True)
class Chunk:
    start_line: int  # 1-based, inclusive
    end_line: int
    symbol: str | None  # the definition this chunk is (or is part of), if any
    text: str  # redacted
    hash: str  # sha1 hex of text


# --------------------------------------------------------------------------------------------
# Languages
# --------------------------------------------------------------------------------------------

_EXT_LANG: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".jsx": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hh": "cpp", ".hpp": "cpp",
    ".hxx": "cpp", ".h++": "cpp", ".ipp": "cpp", ".tpp": "cpp", ".inl": "cpp",
    ".cs": "csharp",
    ".rb": "ruby", ".rake": "ruby", ".gemspec": "ruby",
    ".php": "php",
    ".kt": "kotlin", ".kts": "kotlin",
}
_NAME_LANG: dict[str, str] = {"rakefile": "ruby", "gemfile": "ruby"}

# C++ in a .h file: parse it with the C++ grammar, which reads plain C just as well.
_CPP_MARKERS = re.compile(rb"^\s*(?:class|namespace|template)\b|::|\bpublic:|\bprivate:", re.M)

# Definition queries. The capture that is not @name (or @recv) names the kind; "impl" marks a
# container that is not itself a symbol (its methods get its type as parent).
_DEF_QUERIES: dict[str, list[str]] = {
    "python": [
        "(function_definition name: (identifier) @name) @function",
        "(class_definition name: (identifier) @name) @class",
    ],
    "javascript": [
        "(function_declaration name: (identifier) @name) @function",
        "(generator_function_declaration name: (identifier) @name) @function",
        "(class_declaration name: (_) @name) @class",
        "(method_definition name: (_) @name) @function",
        "(variable_declarator name: (identifier) @name"
        " value: [(arrow_function) (function_expression) (generator_function)]) @function",
    ],
    "go": [
        "(function_declaration name: (identifier) @name) @function",
        "(method_declaration receiver: (parameter_list (parameter_declaration type: (_) @recv))"
        " name: (field_identifier) @name) @method",
        "(method_declaration name: (field_identifier) @name) @method",
        "(type_spec name: (type_identifier) @name type: (struct_type)) @struct",
        "(type_spec name: (type_identifier) @name type: (interface_type)) @interface",
        "(type_spec name: (type_identifier) @name) @type",
        "(type_alias name: (type_identifier) @name) @type",
    ],
    "rust": [
        "(function_item name: (identifier) @name) @function",
        "(function_signature_item name: (identifier) @name) @function",
        "(struct_item name: (type_identifier) @name) @struct",
        "(enum_item name: (type_identifier) @name) @enum",
        "(union_item name: (type_identifier) @name) @union",
        "(trait_item name: (type_identifier) @name) @trait",
        "(type_item name: (type_identifier) @name) @type",
        "(mod_item name: (identifier) @name body: (_)) @module",
        "(macro_definition name: (identifier) @name) @macro",
        "(impl_item type: (_) @name) @impl",
    ],
    "java": [
        "(class_declaration name: (identifier) @name) @class",
        "(interface_declaration name: (identifier) @name) @interface",
        "(enum_declaration name: (identifier) @name) @enum",
        "(record_declaration name: (identifier) @name) @record",
        "(annotation_type_declaration name: (identifier) @name) @interface",
        "(method_declaration name: (identifier) @name) @function",
        "(constructor_declaration name: (identifier) @name) @constructor",
    ],
    "c": [
        "(function_definition declarator: (_) @name) @function",
        "(struct_specifier name: (_) @name body: (_)) @struct",
        "(union_specifier name: (_) @name body: (_)) @union",
        "(enum_specifier name: (_) @name body: (_)) @enum",
        "(type_definition type: (struct_specifier !name body: (_)) declarator: (type_identifier) @name) @struct",
        "(type_definition type: (union_specifier !name body: (_)) declarator: (type_identifier) @name) @union",
        "(type_definition type: (enum_specifier !name body: (_)) declarator: (type_identifier) @name) @enum",
    ],
    "csharp": [
        "(class_declaration name: (_) @name) @class",
        "(interface_declaration name: (_) @name) @interface",
        "(struct_declaration name: (_) @name) @struct",
        "(enum_declaration name: (_) @name) @enum",
        "(record_declaration name: (_) @name) @record",
        "(record_struct_declaration name: (_) @name) @record",
        "(method_declaration name: (_) @name) @function",
        "(constructor_declaration name: (_) @name) @constructor",
        "(namespace_declaration name: (_) @name) @namespace",
        "(file_scoped_namespace_declaration name: (_) @name) @namespace",
    ],
    "ruby": [
        "(method name: (_) @name) @function",
        "(singleton_method name: (_) @name) @function",
        "(class name: (_) @name) @class",
        "(module name: (_) @name) @module",
    ],
    "php": [
        "(class_declaration name: (_) @name) @class",
        "(interface_declaration name: (_) @name) @interface",
        "(trait_declaration name: (_) @name) @trait",
        "(enum_declaration name: (_) @name) @enum",
        "(method_declaration name: (_) @name) @function",
        "(function_definition name: (_) @name) @function",
        "(namespace_definition name: (_) @name body: (_)) @namespace",
    ],
    "kotlin": [
        "(class_declaration (type_identifier) @name) @class",
        "(object_declaration (type_identifier) @name) @object",
        "(function_declaration (simple_identifier) @name) @function",
    ],
}
_DEF_QUERIES["typescript"] = _DEF_QUERIES["javascript"] + [
    "(abstract_class_declaration name: (_) @name) @class",
    "(interface_declaration name: (_) @name) @interface",
    "(type_alias_declaration name: (_) @name) @type",
    "(enum_declaration name: (_) @name) @enum",
    "(internal_module name: (_) @name) @namespace",
]
_DEF_QUERIES["tsx"] = _DEF_QUERIES["typescript"]
_DEF_QUERIES["cpp"] = _DEF_QUERIES["c"] + [
    "(class_specifier name: (_) @name body: (_)) @class",
    "(namespace_definition name: (_) @name) @namespace",
    "(type_definition type: (class_specifier !name body: (_)) declarator: (type_identifier) @name) @class",
]

# Identifier-like node kinds (those a grammar lacks are dropped when its query is built).
_IDENT_KINDS = (
    "identifier", "type_identifier", "field_identifier", "property_identifier",
    "shorthand_property_identifier", "shorthand_property_identifier_pattern",
    "private_property_identifier", "namespace_identifier", "package_identifier",
    "constant", "simple_identifier", "name",
)
# Identifier nodes that are really keywords or builtins of the language, never a reference.
_NOT_REFS = frozenset(
    "self cls this super Self true false True False None null nil undefined new var let const "
    "void int str bool float string object any".split()
)

_CLASSLIKE = frozenset("class struct interface trait impl enum record object union".split())
_CLASSLIKE_BY_LANG = {"ruby": _CLASSLIKE | {"module"}}
# Parents that belong to the definition's range (decorators, template<…>, export, const x = …).
_WRAP_ALWAYS = frozenset({"decorated_definition", "template_declaration", "export_statement"})
_WRAP_SINGLE = frozenset({"lexical_declaration", "variable_declaration", "type_declaration"})
# Siblings just above a definition that its chunk takes along: doc comments, attributes.
_LEADING = frozenset({"comment", "line_comment", "block_comment", "attribute_item", "decorator"})
_BODY_KINDS = frozenset(
    """block compound_statement declaration_list field_declaration_list class_body statement_block
    function_body body_statement interface_body enum_body constructor_body enum_variant_list
    enumerator_list""".split()
)
_DECLARATOR_WRAPPERS = frozenset(
    """function_declarator pointer_declarator reference_declarator parenthesized_declarator
    attributed_declarator array_declarator""".split()
)
_WS = re.compile(r"\s+")
_ALNUM = re.compile(r"[A-Za-z0-9]")


def language_of(path: str) -> str | None:
    """The tree-sitter language used for ``path``, or None when it is chunked by lines.

    ``.h`` says ``c``; :func:`extract` switches to ``cpp`` when the header's content is C++."""
    base = path.rsplit("/", 1)[-1].lower()
    dot = base.rfind(".")
    if dot > 0:
        lang = _EXT_LANG.get(base[dot:])
        if lang:
            return lang
    return _NAME_LANG.get(base)


def _detect(path: str, source: bytes) -> str | None:
    lang = language_of(path)
    if lang == "c" and path.lower().endswith(".h") and _CPP_MARKERS.search(source):
        return "cpp"
    return lang


_TS_CACHE: dict[str, Any] = {}


def _grammar(lang: str) -> tuple[Any, Any, Any] | None:
    """(parser, definitions query, identifiers query) for ``lang``, built once; None if unavailable."""
    if lang in _TS_CACHE:
        return _TS_CACHE[lang]
    try:
        from tree_sitter import Query
        from tree_sitter_language_pack import get_language, get_parser

        language = get_language(lang)  # type: ignore[arg-type]
        parser = get_parser(lang)  # type: ignore[arg-type]
        good = []
        for pattern in _DEF_QUERIES.get(lang, []):
            try:
                Query(language, pattern)
            except Exception:  # noqa: BLE001 - a node kind this grammar version lacks
                continue
            good.append(pattern)
        defs = Query(language, "\n".join(good)) if good else None
        kinds = [k for k in _IDENT_KINDS if language.id_for_node_kind(k, True)]
        idents = Query(language, "[" + " ".join(f"({k})" for k in kinds) + "] @id") if kinds else None
        result: tuple[Any, Any, Any] | None = (parser, defs, idents)
    except Exception:  # noqa: BLE001 - no grammar: the file is chunked by lines
        result = None
    _TS_CACHE[lang] = result
    return result


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Def:
    name: str
    kind: str
    start_byte: int
    end_byte: int
    start: int  # 1-based lines of the whole definition (decorators, export … included)
    end: int
    lead: int  # first line of its chunk: leading doc comments and attributes included
    signature: str
    emit: bool  # False for containers that are not symbols (a Rust impl block)
    parent: str | None = None  # set explicitly (Go receiver, C++ Foo::bar) or from nesting
    children: list[_Def] = field(default_factory=list)


def _end_line(node: Any) -> int:
    """1-based inclusive last line: a node ending at column 0 ends on the line before."""
    row, col = node.end_point
    start = node.start_point[0] + 1
    return max(start, row + 1 if col > 0 else row)


def _text(source: bytes, node: Any) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _type_name(source: bytes, node: Any) -> str:
    """The bare name of a type expression: ``*Server`` → Server, ``Point<T>`` → Point."""
    for _ in range(8):
        t = node.type
        if t in ("generic_type", "template_type", "reference_type"):
            nxt = node.child_by_field_name("type") or node.child_by_field_name("name")
        elif t in ("scoped_type_identifier", "qualified_identifier", "scoped_identifier"):
            nxt = node.child_by_field_name("name")
        elif t in ("pointer_type", "parenthesized_type", "qualified_type"):
            nxt = node.named_children[-1] if node.named_child_count else None
        else:
            break
        if nxt is None:
            break
        node = nxt
    return _text(source, node)


def _c_name(source: bytes, node: Any) -> tuple[str, str | None]:
    """A C/C++ function declarator's name and, for ``Foo::bar``, its scope ``Foo``."""
    for _ in range(16):
        if node.type not in _DECLARATOR_WRAPPERS:
            break
        nxt = node.child_by_field_name("declarator")
        if nxt is None:
            named = [c for c in node.named_children if c.type not in ("type_qualifier", "attribute")]
            nxt = named[0] if named else None
        if nxt is None:
            break
        node = nxt
    scope = None
    for _ in range(16):
        if node.type != "qualified_identifier":
            break
        s = node.child_by_field_name("scope")
        if s is not None:
            scope = _type_name(source, s)
        nxt = node.child_by_field_name("name")
        if nxt is None:
            break
        node = nxt
    return _text(source, node), scope


def _body(node: Any) -> Any:
    body = node.child_by_field_name("body")
    if body is not None:
        return body
    for c in node.named_children:
        if c.type in _BODY_KINDS:
            return c
    return None


def _signature(source: bytes, start_byte: int, node: Any) -> str:
    body = _body(node)
    if body is not None and body.start_byte > start_byte:
        end = body.start_byte
    else:
        end = source.find(b"\n", start_byte)
        if end < 0 or end > node.end_byte:
            end = node.end_byte
    end = min(end, start_byte + 4 * SIGNATURE_MAX)
    sig = _WS.sub(" ", source[start_byte:end].decode("utf-8", "replace")).strip()
    if node.type == "type_spec" and node.start_byte == start_byte:  # one of a `type ( … )` group
        sig = "type " + sig
    if sig.endswith("{"):
        sig = sig[:-1].rstrip()
    # Redact before trimming: a secret cut in half would no longer be recognised.
    return redact(sig)[:SIGNATURE_MAX].rstrip()


def _clean_name(name: str) -> str | None:
    name = _WS.sub(" ", name).strip()
    if not name or len(name) > 120:
        return None
    return redact(name)


def _lead_line(node: Any, start: int) -> int:
    """The first line of the doc comments / attributes directly above ``node`` (no blank line)."""
    lead = start
    prev = node.prev_sibling
    while prev is not None and prev.type in _LEADING and _end_line(prev) >= lead - 1:
        lead = prev.start_point[0] + 1
        prev = prev.prev_sibling
    return lead


def _definitions(lang: str, source: bytes, root: Any, query: Any) -> list[_Def]:
    from tree_sitter import QueryCursor

    best: dict[int, tuple[int, str, Any, Any, Any]] = {}
    for pattern, caps in QueryCursor(query).matches(root):
        kind = next((k for k in caps if k not in ("name", "recv")), None)
        if kind is None or "name" not in caps:
            continue
        node = caps[kind][0]
        prev = best.get(node.id)
        if prev is None or pattern < prev[0]:
            recv = caps.get("recv")
            best[node.id] = (pattern, kind, node, caps["name"][0], recv[0] if recv else None)

    defs: list[_Def] = []
    for _pattern, kind, node, name_node, recv in best.values():
        parent: str | None = None
        if node.type == "variable_declarator":  # const f = () => …: top-level ones only
            decl = node.parent
            if decl is None or decl.parent is None or decl.parent.type not in ("program", "export_statement"):
                continue
        if kind == "function" and lang in ("c", "cpp"):
            name, parent = _c_name(source, name_node)
            if parent is not None:
                kind = "method"
        elif kind == "impl":
            name = _type_name(source, name_node)
        elif recv is not None:
            name = _text(source, name_node)
            parent = _type_name(source, recv)
        else:
            name = _text(source, name_node)
        if kind in ("class", "struct", "union", "enum") and name_node.type in ("template_type", "generic_type"):
            name = _type_name(source, name_node)
        if lang == "kotlin" and kind == "class" and any(c.type == "interface" for c in node.children):
            kind = "interface"
        clean = _clean_name(name)
        if clean is None:
            continue
        # The definition's range takes in decorators, template<…>, export and `const x =`.
        outer = node
        sig_node = node
        while True:
            p = outer.parent
            if p is None:
                break
            if p.type in _WRAP_ALWAYS or (p.type in _WRAP_SINGLE and p.named_child_count == 1):
                outer = p
            else:
                break
        sig_start = node.start_byte if outer.type == "decorated_definition" else outer.start_byte
        start = outer.start_point[0] + 1
        end = _end_line(outer)
        defs.append(
            _Def(
                name=clean,
                kind=kind,
                start_byte=outer.start_byte,
                end_byte=outer.end_byte,
                start=start,
                end=end,
                lead=_lead_line(outer, start),
                signature=_signature(source, sig_start, sig_node),
                emit=kind != "impl",
                parent=parent,
            )
        )
    return defs


def _nest(lang: str, defs: list[_Def]) -> list[_Def]:
    """Give each definition its enclosing one (parent, method kind); returns the top level."""
    classlike = _CLASSLIKE_BY_LANG.get(lang, _CLASSLIKE)
    defs.sort(key=lambda d: (d.start_byte, -d.end_byte))
    top: list[_Def] = []
    stack: list[_Def] = []
    for d in defs:
        while stack and stack[-1].end_byte < d.end_byte:
            stack.pop()
        if stack:
            outer = stack[-1]
            outer.children.append(d)
            if d.parent is None:
                d.parent = outer.name
                if d.kind == "function" and outer.kind in classlike:
                    d.kind = "method"
        else:
            top.append(d)
        stack.append(d)
    return top


def _idents(source: bytes, root: Any, query: Any, defined: set[str]) -> Counter[str]:
    from tree_sitter import QueryCursor

    nodes = QueryCursor(query).captures(root).get("id", ())
    raw = Counter(source[n.start_byte : n.end_byte] for n in nodes)
    out: Counter[str] = Counter()
    for b, n in raw.items():
        if len(b) < 2 or len(b) > 100:
            continue
        try:
            s = b.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if s in defined or s in _NOT_REFS or not s.isidentifier():
            continue
        if len(s) >= 16 and redact(s) != s:
            continue  # an unquoted token is an identifier to the grammar
        out[s] += n
    return out


_WORDS = re.compile(r"[^\W\d]\w*|\$\w*")


def _split_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _redacted_lines(lines: list[str]) -> list[str]:
    """``lines`` with secrets redacted, one output line per input line.

    The whole file is redacted at once (a private key block is caught with its BEGIN line). A
    multi-line secret collapses into one marker; its lines are then re-aligned so line numbers
    stay true: the marker stays on the first line of the block, the others are left empty."""
    whole = "\n".join(lines)
    red = redact(whole)
    if red is whole or red == whole:
        return lines
    out = red.split("\n")
    if len(out) == len(lines):
        return out
    aligned: list[str] = []
    sm = difflib.SequenceMatcher(None, lines, out, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            aligned.extend(out[j1:j2])
        elif op == "delete":
            aligned.extend([""] * (i2 - i1))
        elif op == "insert":
            if aligned:
                aligned[-1] += " " + " ".join(out[j1:j2])
            else:
                aligned.append(" ".join(out[j1:j2]))  # cannot happen: redaction never adds lines first
        else:  # replace: i2-i1 source lines became j2-j1 redacted ones
            n, m = i2 - i1, j2 - j1
            if m <= n:
                aligned.extend(out[j1:j2])
                aligned.extend([""] * (n - m))
            else:
                aligned.extend(out[j1 : j1 + n - 1])
                aligned.append(" ".join(out[j1 + n - 1 : j2]))
    if len(aligned) != len(lines):  # never expected; fail closed rather than leak
        return [redact(ln) for ln in lines]
    return aligned


class _Chunker:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.out: list[Chunk] = []

    def emit(self, start: int, end: int, symbol: str | None) -> None:
        """Lines start..end (1-based) as one chunk, or several when over the character cap."""
        lines = self.lines
        start, end = self._trim(max(1, start), end)
        if end < start:
            return
        text = "\n".join(lines[start - 1 : end])
        if len(text) <= CHUNK_MAX_CHARS:
            if text.strip():
                self._add(start, end, symbol, text)
            return
        piece_start, size, buf = start, 0, []
        for no in range(start, end + 1):
            ln = lines[no - 1]
            if len(ln) > CHUNK_MAX_CHARS:
                ln = ln[:CHUNK_MAX_CHARS]
            if buf and size + len(ln) + 1 > CHUNK_MAX_CHARS:
                self._add_if(piece_start, no - 1, symbol, "\n".join(buf))
                piece_start, size, buf = no, 0, []
            buf.append(ln)
            size += len(ln) + 1
        if buf:
            self._add_if(piece_start, end, symbol, "\n".join(buf))

    def _trim(self, start: int, end: int) -> tuple[int, int]:
        """start..end without blank lines at either edge (end < start when nothing is left)."""
        lines = self.lines
        end = min(end, len(lines))
        while start <= end and not lines[start - 1].strip():
            start += 1
        while end >= start and not lines[end - 1].strip():
            end -= 1
        return start, end

    def _add_if(self, start: int, end: int, symbol: str | None, text: str) -> None:
        if text.strip():
            self._add(start, end, symbol, text)

    def _add(self, start: int, end: int, symbol: str | None, text: str) -> None:
        h = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()
        self.out.append(Chunk(start, end, symbol, text, h))

    def gap(self, start: int, end: int, symbol: str | None) -> None:
        """Code between definitions: blank edges trimmed, nothing if it has no word in it."""
        lines = self.lines
        start, end = self._trim(start, end)
        if end < start:
            return
        if not any(_ALNUM.search(lines[i]) for i in range(start - 1, end)):
            return  # closing braces, #endif-less punctuation
        for s in range(start, end + 1, GAP_LINES):
            self.emit(s, min(end, s + GAP_LINES - 1), symbol)

    def unit(self, d: _Def, lead: int) -> None:
        if d.end - d.start + 1 > CLASS_SPLIT_LINES and d.children:
            kids = d.children
            first = kids[0].lead
            self.emit(lead, max(d.start, first - 1), d.name)  # the class line and what precedes members
            covered = max(d.start, first - 1)
            for k in kids:
                if k.end <= covered:
                    continue  # on lines already taken (several definitions on one line)
                if k.lead > covered + 1:
                    self.gap(covered + 1, k.lead - 1, d.name)
                self.unit(k, max(k.lead, covered + 1) if k.start > covered else k.start)
                covered = max(covered, k.end)
            if d.end > covered:
                self.gap(covered + 1, d.end, d.name)
        else:
            self.emit(lead, d.end, d.name)

    def windows(self) -> None:
        n = len(self.lines)
        step = WINDOW_LINES - WINDOW_OVERLAP
        s = 1
        while s <= n:
            e = min(n, s + WINDOW_LINES - 1)
            before = len(self.out)
            self.emit(s, e, None)
            if before and len(self.out) == before + 1 and self.out[-1] == self.out[before - 1]:
                self.out.pop()  # blank-trimmed to the same lines as the previous window
            if e >= n:
                break
            s += step


def _line_chunks(lines: list[str]) -> list[Chunk]:
    ch = _Chunker(lines)
    ch.windows()
    return ch.out


_MARKDOWN = (".md", ".markdown", ".mdx")
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def markdown_headings(lines: list[str]) -> list[tuple[int, str]]:
    """(1-based line, text) of each ATX (``## Title``) or setext (``Title`` over ``===``) heading,
    outside fenced code blocks."""
    heads: list[tuple[int, str]] = []
    fence: str | None = None
    for i, ln in enumerate(lines, 1):
        m = _FENCE.match(ln)
        if m:
            mark = m.group(1)[0]
            fence = mark if fence is None else (None if mark == fence else fence)
            continue
        if fence is not None:
            continue
        h = _ATX.match(ln)
        if h:
            heads.append((i, h.group(2).strip()[:SIGNATURE_MAX]))
        elif (i < len(lines) and _SETEXT.match(lines[i]) and ln.strip() and not ln.startswith((" " * 4, "\t"))
              and not _ATX.match(ln) and not _SETEXT.match(ln)):
            heads.append((i, ln.strip()[:SIGNATURE_MAX]))
    return heads


def _markdown_chunks(lines: list[str]) -> list[Chunk]:
    """A document in sections: one chunk per heading (split further only when over the character
    cap), the heading as the chunk's symbol, so "queue limits" finds the section titled so."""
    heads = markdown_headings(lines)
    if not heads:
        return _line_chunks(lines)
    ch = _Chunker(lines)
    if heads[0][0] > 1:
        ch.emit(1, heads[0][0] - 1, None)
    for k, (no, title) in enumerate(heads):
        end = heads[k + 1][0] - 1 if k + 1 < len(heads) else len(lines)
        ch.emit(no, end, title)
    return ch.out


def _extract(path: str, source: bytes) -> tuple[str | None, list[Symbol], list[Chunk], Counter[str], int]:
    """extract() plus the language used and the file's line count."""
    lang = _detect(path, source)
    lines = _split_lines(source.decode("utf-8", "replace"))
    rlines = _redacted_lines(lines)
    grammar = _grammar(lang) if lang else None
    if grammar is None:
        chunker = _markdown_chunks if path.lower().endswith(_MARKDOWN) else _line_chunks
        return None, [], chunker(rlines), Counter(), len(lines)
    parser, dq, iq = grammar
    try:
        tree = parser.parse(source)
        root = tree.root_node
        defs = _definitions(lang, source, root, dq) if dq is not None else []
        top = _nest(lang, defs)
        defined = {d.name for d in defs}
        idents = _idents(source, root, iq, defined) if iq is not None else Counter()
    except Exception:  # noqa: BLE001 - a grammar failure must not stop indexing
        return lang, [], _line_chunks(rlines), Counter(), len(lines)
    # Names come from the raw source; keep only those still present once the file is redacted,
    # so a secret the grammar sees as an identifier (a bare token, a SID) is never stored.
    visible = set(_WORDS.findall("\n".join(rlines)))
    idents = Counter({k: v for k, v in idents.items() if k in visible})
    symbols = [
        Symbol(d.name, d.kind, d.parent, d.start, d.end, d.signature)
        for d in sorted(defs, key=lambda d: (d.start, d.end))
        if d.emit and all(w in visible for w in _WORDS.findall(d.name))
    ]
    ch = _Chunker(rlines)
    covered = 0
    for d in top:
        if d.end <= covered:
            continue  # on lines already taken (several definitions on one line)
        lead = max(d.lead, covered + 1) if d.start > covered else d.start
        if lead > covered + 1:
            ch.gap(covered + 1, lead - 1, None)
        ch.unit(d, lead)
        covered = max(covered, d.end)
    if covered < len(rlines):
        ch.gap(covered + 1, len(rlines), None)
    ch.out.sort(key=lambda c: (c.start_line, c.end_line))
    return lang, symbols, ch.out, idents, len(lines)


def extract(path: str, source: bytes) -> tuple[list[Symbol], list[Chunk], Counter[str]]:
    """Symbols, chunks and used identifiers of one file (pure: no I/O, never raises on bad code)."""
    _lang, symbols, chunks, idents, _n = _safe_extract(path, source)
    return symbols, chunks, idents


def _safe_extract(path: str, source: bytes) -> tuple[str | None, list[Symbol], list[Chunk], Counter[str], int]:
    try:
        return _extract(path, source)
    except Exception:  # noqa: BLE001 - one odd file must not stop indexing: chunk it by lines
        lines = _redacted_lines(_split_lines(source.decode("utf-8", "replace")))
        return None, [], _line_chunks(lines), Counter(), len(lines)


# --------------------------------------------------------------------------------------------
# The working tree
# --------------------------------------------------------------------------------------------


def _decode_path(raw: bytes) -> str | None:
    try:
        path = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None  # the store holds text; such names are vanishingly rare
    if not path or "\n" in path or path.endswith("/"):
        return None
    return path


def _wanted(path: str, ignore: IgnoreRules | None) -> bool:
    if is_secret_file(path) or redact(path) != path:  # a path with a secret in its name: nothing of it
        return False
    if path.rsplit("/", 1)[-1].lower() in _SKIP_NAMES:
        return False
    return not (ignore and ignore.ignored(path))


def _regular_size(root: Path, path: str) -> int | None:
    """The size of a regular file not over the cap, else None (gone, link, too big)."""
    try:
        st = os.lstat(root / path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
        return None
    return st.st_size


def _worktree_files(root: Path, ignore: IgnoreRules | None) -> dict[str, str]:
    """path → git blob id of every file to index (before the binary check)."""
    files: dict[str, str] = {}
    rehash: set[str] = set()
    for entry in run_git(root, "ls-files", "-z", "-s").split(b"\0"):
        if not entry:
            continue
        meta, _, raw = entry.partition(b"\t")
        parts = meta.split(b" ")
        if len(parts) != 3 or parts[0] in (b"160000", b"120000"):  # submodules, symlinks
            continue
        path = _decode_path(raw)
        if path is None or not _wanted(path, ignore):
            continue
        if parts[2] != b"0":  # a merge conflict: the work tree holds something else
            rehash.add(path)
        files[path] = parts[1].decode("ascii")
    status = run_git(root, "ls-files", "-z", "-t", "-m", "-d", "-o", "--exclude-standard")
    gone: set[str] = set()
    for entry in status.split(b"\0"):
        if len(entry) < 3:
            continue
        tag, raw = entry[:1], entry[2:]
        path = _decode_path(raw)
        if path is None:
            continue
        if tag == b"R":
            gone.add(path)
        elif tag == b"?":
            if _wanted(path, ignore):
                rehash.add(path)
        elif path in files:
            rehash.add(path)
    for path in gone:
        files.pop(path, None)
        rehash.discard(path)
    todo = [p for p in sorted(rehash) if _regular_size(root, p) is not None]
    for p in rehash.difference(todo):
        files.pop(p, None)
    # git unquotes a --stdin-paths line that starts with '"': hash such (rare) names here.
    quoted = [p for p in todo if p.startswith('"')]
    todo = [p for p in todo if not p.startswith('"')]
    if todo:
        out = run_git(root, "hash-object", "--stdin-paths", input="\n".join(todo).encode() + b"\n")
        hashes = out.decode("ascii").split()
        if len(hashes) != len(todo):
            raise RuntimeError("git hash-object returned an unexpected number of ids")
        files.update(zip(todo, hashes))
    for p in quoted:
        try:
            data = (root / p).read_bytes()
        except OSError:
            files.pop(p, None)
            continue
        files[p] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return files


def fts_values(path: str, symbol: str | None, text: str) -> tuple[str, str, str, str]:
    """The code_fts columns of one chunk. Used for insert and for 'delete' alike: a contentless
    FTS5 table removes an entry only when given exactly the values it was inserted with."""
    sym = symbol or ""
    return path, sym, text, code_terms(f"{path} {sym} {text}")


_FTS_INSERT = "INSERT INTO code_fts (rowid, path, symbol, text, terms) VALUES (?, ?, ?, ?, ?)"
_FTS_DELETE = (
    "INSERT INTO code_fts (code_fts, rowid, path, symbol, text, terms) VALUES ('delete', ?, ?, ?, ?, ?)"
)


def _delete_file(db: sqlite3.Connection, path: str) -> None:
    rows = db.execute("SELECT id, path, symbol, text FROM code_chunks WHERE path = ?", (path,)).fetchall()
    if rows:
        db.executemany(_FTS_DELETE, [(r[0], *fts_values(r[1], r[2], r[3])) for r in rows])
    db.execute("DELETE FROM code_chunks WHERE path = ?", (path,))
    db.execute("DELETE FROM code_symbols WHERE path = ?", (path,))
    db.execute("DELETE FROM code_idents WHERE path = ?", (path,))
    db.execute("DELETE FROM code_files WHERE path = ?", (path,))


@dataclass(slots=True)
class _Parsed:
    path: str
    hash: str
    lang: str | None
    size: int
    lines: int
    symbols: list[Symbol]
    chunks: list[Chunk]
    idents: Counter[str]


def _write(db: sqlite3.Connection, parsed: list[_Parsed], drop: Iterable[str], now: float) -> None:
    for path in drop:
        _delete_file(db, path)
    if not parsed:
        return
    next_id = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM code_chunks").fetchone()[0]) + 1
    files, symbols, chunks, fts, idents = [], [], [], [], []
    for p in parsed:
        files.append((p.path, p.hash, p.lang, p.size, p.lines, now))
        symbols.extend(
            (p.path, s.name, s.kind, s.parent, s.start_line, s.end_line, s.signature) for s in p.symbols
        )
        for c in p.chunks:
            chunks.append((next_id, p.path, c.start_line, c.end_line, c.symbol, c.text, c.hash))
            fts.append((next_id, *fts_values(p.path, c.symbol, c.text)))
            next_id += 1
        idents.extend((p.path, name, n) for name, n in p.idents.items())
    db.executemany(
        "INSERT INTO code_files (path, hash, lang, size, lines, indexed_at) VALUES (?, ?, ?, ?, ?, ?)", files
    )
    db.executemany(
        "INSERT INTO code_symbols (path, name, kind, parent, start_line, end_line, signature)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        symbols,
    )
    db.executemany(
        "INSERT INTO code_chunks (id, path, start_line, end_line, symbol, text, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
        chunks,
    )
    db.executemany(_FTS_INSERT, fts)
    db.executemany("INSERT INTO code_idents (path, ident, count) VALUES (?, ?, ?)", idents)


def rebuild_refs(db: sqlite3.Connection) -> None:
    """Recompute code_refs from code_idents and code_symbols (caller holds the transaction)."""
    db.execute("DELETE FROM code_refs")
    db.execute(
        f"""
        WITH defs AS (SELECT DISTINCT name, path FROM code_symbols),
             counts AS (SELECT name, COUNT(*) AS n FROM defs GROUP BY name HAVING n <= {MAX_DEFINERS})
        INSERT INTO code_refs (src, dst, weight)
        SELECT i.path, d.path, SUM(CAST(i.count AS REAL) / c.n)
        FROM code_idents AS i
        JOIN counts AS c ON c.name = i.ident
        JOIN defs AS d ON d.name = i.ident AND d.path != i.path
        GROUP BY i.path, d.path
        """
    )


def _clear(db: sqlite3.Connection) -> None:
    """Empty the whole code index (the extractor changed: everything is re-read)."""
    db.execute("INSERT INTO code_fts (code_fts) VALUES ('delete-all')")
    for table in ("code_refs", "code_idents", "code_chunks", "code_symbols", "code_files"):
        db.execute(f"DELETE FROM {table}")


def _state(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def index_worktree(
    db: sqlite3.Connection,
    root: Path,
    *,
    ignore: IgnoreRules | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IndexStats:
    """Bring the code index up to date with the working tree at ``root``; only files whose content
    hash changed are read. ``ignore`` defaults to ``root/.lmmignore``. ``progress(done, total)`` is
    called as files are processed (total: files whose content changed plus files gone).

    Writes one transaction per batch of files, then one rebuilding code_refs; a run interrupted
    between them leaves a flag in ``state`` so the next run rebuilds the refs even with nothing
    else to do."""
    from ..store.db import transaction

    t0 = time.perf_counter()
    root = Path(root)
    if ignore is None:
        ignore = IgnoreRules.load(root)
    current = _worktree_files(root, ignore)
    reset = _state(db, _VERSION_KEY) != INDEX_VERSION
    existing: dict[str, str] = (
        {} if reset else {r[0]: r[1] for r in db.execute("SELECT path, hash FROM code_files")}
    )
    todo = sorted(p for p, h in current.items() if existing.get(p) != h)
    gone = sorted(p for p in existing if p not in current)
    stale = reset or _state(db, _REFS_STALE_KEY) is not None
    total = len(todo) + len(gone)
    parsed_n = removed_n = done = 0

    # The code index is derived data: it may lose its last transactions on a power cut (WAL keeps it
    # consistent) rather than pay an fsync per batch.
    sync = db.execute("PRAGMA synchronous").fetchone()[0]
    if todo or gone or stale:
        db.execute("PRAGMA synchronous = NORMAL")
    try:
        first = True
        for b in range(0, max(len(todo), 1), BATCH_FILES):
            parsed: list[_Parsed] = []
            drop: list[str] = []
            for path in todo[b : b + BATCH_FILES]:
                item = _read_and_extract(root, path, current[path])
                if item is not None:
                    parsed.append(item)
                if path in existing:
                    drop.append(path)
                    removed_n += item is None
                done += 1
                if progress:
                    progress(done, total)
            if first:
                drop.extend(gone)
                removed_n += len(gone)
                done += len(gone)
            if parsed or drop or (first and reset):
                with transaction(db):
                    if first and reset:
                        _clear(db)
                        db.execute(
                            "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (_VERSION_KEY, INDEX_VERSION)
                        )
                    db.execute(
                        "INSERT OR REPLACE INTO state (key, value) VALUES (?, '1')", (_REFS_STALE_KEY,)
                    )
                    _write(db, parsed, drop, time.time())
                stale = True
                if first and gone and progress:
                    progress(done, total)
            parsed_n += len(parsed)
            first = False
        if stale:
            with transaction(db):
                rebuild_refs(db)
                db.execute("DELETE FROM state WHERE key = ?", (_REFS_STALE_KEY,))
    finally:
        if todo or gone or stale:
            db.execute(f"PRAGMA synchronous = {int(sync)}")

    files_n, symbols_n, chunks_n = db.execute(
        "SELECT (SELECT COUNT(*) FROM code_files), (SELECT COUNT(*) FROM code_symbols),"
        " (SELECT COUNT(*) FROM code_chunks)"
    ).fetchone()
    return IndexStats(
        files=files_n,
        parsed=parsed_n,
        removed=removed_n,
        symbols=symbols_n,
        chunks=chunks_n,
        seconds=time.perf_counter() - t0,
    )


def _read_and_extract(root: Path, path: str, blob: str) -> _Parsed | None:
    """Read and index one file; None when it is to be left out (gone, binary, too big)."""
    if _regular_size(root, path) is None:
        return None
    try:
        with open(root / path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_FILE_BYTES or b"\0" in data[:BINARY_PROBE]:
        return None
    lang, symbols, chunks, idents, nlines = _safe_extract(path, data)
    return _Parsed(path, blob, lang, len(data), nlines, symbols, chunks, idents)
