"""Render a brief: sections of lines, each line citing its evidence, within a token budget.

A line reaches the output only if every citation it makes was checked to exist (a commit in the
store and in git, a file in the working tree with the cited line, a note in the store). Lines are
added in priority order (sections in order, then lines in order) until the budget is spent, so a
small budget keeps the best of each section rather than the first section alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Citation", "Line", "Section", "Verifier", "render"]


@dataclass(frozen=True)
class Citation:
    kind: str  # "commit" (ref = full sha), "file" (ref = path, line optional), "note" (ref = episode id)
    ref: str
    line: int | None = None
    label: str = ""  # how it is shown: short sha, path:line, note date

    def text(self) -> str:
        if self.label:
            return self.label
        if self.kind == "commit":
            return self.ref[:7]
        if self.kind == "file":
            return f"{self.ref}:{self.line}" if self.line else self.ref
        return f"note {self.ref}"


@dataclass
class Line:
    text: str  # markdown, without the citation suffix
    cites: list[Citation] = field(default_factory=list)

    def markdown(self) -> str:
        refs = ", ".join(f"`{c.text()}`" for c in self.cites)
        return f"- {self.text} ({refs})" if refs else f"- {self.text}"


@dataclass
class Section:
    title: str
    lines: list[Line] = field(default_factory=list)


class Verifier:
    """Checks citations against the store and the working tree, caching what it learns."""

    def __init__(self, db: sqlite3.Connection, root: Path) -> None:
        self.db = db
        self.root = root
        self._lines: dict[str, int | None] = {}

    def _file_lines(self, path: str) -> int | None:
        if path not in self._lines:
            p = (self.root / path)
            try:
                resolved = p.resolve()
                if self.root.resolve() not in resolved.parents or not p.is_file():
                    self._lines[path] = None
                else:
                    with open(p, "rb") as f:
                        self._lines[path] = f.read().count(b"\n") + 1
            except OSError:
                self._lines[path] = None
        return self._lines[path]

    def ok(self, c: Citation) -> bool:
        if c.kind == "commit":
            return self.db.execute(
                "SELECT 1 FROM episodes WHERE source = ? AND kind IN ('commit', 'merge')", (c.ref,)
            ).fetchone() is not None
        if c.kind == "file":
            n = self._file_lines(c.ref)
            return n is not None and (c.line is None or 1 <= c.line <= n)
        if c.kind == "note":
            return self.db.execute(
                "SELECT 1 FROM episodes WHERE id = ? AND kind = 'note'", (c.ref,)
            ).fetchone() is not None
        return False


def render(
    title: str,
    sections: list[Section],
    *,
    budget: int,
    count: Callable[[str], int],
    verify: Callable[[Citation], bool],
    empty: str,
) -> tuple[str, int, list[Section]]:
    """The brief as markdown, its token count, and the sections as printed.

    Lines without a citation, or with one that does not check out, are dropped. With nothing
    left, the brief is ``empty`` (a plain "no memory of that")."""
    checked: list[Section] = []
    for s in sections:
        kept = [ln for ln in s.lines if ln.cites and all(verify(c) for c in ln.cites)]
        if kept:
            checked.append(Section(s.title, kept))
    if not checked:
        text = f"{empty}\n"
        return text, count(text), []
    head = f"# {title}\n"
    used = count(head)
    chosen: list[list[Line]] = [[] for _ in checked]
    # Round-robin by rank: the best line of every section before the second of any.
    depth = max(len(s.lines) for s in checked)
    for i in range(depth):
        for si, s in enumerate(checked):
            if i >= len(s.lines):
                continue
            cost = count(s.lines[i].markdown() + "\n") + (count(f"\n## {s.title}\n") if not chosen[si] else 0)
            if used + cost > budget:
                continue
            chosen[si].append(s.lines[i])
            used += cost
    out = [head]
    printed: list[Section] = []
    for s, lines in zip(checked, chosen):
        if lines:
            out.append(f"\n## {s.title}\n")
            out.extend(ln.markdown() + "\n" for ln in lines)
            printed.append(Section(s.title, lines))
    if not printed:
        text = f"{empty}\n"
        return text, count(text), []
    text = "".join(out)
    return text, count(text), printed
