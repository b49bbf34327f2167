"""Extraction: a file's definitions (symbols), the identifiers it uses, and the chunks it is cut into
for search — tree-sitter where a grammar exists, markdown by section, other text by line windows.
Every chunk and signature is redacted here."""

from __future__ import annotations

import difflib
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..privacy.redact import redact
from .languages import detect as _detect
from .languages import grammar as _grammar

__all__ = ["Symbol", "Chunk", "extract", "safe_extract", "markdown_headings"]

CHUNK_MAX_CHARS = 4000
CLASS_SPLIT_LINES = 80  # a class (or impl, namespace…) longer than this is chunked by its members
GAP_LINES = 60  # code between definitions: pieces of at most this many lines
WINDOW_LINES = 60  # files without a grammar: windows of 60 lines…
WINDOW_OVERLAP = 10  # …each overlapping the previous by 10
SIGNATURE_MAX = 200

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
_LEADING = frozenset({"comment", "line_comment", "block_comment", "multiline_comment", "attribute_item",
                      "decorator"})
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



@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    kind: str  # function, method, class, struct, interface, enum, trait, type, module, …
    parent: str | None  # the enclosing definition's name (class/impl/struct for methods)
    start_line: int  # 1-based: the definition line (its name's), past decorators, attributes, doc comments
    end_line: int  # 1-based, inclusive: the end of the definition
    signature: str  # the definition's first line up to its body, whitespace-collapsed, redacted


@dataclass(frozen=True, slots=True)
class Chunk:
    start_line: int  # 1-based, inclusive
    end_line: int
    symbol: str | None  # the definition this chunk is (or is part of), if any
    text: str  # redacted
    hash: str  # sha1 hex of text





@dataclass(slots=True)
class _Def:
    name: str
    kind: str
    start_byte: int
    end_byte: int
    start: int  # 1-based lines of the whole definition (decorators, export … included)
    end: int
    lead: int  # first line of its chunk: leading doc comments and attributes included
    line: int  # the definition line itself: where its name is (past decorators, annotations, template<…>)
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


def _c_name(source: bytes, node: Any) -> tuple[str, str | None, Any]:
    """A C/C++ function declarator's name, for ``Foo::bar`` its scope ``Foo``, and the name's node."""
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
    return _text(source, node), scope, node


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


def _name_line(name_node: Any, node: Any) -> int:
    """The line a definition is cited by: its name's line (the ``def``/``fn``/``class`` line), not the
    decorator, annotation, attribute or ``template<…>`` line its range starts with. A C ``typedef
    struct { … } name;`` names its type after the body: it is cited by its ``typedef`` line."""
    row = name_node.start_point[0]
    if node.type == "type_definition" or not node.start_point[0] <= row <= node.end_point[0]:
        row = node.start_point[0]
    return row + 1


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
            name, parent, name_node = _c_name(source, name_node)
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
                line=_name_line(name_node, node),
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
        piece_start, size = start, 0
        buf: list[str] = []
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
    if grammar is None or lang is None:
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
        Symbol(d.name, d.kind, d.parent, d.line, d.end, d.signature)
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
    _lang, symbols, chunks, idents, _n = safe_extract(path, source)
    return symbols, chunks, idents


def safe_extract(path: str, source: bytes) -> tuple[str | None, list[Symbol], list[Chunk], Counter[str], int]:
    try:
        return _extract(path, source)
    except Exception:  # noqa: BLE001 - one odd file must not stop indexing: chunk it by lines
        lines = _redacted_lines(_split_lines(source.decode("utf-8", "replace")))
        return None, [], _line_chunks(lines), Counter(), len(lines)
