"""The repo-wide brief (`lmm brief`): what a CLAUDE.md would say, made from the store, all cited.

Seven sections, each line citing its evidence (a file, a file line, a commit, a note or a session turn), in the
order their lines are kept when the budget is tight (the best line of each before the second of any):

* Layout: the top-level folders (file counts, main languages, subfolders), each citing its most
  central file.
* Central modules: the files ranked by PageRank over the file reference graph (``code_refs``),
  with their main symbols; alike files (``error.rs`` in every crate) make one line.
* Conventions: the commit style of the history, where the tests live, and the tooling the config
  files in the tree set up (pyproject ``[tool.X]``, package.json scripts, Makefile targets,
  pre-commit hooks, CI workflows, other configs).
* Hot spots: the files changed and fixed most, over the whole history and the last 90 days
  (a fix: the subject says fix/bug/regression/crash/hotfix; a revert: it starts with "Revert").
* Recent direction: what the latest commits worked on (folders, subject words, new files).
* Open threads: unfinished work in the assistant sessions of the last ``THREAD_DAYS`` days (a
  question a session ended on without an answer, a failed command that never passed later in its
  session; ``threads``).
* Notes: the latest notes the user asked lmm to remember (and the corrections made in sessions).

Superseded commits (``valid_to`` set: amended or rebased away) are left out, and so are commits git
no longer has (reset away and pruned, which no hook reports): the commits a brief would cite are
checked with git in one batch, and when some are gone the sections are made again without them
(``RepoView.gone``), so they are neither cited nor counted. The history is read
with SQL aggregates; Python only touches bounded sets (the last 1,000 subjects, a few dozen files).
Time windows end now, or at the newest commit when the repository has been quiet for longer, so a
dormant repository still shows where it was heading. Without a code index the file list comes from
`git ls-files` (no central modules then).

``write_section`` keeps the brief in a marked section of a file such as CLAUDE.md, leaving what a
person wrote outside the markers byte-identical.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from .conventions import conventions_section
from .marked import MARK_BEGIN, MARK_END, write_section
from .reading import RepoView
from .render import Section, Verifier, commits_cited, render
from .sections import central_section, hot_spots_section, layout_section, notes_section, recent_section
from .threads import open_threads, threads_section
from .tokens import count_tokens

__all__ = ["BriefResult", "repo_brief", "write_section", "MARK_BEGIN", "MARK_END", "EMPTY"]

EMPTY = "No memory of this repository yet: run `lmm init`."
_ROUNDS = 3  # times the sections are made at most: again when git no longer has commits they cite
THREAD_DAYS = 30  # open threads older than this are history, not open


@dataclass
class BriefResult:
    markdown: str
    tokens: int
    sections: list[Section]
    read: list[str] = field(default_factory=list)  # what of the working tree it read (files, folders listed)
    on_disk: dict[str, bool] = field(default_factory=dict)  # what it asked of the working tree: a file or not


def repo_brief(db: sqlite3.Connection, root: Path, *, budget: int = 2000, now: float | None = None) -> BriefResult:
    """The repository's brief as cited markdown within ``budget`` tokens."""
    root = Path(root)
    now = time.time() if now is None else now
    known = db.execute(
        "SELECT EXISTS (SELECT 1 FROM episodes WHERE valid_to IS NULL) OR EXISTS (SELECT 1 FROM code_files)"
    ).fetchone()[0]
    sections: list[Section] = []
    read: set[str] = set()
    on_disk: dict[str, bool] = {}
    verifier = Verifier(db, root)
    if known:
        r = RepoView(db, root, now)
        threads = threads_section(open_threads(db, since=now - THREAD_DAYS * 86400.0))
        for _ in range(_ROUNDS):
            sections = [layout_section(r), central_section(r), conventions_section(r), hot_spots_section(r),
                        recent_section(r), threads, notes_section(r)]
            gone = verifier.check_commits(commits_cited(sections))
            if not gone - r.gone:
                break
            r.gone |= gone  # made again without them; what is still gone after the last round is dropped
        read, on_disk = r.read_paths, r.on_disk
    markdown, tokens, printed = render(
        f"Repository brief: {root.name}", sections, budget=budget, count=count_tokens,
        verify=verifier.ok, empty=EMPTY)
    return BriefResult(markdown=markdown, tokens=tokens, sections=printed, read=sorted(read),
                       on_disk=dict(sorted(on_disk.items())))
