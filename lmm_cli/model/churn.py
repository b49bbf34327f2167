"""Files that nearly every commit touches: changelogs, version files, lockfiles.

Such a file says nothing about *where* a task's work is — a commit that fixes a cookie parser and
one that adds a CLI flag both update ``CHANGES.rst`` — yet, counted as an answer, it is the easiest
one to get right: on a repository that keeps a changelog it takes rank 1 for most questions of the
replay, and a fit rewarded for it learns nothing. So replay leaves these files out of its gold
(``replay.held_out_full``) and the brief states them as a convention instead (``brief.conventions``):
"Many commits also update CHANGES.rst (30% of the last 500)".

A file is *chronic* when, among the latest ``WINDOW`` non-merge commits that touched any file, it
is touched by more than ``SHARE`` of them (and by at least ``MIN_TOUCHES``), or, for names that are
changelogs, lockfiles or version files by convention (``CHANGES*``, ``CHANGELOG*``, ``HISTORY*``,
``NEWS*``, ``*.lock``, ``package-lock.json``, ``VERSION`` …), by at least ``NAMED_SHARE`` of them (and
``NAMED_MIN_TOUCHES``). The general share is high on purpose: the central file of a small library
is touched by a quarter of its commits (click's ``core.py``: 24% of 500, cobra's ``command.go``:
25% of 150) and is exactly what a task is about. Renames are followed, so a changelog renamed from
``CHANGES`` to ``CHANGES.rst`` counts under its newer name.

Two entry points over the same rule: ``chronic_in`` over a list of commits' file sets (pure; replay
uses it on the history before its cut, so nothing after the cut is seen) and ``chronic`` /
``always_touched`` over a store.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["WINDOW", "SHARE", "MIN_TOUCHES", "NAMED_SHARE", "NAMED_MIN_TOUCHES", "Chronic", "conventional_name",
           "chronic_in", "always_touched_in", "chronic", "always_touched"]

WINDOW = 500  # the latest non-merge commits the shares are read from
SHARE = 0.40  # any file touched by more than this share of them
MIN_TOUCHES = 20  # … and by at least this many (a short history proves little)
NAMED_SHARE = 0.08  # a changelog, lockfile or version file: touched by at least this share
NAMED_MIN_TOUCHES = 5

# Base names that are changelogs, release notes, lockfiles or version files by convention.
_NAMED = re.compile(
    r"^(?:(?:changes|changelog|change_log|history|news|releases?|release[-_]notes|whatsnew)(?:[-_][\w-]*)?"
    r"(?:\.(?:md|rst|txt|adoc|markdown|mdx|org))?"
    r"|.+\.lock|package-lock\.json|npm-shrinkwrap\.json|pnpm-lock\.ya?ml|go\.sum|gemfile\.lock"
    r"|version(?:\.(?:txt|json|py|go|rb|ts|js))?|_version\.py|__version__\.py)$",
    re.IGNORECASE)


def conventional_name(path: str) -> bool:
    """Whether ``path``'s base name is a changelog, lockfile or version file by convention."""
    return bool(_NAMED.match(path.rsplit("/", 1)[-1]))


@dataclass(frozen=True)
class Chronic:
    """A file most commits touch: ``touches`` of the latest ``of`` non-merge commits."""
    path: str
    touches: int
    of: int
    named: bool  # a changelog, lockfile or version file by its name

    @property
    def share(self) -> float:
        return self.touches / self.of if self.of else 0.0


def _latest_name(path: str, renames: dict[str, str]) -> str:
    seen: set[str] = set()
    while path in renames and path not in seen:
        seen.add(path)
        path = renames[path]
    return path


def chronic_in(file_sets: Sequence[Collection[str]], renames: Iterable[tuple[str, str]] = (), *,
               window: int = WINDOW) -> list[Chronic]:
    """The chronic files of a history given as each commit's touched paths, oldest first (merges
    and commits with no file are skipped); ``renames`` (old, new), oldest first, map a path to
    the name it has at the end. Most-touched first."""
    forward: dict[str, str] = {}
    for old, new in renames:
        if old != new:
            forward[old] = new
    recent = [fs for fs in file_sets if fs][-window:] if window > 0 else []
    counts: Counter[str] = Counter()
    for fs in recent:
        counts.update({_latest_name(p, forward) for p in fs})
    n = len(recent)
    out = []
    for path, k in counts.items():
        named = conventional_name(path)
        if (k > SHARE * n and k >= MIN_TOUCHES) or (named and k >= NAMED_SHARE * n and k >= NAMED_MIN_TOUCHES):
            out.append(Chronic(path, k, n, named))
    return sorted(out, key=lambda c: (-c.touches, c.path))


def always_touched_in(file_sets: Sequence[Collection[str]], renames: Iterable[tuple[str, str]] = (), *,
                      window: int = WINDOW) -> set[str]:
    """The paths of ``chronic_in``."""
    return {c.path for c in chronic_in(file_sets, renames, window=window)}


def chronic(db: sqlite3.Connection, *, window: int = WINDOW) -> list[Chronic]:
    """The chronic files of a store's history: its latest ``window`` current non-merge commits
    (captured from every branch, as recall reads them), renames followed to today's names."""
    rows = db.execute(
        """WITH c AS (SELECT id, ts FROM episodes WHERE kind = 'commit' AND valid_to IS NULL
                      AND id IN (SELECT episode_id FROM episode_files)
                      ORDER BY ts DESC, id DESC LIMIT ?)
           SELECT c.id, f.path FROM c JOIN episode_files f ON f.episode_id = c.id
           ORDER BY c.ts, c.id""", (window,)).fetchall()
    sets: dict[int, set[str]] = {}
    for eid, path in rows:
        sets.setdefault(eid, set()).add(path)
    renames = db.execute(
        "SELECT f.old_path, f.path FROM episode_files f JOIN episodes e ON e.id = f.episode_id"
        " WHERE f.status = 'R' AND f.old_path IS NOT NULL AND e.valid_to IS NULL ORDER BY e.ts, e.id").fetchall()
    return chronic_in(list(sets.values()), [(o, n) for o, n in renames], window=window)


def always_touched(db: sqlite3.Connection, *, window: int = WINDOW) -> set[str]:
    """The paths of ``chronic`` for the store ``db``: files nearly every commit touches."""
    return {c.path for c in chronic(db, window=window)}
