"""Capture git history into the store: backfill, incremental ingest, and hook events.

Every path into the store goes through ``capture_commits``: list the commits that are new (``git
rev-list`` from the wanted tips, minus the ancestry of tips already fully captured, minus commits
already stored), parse them oldest first, and write them in batches. A batch is one transaction, so
an interrupted backfill resumes where it stopped and nothing is stored twice.

History can also arrive *below* what was captured: `git fetch --unshallow` (or a deeper fetch),
grafts and `git replace` change which commits are reachable from the same tips. ``capture_history``
(init and ingest) notices it — the shallow boundary, the grafts and the replace refs are fingerprinted,
and the number of reachable commits is compared with what captures have accounted for — and then walks
the whole reachable history against what is stored instead of stopping at the captured tips. The
common case stays one `git rev-list` from the tips plus one `git rev-list --count`.

Objects the repository does not have (a partial clone, a lost blob) never stop a capture and are
never fetched: see ``gitlog.read_commits``.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..privacy.ignore import IgnoreRules
from ..privacy.redact import redact
from ..repo import run_git
from ..store.db import transaction
from ..store.episodes import Episode, EpisodeWriter, insert_episode, supersede
from ..workspace import Workspace
from .gitlog import RawCommit, Unavailable, read_commits, write_attributes

__all__ = ["IngestResult", "capture_commits", "capture_history", "commit_episode", "record_rewrite",
           "record_checkout", "set_state", "get_state"]

MAX_TIPS = 64
BATCH_COMMITS = 500
BATCH_SECONDS = 2.0

_FIX = re.compile(r"\b(fix(e[sd])?|bug|hotfix|regression|crash|broken|patch)\b", re.I)
_REVERT = re.compile(r"^revert\b|\bthis reverts commit\b", re.I | re.M)

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class IngestResult:
    new: int = 0  # commits captured by this run
    known: int = 0  # commits already in the store when the run started (of those walked)
    merges: int = 0
    shallow: bool = False
    seconds: float = 0.0
    missing: list[str] = field(default_factory=list)  # asked for, but not in the object database
    full_walk: bool = False  # the whole reachable history was compared with the store (history arrived)
    older: int = 0  # commits captured from below already captured tips (unshallow, grafts, replace)
    unavailable: Unavailable = field(default_factory=Unavailable)  # file versions without content here

    def as_dict(self) -> dict[str, Any]:
        return {"new": self.new, "known": self.known, "merges": self.merges, "shallow": self.shallow,
                "seconds": round(self.seconds, 3), "missing": self.missing, "full_walk": self.full_walk,
                "older": self.older,
                "unavailable": {"partial_clone": self.unavailable.partial_clone, "files": self.unavailable.files,
                                "commits": self.unavailable.commits}}


def get_state(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_state(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
               (key, value))


def commit_episode(c: RawCommit, capture: str) -> Episode:
    message = redact(c.message).strip()
    title, _, body = message.partition("\n")
    kind = "merge" if len(c.parents) > 1 else "commit"
    # Salience: how strongly this should count later. Reverts and fixes say what breaks; merges
    # mostly repeat the commits they join.
    salience = 0.5
    if kind == "merge":
        salience = 0.3
    elif _REVERT.search(message):
        salience = 0.8
    elif _FIX.search(title):
        salience = 0.7
    return Episode(
        kind=kind, source=c.sha, ts=float(c.commit_time), title=title.strip(), body=body.strip(),
        author=c.author, author_email=c.author_email,
        data={"parents": c.parents, "author_time": c.author_time, "committer": c.committer,
              "committer_email": c.committer_email},
        files=c.files, symbols=c.symbols, salience=salience,
        provenance={"capture": capture, "commits": [c.sha]},
    )


def _known(db: sqlite3.Connection, shas: list[str]) -> set[str]:
    known: set[str] = set()
    for i in range(0, len(shas), 500):
        chunk = shas[i:i + 500]
        q = ",".join("?" * len(chunk))
        known.update(r[0] for r in db.execute(
            f"SELECT source FROM episodes WHERE kind IN ('commit', 'merge') AND source IN ({q})", chunk))
    return known


def _rev_list(ws: Workspace, db: sqlite3.Connection, wanted: list[str], full: bool = False) -> list[str]:
    """Commits reachable from ``wanted`` and not from a fully captured tip (``full``: all of them),
    parents first."""
    tips = [] if full else [r[0] for r in db.execute("SELECT sha FROM tips ORDER BY ts DESC LIMIT ?", (MAX_TIPS,))]
    lines = [w for w in wanted if not w.startswith("-")] + [f"^{t}" for t in tips]
    flags = [w for w in wanted if w.startswith("-")]
    out = run_git(ws.repo.root, "rev-list", "--topo-order", "--reverse", "--ignore-missing", *flags, "--stdin",
                  input=("\n".join(lines) + "\n").encode())
    return out.decode().split()


def _resolve(ws: Workspace, refs: list[str]) -> list[str]:
    """The commit shas of ``refs`` that exist (HEAD and the local branches, or given shas)."""
    args = [r for r in refs]
    out = run_git(ws.repo.root, "rev-parse", "--revs-only", *args, check=False)
    shas = [s for s in out.decode().split() if re.fullmatch(r"[0-9a-f]{40,64}", s)]
    existing = run_git(ws.repo.root, "cat-file", "--batch-check=%(objectname) %(objecttype)",
                       input=("\n".join(shas) + "\n").encode(), check=False).decode().splitlines()
    return [line.split()[0] for line in existing if line.endswith(" commit")]


def capture_commits(
    ws: Workspace,
    db: sqlite3.Connection,
    wanted: list[str],
    *,
    capture: str,
    progress: Progress | None = None,
    full: bool = False,
) -> IngestResult:
    """Capture every commit reachable from ``wanted`` (shas, or HEAD/--branches) not yet stored.
    ``full``: look at the whole reachable history, not only what is new above the captured tips."""
    t0 = time.monotonic()
    result = IngestResult(shallow=ws.repo.shallow)
    tips = _resolve(ws, wanted)
    result.missing = [w for w in wanted if re.fullmatch(r"[0-9a-f]{40}", w) and w not in tips]
    if not tips:
        result.seconds = time.monotonic() - t0
        return result
    walked = _rev_list(ws, db, tips, full)
    known = _known(db, walked)
    todo = [s for s in walked if s not in known]
    result.known = len(known)
    result.full_walk = full
    cfg = ws.config().capture
    ignore = IgnoreRules.load(ws.repo.root)
    attributes = write_attributes(ws.attributes)
    if progress:
        progress(0, len(todo))
    done = 0
    pending = 0
    last = time.monotonic()
    writer = EpisodeWriter(db)
    with transaction(db) as tx:
        for c in read_commits(ws.repo.root, ws.repo.common_dir, todo, cfg, ignore, attributes, result.unavailable):
            if writer.add(commit_episode(c, capture)) is not None:
                result.new += 1
                result.merges += len(c.parents) > 1
            done += 1
            pending += 1
            if pending >= BATCH_COMMITS or time.monotonic() - last > BATCH_SECONDS:
                writer.flush()
                tx.checkpoint()
                pending, last = 0, time.monotonic()
                if progress:
                    progress(done, len(todo))
        writer.flush()
        if result.unavailable.files:
            _add_state(db, "unavailable_files", result.unavailable.files)
        if result.new:  # see capture_history: what captures accounted for, to notice history arriving
            _add_state(db, "reachable", result.new, only_if_set=True)
        # Only once everything below them is stored do the tips count as fully captured.
        now = time.time()
        db.executemany("INSERT OR REPLACE INTO tips (sha, ts) VALUES (?, ?)", [(t, now) for t in tips])
        db.execute("DELETE FROM tips WHERE sha NOT IN (SELECT sha FROM tips ORDER BY ts DESC LIMIT ?)", (MAX_TIPS,))
    if progress:
        progress(done, len(todo))
    result.seconds = time.monotonic() - t0
    return result


def _add_state(db: sqlite3.Connection, key: str, n: int, only_if_set: bool = False) -> None:
    old = get_state(db, key)
    if old is None and only_if_set:
        return
    try:
        base = int(old or 0)
    except ValueError:
        base = 0
    set_state(db, key, str(base + n))


def history_shape(ws: Workspace) -> str:
    """A fingerprint of what decides which commits are reachable besides the refs: the shallow
    boundary (``shallow``), grafts (``info/grafts``) and replace refs."""
    h = hashlib.sha256()
    for name in ("shallow", "info/grafts"):
        try:
            h.update(name.encode() + b"\0" + (ws.repo.common_dir / name).read_bytes() + b"\0")
        except OSError:
            pass
    h.update(run_git(ws.repo.root, "for-each-ref", "--format=%(refname) %(objectname)", "refs/replace/",
                     check=False))
    return h.hexdigest()


def _reachable(ws: Workspace, wanted: list[str]) -> int | None:
    out = run_git(ws.repo.root, "rev-list", "--count", "--ignore-missing", *wanted, check=False).strip()
    return int(out) if out.isdigit() else None


def capture_history(ws: Workspace, db: sqlite3.Connection, *, capture: str, progress: Progress | None = None) -> IngestResult:
    """HEAD and, by default, every local branch: the backfill and `lmm ingest`.

    Walks the whole reachable history (not only above the captured tips) when the history's shape
    changed since the last run, or when more commits are reachable than captures accounted for."""
    wanted = ["HEAD"]
    if ws.config().capture.branches == "local":
        wanted.append("--branches")
    has_head = ws.repo.head() is not None
    shape = history_shape(ws)
    # A store written before shapes were recorded gets one full walk too (history may have arrived).
    full = has_head and get_state(db, "history_shape") != shape and \
        db.execute("SELECT 1 FROM tips LIMIT 1").fetchone() is not None
    result = capture_commits(ws, db, wanted, capture=capture, progress=progress, full=full)
    count = _reachable(ws, wanted) if has_head else 0
    before = get_state(db, "reachable")
    if not full and count is not None and before is not None and before.isdigit() and count > int(before):
        # More commits reachable than captured: some arrived below what was captured.
        again = capture_commits(ws, db, wanted, capture=capture, progress=progress, full=True)
        result.new += again.new
        result.merges += again.merges
        result.full_walk = True
        result.unavailable.files += again.unavailable.files
        result.unavailable.commits += again.unavailable.commits
        result.unavailable.partial_clone |= again.unavailable.partial_clone
        result.seconds += again.seconds
    if result.full_walk and get_state(db, "reachable") is not None:
        result.older = result.new
    with transaction(db):
        set_state(db, "last_ingest", str(time.time()))
        set_state(db, "shallow", "1" if ws.repo.shallow else "0")
        set_state(db, "history_shape", shape)
        if count is not None:
            set_state(db, "reachable", str(count))
        if result.unavailable.partial_clone:
            set_state(db, "partial_clone", "1")
    return result


def record_rewrite(db: sqlite3.Connection, event_id: str, kind: str, pairs: Iterable[tuple[str, str]], ts: float) -> None:
    """Link old shas to new ones after an amend or rebase and mark the old commits superseded."""
    pairs = list(pairs)
    if not pairs:
        return
    n = len(pairs)
    title = (f"{kind}: {pairs[0][0][:7]} → {pairs[0][1][:7]}" if n == 1
             else f"{kind} rewrote {len({o for o, _ in pairs})} commits into {len({nw for _, nw in pairs})}")
    insert_episode(db, Episode(
        kind="rewrite", source=event_id, ts=ts, title=title, data={"kind": kind, "pairs": pairs},
        salience=0.2, provenance={"capture": "hook", "commits": sorted({s for p in pairs for s in p})},
    ))
    for old, new in pairs:
        db.execute("INSERT OR IGNORE INTO rewrites (old_sha, new_sha, kind, ts) VALUES (?, ?, ?, ?)", (old, new, kind, ts))
        supersede(db, old, new, ts)


def record_checkout(db: sqlite3.Connection, event_id: str, prev: str, new: str, ref: str, worktree: str, ts: float) -> None:
    branch = redact(ref[len("refs/heads/"):]) if ref.startswith("refs/heads/") else None
    worktree = redact(worktree)
    title = f"checkout {branch}" if branch else f"checkout detached at {new[:7]}"
    insert_episode(db, Episode(
        kind="checkout", source=event_id, ts=ts, title=title,
        data={"from": prev, "to": new, "branch": branch, "worktree": worktree},
        tier="sensory", salience=0.2, provenance={"capture": "hook", "commits": [new]},
    ))
