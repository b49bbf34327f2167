""".lmmignore: paths the user never wants captured, in gitignore syntax.

A repository may hold a ``.lmmignore`` at its root. Paths it matches (repo-
relative, ``/``-separated) are left out of capture entirely. Matching follows
git's own rules (via ``pathspec.GitIgnoreSpec``): comments, negation with
``!``, directory patterns ending in ``/``, anchoring with a leading ``/``,
``**``. A pattern that cannot be compiled is skipped rather than failing the
whole capture, and a missing or unreadable file simply ignores nothing.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable

import pathspec

__all__ = ["IgnoreRules", "IGNORE_FILE"]

IGNORE_FILE = ".lmmignore"


class IgnoreRules:
    """Compiled ``.lmmignore`` patterns. Falsy when there is nothing to match,
    so callers can skip the per-path check altogether."""

    __slots__ = ("_spec", "_count", "skipped")

    def __init__(self, spec: pathspec.GitIgnoreSpec | None, count: int, skipped: list[str]) -> None:
        self._spec = spec
        self._count = count
        #: patterns that were dropped because they did not compile (for diagnostics)
        self.skipped = skipped

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> IgnoreRules:
        good: list[str] = []
        skipped: list[str] = []
        count = 0
        for raw in lines:
            line = raw.rstrip("\r\n")
            try:
                # Compile each line alone first: pathspec raises on the first bad
                # pattern, and one typo must not switch off every other pattern.
                probe = pathspec.GitIgnoreSpec.from_lines([line])
            except Exception:  # noqa: BLE001 - pathspec and re raise several types
                skipped.append(line)
                continue
            good.append(line)
            count += sum(1 for p in probe.patterns if p.include is not None)
        if count == 0:
            return cls(None, 0, skipped)
        # Compile together so negations see the patterns before them, as in git.
        return cls(pathspec.GitIgnoreSpec.from_lines(good), count, skipped)

    @classmethod
    def load(cls, root: pathlib.Path) -> IgnoreRules:
        """Read ``root/.lmmignore``; missing or unreadable means no rules."""
        try:
            text = (pathlib.Path(root) / IGNORE_FILE).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return cls(None, 0, [])
        return cls.from_lines(text.splitlines())

    def ignored(self, path: str) -> bool:
        """Whether the repo-relative posix ``path`` (a file) is ignored."""
        if self._spec is None or not path:
            return False
        return self._spec.match_file(path.lstrip("/"))

    def __bool__(self) -> bool:
        return self._count > 0

    def __repr__(self) -> str:
        return f"IgnoreRules({self._count} patterns)"
