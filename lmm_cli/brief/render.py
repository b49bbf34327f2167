"""Render a brief: sections of lines, each line citing its evidence, within a token budget.

A line reaches the output only if every citation it makes was checked to exist (a commit in the
store and in git, a file in the working tree with the cited line, a note or an assistant session turn
in the store). Commits are
checked with git in one batch (``Verifier.check_commits``) for all a brief would cite. Lines are
added in priority order (sections in order, then lines in order) until the budget is spent, so a
small budget keeps the best of each section rather than the first section alone.

Every printed line is one line: control characters (a carriage return or escape in a commit
subject, a newline in a file name) and bidirectional overrides become spaces (``one_line``).
"""

from __future__ import annotations

import re
import sqlite3
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..address.recall import missing_commits

__all__ = ["Citation", "Line", "Section", "Verifier", "render", "one_line", "commits_cited"]

# C0 and C1 controls, DEL, Unicode line/paragraph separators and bidirectional embeddings, overrides
# and isolates: anything that could end a line or rearrange it on a terminal.
_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")


def one_line(text: str) -> str:
    """``text`` with every control character run (newline, carriage return, escape, bell…) and
    every bidirectional control replaced by a space: printed, it stays one line, shown as written."""
    return _BREAKING.sub(" ", text)


@dataclass(frozen=True)
class Citation:
    kind: str  # "commit" (ref = full sha), "file" (ref = path, line optional), "note" or "session" (ref = episode id)
    ref: str
    line: int | None = None
    label: str = ""  # how it is shown: short sha, path:line, note date

    def text(self) -> str:
        if self.label:
            return one_line(self.label)
        if self.kind == "commit":
            return self.ref[:7]
        if self.kind == "file":
            return one_line(f"{self.ref}:{self.line}" if self.line else self.ref)
        if self.kind == "session":
            return one_line(f"session {self.ref}")
        return one_line(f"note {self.ref}")


@dataclass
class Line:
    text: str  # markdown, without the citation suffix
    cites: list[Citation] = field(default_factory=list)

    def markdown(self) -> str:
        refs = ", ".join(f"`{c.text()}`" for c in self.cites)
        text = one_line(self.text)
        return f"- {text} ({refs})" if refs else f"- {text}"


@dataclass
class Section:
    title: str
    lines: list[Line] = field(default_factory=list)


def commits_cited(sections: Iterable[Section]) -> list[str]:
    """The commits the lines of ``sections`` cite, each once, in order."""
    return list(dict.fromkeys(c.ref for s in sections for ln in s.lines for c in ln.cites if c.kind == "commit"))


# Line counts of files read, by (resolved path, mtime, size, inode): a warm caller's next brief
# cites mostly the same files.
_LINES: dict[tuple[str, int, int, int], int] = {}
_LINES_KEPT = 4096


class Verifier:
    """Checks citations against the store, git and the working tree, caching what it learns."""

    def __init__(self, db: sqlite3.Connection, root: Path, *, known: dict[str, bool] | None = None) -> None:
        self.db = db
        self.root = root
        self._lines: dict[str, int | None] = {}
        self._root: Path | None = None  # the root, resolved once
        self._in_git: dict[str, bool] = dict(known or {})  # sha → git has it, as asked moments ago

    def check_commits(self, shas: Iterable[str]) -> set[str]:
        """Ask git once about every commit of ``shas`` not asked about yet; the ones among ``shas``
        git does not have (reset away and pruned). Call it with all the commits a brief would
        cite before rendering it: ``ok`` then answers from what was learnt."""
        shas = list(dict.fromkeys(shas))
        new = [s for s in shas if s not in self._in_git]
        if new:
            gone = missing_commits(self.root, new)
            for s in new:
                self._in_git[s] = s not in gone
        return {s for s in shas if not self._in_git[s]}

    def _file_lines(self, path: str) -> int | None:
        if path not in self._lines:
            self._lines[path] = self._count_lines(path)
        return self._lines[path]

    def _count_lines(self, path: str) -> int | None:
        """How many lines the file at ``path`` has now; None when it is not a file inside the root
        (gone, a folder, a link out of the repository). A file read once is read again only when
        its size, time or inode has changed."""
        try:
            if self._root is None:
                self._root = self.root.resolve()
            resolved = (self.root / path).resolve()
            if self._root not in resolved.parents:
                return None
            st = resolved.stat()
            if not stat.S_ISREG(st.st_mode):
                return None
            key = (str(resolved), st.st_mtime_ns, st.st_size, st.st_ino)
            n = _LINES.get(key)
            if n is None:
                with open(resolved, "rb") as f:
                    n = f.read().count(b"\n") + 1
                if len(_LINES) >= _LINES_KEPT:
                    _LINES.clear()
                _LINES[key] = n
            return n
        except OSError:
            return None

    def ok(self, c: Citation) -> bool:
        if c.kind == "commit":
            if c.ref not in self._in_git:
                self.check_commits([c.ref])  # not asked about in the batch: a batch of one
            return self._in_git[c.ref] and self.db.execute(
                "SELECT 1 FROM episodes WHERE source = ? AND kind IN ('commit', 'merge')", (c.ref,)
            ).fetchone() is not None
        if c.kind == "file":
            n = self._file_lines(c.ref)
            return n is not None and (c.line is None or 1 <= c.line <= n)
        if c.kind in ("note", "session"):
            return self.db.execute(
                "SELECT 1 FROM episodes WHERE id = ? AND kind = ? AND valid_to IS NULL", (c.ref, c.kind)
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
    # The title never takes more than a third of the budget: cut at a word, with an ellipsis.
    words = one_line(title).split(" ")
    head = f"# {' '.join(words)}\n"
    while len(words) > 1 and count(head) > budget // 3:
        words.pop()
        head = f"# {' '.join(words).rstrip(' …')} …\n"
    used = count(head)
    chosen: list[list[Line]] = [[] for _ in checked]
    # Round-robin by rank: the best line of every section before the second of any.
    depth = max(len(s.lines) for s in checked)
    for i in range(depth):
        for si, s in enumerate(checked):
            if i >= len(s.lines):
                continue
            cost = count(s.lines[i].markdown() + "\n") + (count(f"\n## {one_line(s.title)}\n") if not chosen[si] else 0)
            if used + cost > budget:
                continue
            chosen[si].append(s.lines[i])
            used += cost
    out = [head]
    printed: list[Section] = []
    for s, lines in zip(checked, chosen):
        if lines:
            out.append(f"\n## {one_line(s.title)}\n")
            out.extend(ln.markdown() + "\n" for ln in lines)
            printed.append(Section(s.title, lines))
    if not printed:
        text = f"{empty}\n"
        return text, count(text), []
    text = "".join(out)
    return text, count(text), printed
