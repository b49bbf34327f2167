"""Edit other tools' config files in place, so that taking lmm out again gives back the same bytes.

- JSON (``.claude/settings.json``, ``.mcp.json``, the hooks.json of Claude plugins, Codex and
  Cursor): the text is parsed with the position of every value (``parse``) and ``JsonEdit`` inserts
  lmm's members and items as text, in the file's own indentation and line endings; nothing else is
  re-serialised. Removal deletes the same text again, separator included, and gives an emptied
  container back its original inside (``{}`` or ``{ }``).
- Text blocks (Codex's ``config.toml`` table, the marked section of AGENTS.md): appended with one
  blank line before them, removed with it (``append_block``, ``remove_block``).
- Whole files lmm owns (a Cursor rule, aider's conventions file): written, and deleted on removal.

``Manifest`` keeps, per tool, what was done to each file (created or edited, the folders made, the
members and containers added), in ``integrations.json`` in the store, like ``hooks.json`` for the
git hooks. What it records is structure, never a copy of the user's file (which may hold secrets).
A file lmm created is deleted on removal when nothing but lmm's part was left in it; a folder it
created, once empty.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadInput

__all__ = ["Node", "parse", "JsonEdit", "read_text", "write_text", "make_dirs", "remove_dirs", "append_block",
           "remove_block", "newline_of", "JsonChange", "BlockChange", "FileChange", "apply_changes", "undo_changes",
           "Manifest"]

JsonPath = list[str]


# ---------------------------------------------------------------------------------------------
# files and folders

def read_text(path: Path) -> str | None:
    """The file's text, None when it does not exist. Bytes are kept as they are (no newline
    translation), so what is written back differs only where lmm changed it."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise BadInput(f"cannot edit {path}: it is not UTF-8 text; fix or move it, then run again") from None
    except IsADirectoryError:
        raise BadInput(f"cannot edit {path}: it is a folder, not a file") from None


def write_text(path: Path, text: str) -> None:
    """Write atomically, keeping the file's permission bits when it exists."""
    tmp = path.with_name(f".{path.name}.lmm-{os.getpid()}.tmp")
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def make_dirs(folder: Path) -> list[str]:
    """Create ``folder`` and its missing parents; the ones created, outermost first."""
    missing: list[Path] = []
    p = folder
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        d.mkdir()
    return [str(d) for d in reversed(missing)]


def remove_dirs(created: list[str]) -> None:
    """Remove the folders lmm created (innermost first), each only when empty."""
    for d in reversed(created):
        try:
            os.rmdir(d)
        except OSError:
            pass


def newline_of(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


# ---------------------------------------------------------------------------------------------
# JSON with positions

@dataclass
class Node:
    kind: str  # object | array | scalar
    start: int
    end: int  # one past the closing character
    members: list[tuple[str, int, Node]] = field(default_factory=list)  # (key, where the key starts, value)
    items: list[Node] = field(default_factory=list)


_WS = " \t\r\n"
_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in _WS:
            self.i += 1

    def value(self) -> Node:
        self.ws()
        s, start = self.s, self.i
        c = s[start] if start < len(s) else ""
        if c == "{":
            node = Node("object", start, start)
            self.i += 1
            self.ws()
            if s[self.i] == "}":
                self.i += 1
            else:
                while True:
                    self.ws()
                    key_at = self.i
                    key, self.i = json.decoder.scanstring(s, self.i + 1)  # type: ignore[attr-defined]
                    self.ws()
                    self.i += 1  # ':'
                    node.members.append((key, key_at, self.value()))
                    self.ws()
                    self.i += 1
                    if s[self.i - 1] == "}":
                        break
            node.end = self.i
            return node
        if c == "[":
            node = Node("array", start, start)
            self.i += 1
            self.ws()
            if s[self.i] == "]":
                self.i += 1
            else:
                while True:
                    node.items.append(self.value())
                    self.ws()
                    self.i += 1
                    if s[self.i - 1] == "]":
                        break
            node.end = self.i
            return node
        if c == '"':
            _, self.i = json.decoder.scanstring(s, start + 1)  # type: ignore[attr-defined]
            return Node("scalar", start, self.i)
        m = _SCALAR.match(s, start)
        if not m:
            raise ValueError(f"unexpected character at {start}")
        self.i = m.end()
        return Node("scalar", start, self.i)


def parse(text: str) -> Node:
    """The document's tree with positions. The text must be valid JSON (check with json.loads first)."""
    return _Parser(text).value()


def _line_indent(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    m = re.match(r"[ \t]*", text[start:])
    return m.group(0) if m else ""


def _indent_unit(text: str, root: Node) -> str:
    """The file's indentation step: how far the root's first member is indented (two spaces when
    the file does not say)."""
    first = root.members[0][1] if root.kind == "object" and root.members else (
        root.items[0].start if root.kind == "array" and root.items else None)
    if first is not None and "\n" in text[root.start:first]:
        unit = _line_indent(text, first)
        if unit:
            return unit
    return "  "


class JsonEdit:
    """One JSON file's text, edited in place. Paths are lists of object keys from the root."""

    def __init__(self, text: str, where: Path | str) -> None:
        self.where = where
        try:
            value = json.loads(text)
        except ValueError as e:
            raise BadInput(f"cannot add lmm to {where}: it is not valid JSON ({e}); fix it and run again") from None
        if not isinstance(value, dict):
            raise BadInput(f"cannot add lmm to {where}: it holds a JSON {type(value).__name__}, not an object")
        self.text = text
        self.nl = newline_of(text)
        self.unit = _indent_unit(text, parse(text))
        self.created: list[JsonPath] = []  # containers lmm added (removed again once empty)
        self.inners: dict[str, str] = {}  # what was inside a container that was empty before lmm wrote into it

    # -- reading --------------------------------------------------------------------------
    @property
    def value(self) -> Any:
        return json.loads(self.text)

    def get(self, path: JsonPath) -> Any:
        v: Any = self.value
        for k in path:
            if not isinstance(v, dict) or k not in v:
                return None
            v = v[k]
        return v

    def _node(self, path: JsonPath) -> Node | None:
        node: Node | None = parse(self.text)
        for k in path:
            if node is None or node.kind != "object":
                return None
            node = next((v for key, _, v in reversed(node.members) if key == k), None)  # the last one wins
        return node

    # -- rendering ------------------------------------------------------------------------
    def _render(self, value: Any, indent: str) -> str:
        out = json.dumps(value, indent=self.unit, ensure_ascii=False)
        return out.replace("\n", self.nl + indent)

    def _insert(self, container: Node, path: JsonPath, piece_key: str | None, value: Any) -> None:
        """Add a member (``piece_key``) to an object, or an item to an array, as its last entry."""
        t = self.text
        entries = [k for _, k, _ in container.members] if container.kind == "object" else [i.start for i in container.items]
        head = (json.dumps(piece_key, ensure_ascii=False) + ": ") if piece_key is not None else ""
        if entries:
            last = container.members[-1][2].end if container.kind == "object" else container.items[-1].end
            if "\n" in t[container.start:entries[0]]:
                ind = _line_indent(t, entries[-1])
                piece = "," + self.nl + ind + head + self._render(value, ind)
            else:  # written on one line: stay on one line
                piece = ", " + head + json.dumps(value, ensure_ascii=False)
            self.text = t[:last] + piece + t[last:]
            return
        inner = t[container.start + 1:container.end - 1]
        self.inners[json.dumps(path)] = inner
        one_line = "\n" not in t.strip() and re.sub(r"\s", "", t) != "{}"  # a minified file stays minified
        if one_line:
            body = head + json.dumps(value, ensure_ascii=False)
        else:
            base = _line_indent(t, container.start)
            ind = base + self.unit
            body = self.nl + ind + head + self._render(value, ind) + self.nl + base
        self.text = t[:container.start + 1] + body + t[container.end - 1:]

    def _container(self, path: JsonPath, kind: str, leaf: Any) -> tuple[Node | None, Any]:
        """The container at ``path`` (creating missing objects on the way, with ``leaf`` at the end).
        Returns (node, None) when it exists, else (None, what was inserted)."""
        for depth in range(len(path), -1, -1):
            node = self._node(path[:depth])
            if node is None:
                continue
            if depth == len(path):
                if node.kind != kind:
                    raise BadInput(f"cannot add lmm to {self.where}: {'.'.join(path)} is not a JSON {kind}")
                return node, None
            if node.kind != "object":
                raise BadInput(f"cannot add lmm to {self.where}: {'.'.join(path[:depth]) or 'the root'} is not an object")
            value: Any = leaf
            for k in reversed(path[depth + 1:]):
                value = {k: value}
            self._insert(node, path[:depth], path[depth], value)
            for d in range(depth + 1, len(path) + 1):
                self.created.append(path[:d])
            return None, value
        raise AssertionError("the root is always there")

    # -- adding ---------------------------------------------------------------------------
    def ensure_member(self, path: JsonPath, key: str, value: Any) -> str:
        """``path.key`` holds ``value``: "added", "same" (already there), or "kept" (something else is
        there under that name, and it is left alone)."""
        obj, _ = self._container(path, "object", {key: value})
        if obj is None:
            return "added"
        have = self.get(path)
        if key in have:
            return "same" if have[key] == value else "kept"
        self._insert(obj, path, key, value)
        return "added"

    def ensure_item(self, path: JsonPath, item: Any, ours: Callable[[Any], bool]) -> str:
        """The array at ``path`` holds ``item`` once: "added", "same", or "updated" (an older entry
        of lmm's was replaced)."""
        arr, _ = self._container(path, "array", [item])
        if arr is None:
            return "added"
        have = self.get(path)
        mine = [x for x in have if ours(x)]
        if mine == [item]:
            return "same"
        updated = bool(mine)
        if mine:
            self.remove_items(path, ours)
            arr = self._node(path)
            assert arr is not None
        self._insert(arr, path, None, item)
        return "updated" if updated else "added"

    # -- removing -------------------------------------------------------------------------
    def _delete(self, container: Node, path: JsonPath, index: int) -> None:
        t = self.text
        if container.kind == "object":
            starts = [k for _, k, _ in container.members]
            ends = [v.end for _, _, v in container.members]
        else:
            starts = [i.start for i in container.items]
            ends = [i.end for i in container.items]
        if len(starts) == 1:
            inner = self.inners.get(json.dumps(path), "")
            self.text = t[:container.start + 1] + inner + t[container.end - 1:]
        elif index > 0:  # from the end of the one before: ",\n    <entry>"
            self.text = t[:ends[index - 1]] + t[ends[index]:]
        else:  # the first of several: "<entry>,\n    "
            self.text = t[:starts[0]] + t[starts[1]:]

    def remove_items(self, path: JsonPath, ours: Callable[[Any], bool]) -> int:
        n = 0
        while True:
            arr = self._node(path)
            if arr is None or arr.kind != "array":
                return n
            values = self.get(path)
            hit = next((i for i, v in enumerate(values) if ours(v)), None)
            if hit is None:
                return n
            self._delete(arr, path, hit)
            n += 1

    def remove_member(self, path: JsonPath, key: str) -> bool:
        obj = self._node(path)
        if obj is None or obj.kind != "object":
            return False
        idx = [i for i, (k, _, _) in enumerate(obj.members) if k == key]
        if not idx:
            return False
        self._delete(obj, path, idx[-1])
        return True

    def prune(self, created: list[JsonPath]) -> None:
        """Remove the containers lmm created that are empty now, innermost first."""
        for p in sorted(created, key=len, reverse=True):
            v = self.get(p)
            if v in ({}, []) and p:
                self.remove_member(p[:-1], p[-1])


# ---------------------------------------------------------------------------------------------
# text blocks

def append_block(text: str | None, block: str) -> tuple[str, str]:
    """``text`` with ``block`` (no trailing newline) appended after one blank line; also the
    separator added to end the last line of a file that did not end with a newline."""
    if not text:
        return block + "\n", ""
    nl = newline_of(text)
    sep = "" if text.endswith("\n") else nl
    return text + sep + nl + block.replace("\n", nl) + nl, sep


def remove_block(text: str, begin: str, end: str, sep: str) -> str | None:
    """``text`` without the block from ``begin`` to ``end`` (inclusive) and what ``append_block``
    put around it (the newline after it, the blank line before it, ``sep``); None when the block
    is not there."""
    b = text.find(begin)
    e = text.find(end, b) if b >= 0 else -1
    if b < 0 or e < 0:
        return None
    e += len(end)
    nl = newline_of(text)
    if text.startswith(nl, e):
        e += len(nl)
    for piece in (nl, sep):
        if piece and text[:b].endswith(piece):
            b -= len(piece)
    return text[:b] + text[e:]


# ---------------------------------------------------------------------------------------------
# changes: what an integration wants in one file; applied, and undone from their record

Record = dict[str, Any]


@dataclass
class JsonChange:
    """lmm's members (``(object path, key, value)``) and array items (``(array path, item)``) in a JSON
    file. An item is lmm's when its JSON text contains ``marker``; a member lmm added is named in the
    record. A new file starts as ``{}``."""

    path: Path
    members: list[tuple[JsonPath, str, Any]] = field(default_factory=list)
    items: list[tuple[JsonPath, Any]] = field(default_factory=list)
    marker: str = "lmm hook "

    def apply(self, old: Record | None) -> tuple[str, Record | None]:
        old = old or {}
        text = read_text(self.path)
        created = bool(old.get("created")) or text is None
        dirs = list(old.get("dirs", []))
        if text is None:
            dirs += make_dirs(self.path.parent)
        ed = JsonEdit(text if text is not None else "{}\n", self.path)
        ed.created = [list(p) for p in old.get("created_paths", [])]
        ed.inners = dict(old.get("inners", {}))
        added = [list(p) for p in old.get("members", [])]
        kept = []
        for path, key, value in self.members:
            st = ed.ensure_member(path, key, value)
            if st == "added" and [*path, key] not in added:
                added.append([*path, key])
            elif st == "kept":
                kept.append(".".join([*path, key]))
        for path, item in self.items:
            ed.ensure_item(path, item, lambda x: self.marker in json.dumps(x))
        if text != ed.text:
            write_text(self.path, ed.text)
        status = "created" if text is None else "updated" if text != ed.text else "unchanged"
        if kept:
            status += f" (kept the {', '.join(kept)} already there)"
        return status, {"kind": "json", "created": created, "dirs": dirs, "members": added,
                        "arrays": [p for p, _ in self.items], "marker": self.marker,
                        "created_paths": ed.created, "inners": ed.inners}


def _undo_json(path: Path, rec: Record) -> str:
    text = read_text(path)
    if text is None:
        remove_dirs(rec.get("dirs", []))
        return "already gone"
    ed = JsonEdit(text, path)
    ed.inners = dict(rec.get("inners", {}))
    marker = rec.get("marker", "lmm hook ")
    for p in rec.get("arrays", []):
        ed.remove_items(p, lambda x: marker in json.dumps(x))
    for p in rec.get("members", []):
        ed.remove_member(p[:-1], p[-1])
    ed.prune(rec.get("created_paths", []))
    if rec.get("created") and ed.value == {}:
        path.unlink()
        remove_dirs(rec.get("dirs", []))
        return "deleted"
    if ed.text != text:
        write_text(path, ed.text)
        return "restored"
    return "unchanged"


@dataclass
class BlockChange:
    """A block of lines from ``begin`` to ``end`` appended to a text file (one blank line before it);
    run again, the block is refreshed in place. ``refuse(text)`` gives a reason to leave a file alone
    (its own entry of that name is there already); ``validate(text)`` raises when the result is not
    a valid file of its kind."""

    path: Path
    begin: str
    end: str
    body: str
    refuse: Callable[[str], str | None] | None = None
    validate: Callable[[str], None] | None = None

    def apply(self, old: Record | None) -> tuple[str, Record | None]:
        old = old or {}
        text = read_text(self.path)
        nl = newline_of(text or "")
        block = (self.begin + "\n" + self.body.strip("\n") + "\n" + self.end).replace("\n", nl)
        sep = old.get("sep", "")
        b = text.find(self.begin) if text is not None else -1
        e = text.find(self.end, b) if text is not None and b >= 0 else -1
        if text is not None and b >= 0 and e >= 0:
            new = text[:b] + block + text[e + len(self.end):]
        else:
            reason = self.refuse(text) if (self.refuse and text is not None) else None
            if reason:
                return f"left alone ({reason})", None
            new, sep = append_block(text, block)
        if self.validate:
            self.validate(new)
        dirs = list(old.get("dirs", []))
        if text is None:
            dirs += make_dirs(self.path.parent)
        if new != text:
            write_text(self.path, new)
        status = "created" if text is None else "updated" if new != text else "unchanged"
        return status, {"kind": "block", "created": bool(old.get("created")) or text is None, "dirs": dirs,
                        "begin": self.begin, "end": self.end, "sep": sep}


def _undo_block(path: Path, rec: Record) -> str:
    text = read_text(path)
    if text is None:
        remove_dirs(rec.get("dirs", []))
        return "already gone"
    new = remove_block(text, rec["begin"], rec["end"], rec.get("sep", ""))
    if new is None:
        return "unchanged"
    if rec.get("created") and not new.strip():
        path.unlink()
        remove_dirs(rec.get("dirs", []))
        return "deleted"
    write_text(path, new)
    return "restored"


@dataclass
class FileChange:
    """A whole file that is lmm's (it holds ``marker``). A file of another name's owner at that
    path is never overwritten."""

    path: Path
    text: str
    marker: str

    def apply(self, old: Record | None) -> tuple[str, Record | None]:
        old = old or {}
        have = read_text(self.path)
        if have is not None and self.marker not in have:
            raise BadInput(f"{self.path} is there already and is not lmm's; move it away and run again")
        dirs = list(old.get("dirs", []))
        if have is None:
            dirs += make_dirs(self.path.parent)
        if have != self.text:
            write_text(self.path, self.text)
        status = "created" if have is None else "updated" if have != self.text else "unchanged"
        return status, {"kind": "file", "created": True, "dirs": dirs, "marker": self.marker}


def _undo_file(path: Path, rec: Record) -> str:
    have = read_text(path)
    if have is None:
        remove_dirs(rec.get("dirs", []))
        return "already gone"
    if rec.get("marker", "") not in have:
        return "kept (it is no longer lmm's)"
    path.unlink()
    remove_dirs(rec.get("dirs", []))
    return "deleted"


UNDO: dict[str, Callable[[Path, Record], str]] = {"json": _undo_json, "block": _undo_block, "file": _undo_file}


def _key(path: Path, root: Path) -> str:
    """How a file is named in the record: from the repository root when inside it (a moved
    repository takes its store along), else absolute."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def _dirs_key(dirs: list[str], root: Path) -> list[str]:
    return [_key(Path(d), root) for d in dirs]


def _dirs_path(dirs: list[str], root: Path) -> list[str]:
    return [str(root / d) if not os.path.isabs(d) else d for d in dirs]


def apply_changes(changes: list[Any], root: Path, records: dict[str, Record]) -> list[dict[str, str]]:
    """Apply each change, recording in ``records`` (by file, updated in place as each file is
    written, so that a failure half way leaves a record of what was done); one report line per
    file. Records of files no longer among the changes stay: ``undo_changes`` takes those out too."""
    report = []
    for ch in changes:
        key = _key(ch.path, root)
        prev = dict(records.get(key) or {})
        if prev.get("dirs"):
            prev["dirs"] = _dirs_path(prev["dirs"], root)
        status, rec = ch.apply(prev or None)
        if rec is not None:
            rec["dirs"] = _dirs_key(rec.get("dirs", []), root)
            records[key] = rec
        report.append({"file": str(ch.path), "status": status})
    return report


def undo_changes(records: dict[str, Record], root: Path,
                 kinds: dict[str, Callable[[Path, Record], str]] | None = None) -> list[dict[str, str]]:
    """Take out what the records say lmm added, last file first (its folders may hold the others').
    ``kinds``: how to undo the records of changes defined elsewhere (aider's ``read:`` entry)."""
    undo = {**UNDO, **(kinds or {})}
    report = []
    for key, rec in reversed(list(records.items())):
        path = Path(key) if os.path.isabs(key) else root / key
        rec = {**rec, "dirs": _dirs_path(rec.get("dirs", []), root)}
        status = undo[rec["kind"]](path, rec)
        report.append({"file": str(path), "status": status})
    return report


# ---------------------------------------------------------------------------------------------
# the record of what lmm added

class Manifest:
    """``integrations.json`` in the store: per tool, per file, what lmm did."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.data = {"version": 1, "tools": {}}
        self.data.setdefault("tools", {})

    def tool(self, name: str) -> dict[str, Any]:
        return self.data["tools"].get(name) or {}

    def set_tool(self, name: str, entry: dict[str, Any] | None) -> None:
        if entry:
            self.data["tools"][name] = entry
        else:
            self.data["tools"].pop(name, None)

    def save(self) -> None:
        if not self.data["tools"]:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            return
        write_text(self.path, json.dumps(self.data, indent=2) + "\n")
