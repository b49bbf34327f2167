"""aider: a conventions file it reads at the start of every chat.

aider has no hooks and no MCP client: what lmm knows reaches it as a read-only file. ``.aider.lmm.md``
(lmm's own file; aider's ``.aider*`` ignore pattern keeps it out of git) holds how to ask lmm from the
chat (``/run lmm recall "…"``) and the session brief, rewritten after every capture while the
integration is installed (``core.after_capture``). ``.aider.conf.yml`` gets ``.aider.lmm.md`` in its
``read:`` list, edited as text so the rest of the file is untouched:

- no ``read:`` key: a ``read:`` list is appended;
- a block list (``read:`` then ``- a`` lines): one ``- .aider.lmm.md`` line after the last item;
- a flow list (``read: [a, b]``): ``, .aider.lmm.md`` before the ``]``;
- one file (``read: a``): it becomes ``read: [a, .aider.lmm.md]``, and the line is put back on removal.

aider's chat history (``.aider.chat.history.md``) is captured by ``lmm ingest --sessions``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadInput
from .merge import FileChange, Record, make_dirs, newline_of, read_text, remove_dirs, write_text

__all__ = ["CONVENTIONS", "ReadEntry", "changes", "conventions_text", "undo_read"]

CONVENTIONS = ".aider.lmm.md"
_KEY = re.compile(r"^read[ \t]*:[ \t]*(?P<rest>[^\r\n]*)(?P<nl>\r?\n|$)", re.M)
_ITEM = re.compile(r"^(?P<ind>[ \t]*)-[ \t]", re.M)


def conventions_text(mark: str, brief: str) -> str:
    body = (f"{mark}\n"
            "# What lmm remembers of this repository\n\n"
            "lmm keeps this repository's history, past sessions and notes. Ask it about a task with\n"
            "`/run lmm recall \"<task in a few words>\"` (files to look at, the commits that changed them and why);\n"
            "keep a decision or correction with `/run lmm remember \"<one sentence>\"`.\n"
            "This file is written by `lmm integrate aider` and refreshed after every capture.\n\n"
            f"{brief.strip()}\n")
    return body


def _validate(text: str, where: Path) -> None:
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # PyYAML is aider's, not lmm's: without it the check is skipped
        return
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BadInput(f"cannot add lmm to {where}: the result would not be valid YAML ({e}); "
                       "add `read: .aider.lmm.md` by hand") from None
    read = data.get("read") if isinstance(data, dict) else None
    if not (read == CONVENTIONS or (isinstance(read, list) and CONVENTIONS in read)):
        raise BadInput(f"cannot add lmm to {where}: its `read:` entry has a form lmm does not edit; "
                       "add .aider.lmm.md to it by hand")


@dataclass
class ReadEntry:
    """``.aider.lmm.md`` in the ``read:`` list of ``.aider.conf.yml``."""

    path: Path

    def apply(self, old: Record | None) -> tuple[str, Record | None]:
        old = old or {}
        text = read_text(self.path)
        if text is not None and CONVENTIONS in text:
            return ("unchanged", old) if old.get("mode") else ("unchanged (it already reads the file)", None)
        dirs = list(old.get("dirs", []))
        created = text is None
        if text is None:
            dirs += make_dirs(self.path.parent)
            text = ""
        nl = newline_of(text)
        m = _KEY.search(text)
        rec: Record = {"kind": "aider-read", "created": created or bool(old.get("created")), "dirs": dirs}
        if m is None:
            sep = "" if not text or text.endswith("\n") else nl
            added = f"{sep}read:{nl}  - {CONVENTIONS}{nl}"
            new = text + added
            rec.update(mode="appended", text=added)
        elif m.group("rest").strip() == "":  # a block list follows (or nothing)
            pos, end, ind = m.end(), m.end(), "  "
            for line in text[m.end():].splitlines(keepends=True):
                pos += len(line)
                item = _ITEM.match(line)
                if item:
                    ind, end = item.group("ind"), pos  # after the last item
                elif line.strip():
                    break
            if end == len(text) and not text.endswith("\n"):  # the last item ends the file
                text += nl
                end = len(text)
                rec["added_nl"] = True
            line = f"{ind}- {CONVENTIONS}{nl}"
            new = text[:end] + line + text[end:]
            rec.update(mode="item", text=line)
        else:
            rest = m.group("rest")
            value = rest.split(" #", 1)[0].rstrip()
            if value.startswith("[") and value.endswith("]"):
                inner = value[1:-1]
                piece = f", {CONVENTIONS}" if inner.strip() else CONVENTIONS
                at = m.start("rest") + rest.index(value) + len(value) - 1
                new = text[:at] + piece + text[at:]
                rec.update(mode="flow", text=piece)
            else:
                line = text[m.start():m.end("rest")]
                replaced = f"read: [{value}, {CONVENTIONS}]" + rest[len(value):]
                new = text[:m.start()] + replaced + text[m.end("rest"):]
                rec.update(mode="scalar", text=replaced, line=line)
        _validate(new, self.path)
        write_text(self.path, new)
        return ("created" if created else "updated"), rec


def undo_read(path: Path, rec: Record) -> str:
    text = read_text(path)
    if text is None:
        remove_dirs(rec.get("dirs", []))
        return "already gone"
    piece, mode = rec.get("text", ""), rec.get("mode")
    new = text
    if mode == "scalar":
        new = text.replace(piece, rec["line"], 1) if piece in text else text
    elif piece and piece in text:
        at = text.rfind(piece) if mode in ("appended", "item") else text.find(piece)
        new = text[:at] + text[at + len(piece):]
        if mode == "item" and rec.get("added_nl") and new.endswith(newline_of(new)) and at == len(new):
            new = new[:-len(newline_of(new))]
    if rec.get("created") and not new.strip():
        path.unlink()
        remove_dirs(rec.get("dirs", []))
        return "deleted"
    if new != text:
        write_text(path, new)
        return "restored"
    return "unchanged"


def changes(root: Path, mark: str, brief: str) -> list[Any]:
    return [FileChange(root / CONVENTIONS, conventions_text(mark, brief), mark),
            ReadEntry(root / ".aider.conf.yml")]

