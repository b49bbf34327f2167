"""`lmm watch`: keep the store up to date while you work, from file events (watchdog: inotify, FSEvents).

Two things are watched:

- the assistants' transcript folders (Claude Code ``projects/`` under ``$CLAUDE_CONFIG_DIR`` or
  ``~/.claude``/``~/.config/claude``; Codex ``sessions/`` under ``$CODEX_HOME`` or ``~/.codex``; aider's
  ``.aider.chat.history.md`` in the work tree): a transcript that changes is captured
  (``core.capture_sessions`` with that transcript, incremental by offset) after ``SESSION_DEBOUNCE``
  seconds. A folder that does not exist yet is waited for: its nearest existing parent is watched
  (not recursively) until it appears, and everything already in it is then captured. At start, and
  whenever a transcript folder appears, one catch-up capture reads every known transcript (as
  ``lmm ingest --sessions`` does, from the offsets stored): lines written while no watcher ran are
  in the store within seconds of the start, not when their file next changes.
- the working tree: edited files (``.git/``, the store, files git ignores and ``.lmmignore`` left out)
  become the store's activity signal (``core.record_activity``) after ``TREE_DEBOUNCE`` seconds of
  quiet, which recall's working-set channel reads. Only directories that are not ignored are
  watched (with inotify, one watch per directory: ``node_modules/``, ``.git/``, build output and the
  like would spend the user's watch limit and bring events that are thrown away). A directory that
  holds tracked files is watched even when an ignore pattern matches it. Directories made later are
  checked as they appear (``git check-ignore``), and watched when they are not ignored. This is
  done inside watchdog's own inotify watch group (``_PrunedObserver``); where that is not available
  (another platform, another watchdog) the whole tree is watched and ignored paths are dropped
  from the events.

One watcher per repository: it holds the store's ``watch`` lock (``WatchRunning`` otherwise). It
stops cleanly on SIGTERM or SIGINT. ``say`` is called with one dict per capture.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from ..errors import LmmError, StoreLocked
from ..store.lock import CaptureLock
from ..workspace import Workspace

__all__ = ["watch", "WatchRunning", "transcript_folders", "SESSION_DEBOUNCE", "TREE_DEBOUNCE"]

SESSION_DEBOUNCE = 0.5  # seconds a transcript is left to settle before it is read (writes come in bursts)
TREE_DEBOUNCE = 1.5     # seconds of quiet in the working tree before its edits are recorded
REPLAN = 2.0            # seconds between checks for transcript folders that appeared unseen
LOCK_WAIT = 10.0        # seconds to wait for the capture lock (a drainer) before trying again later


class WatchRunning(LmmError):
    def __init__(self, pid: str) -> None:
        super().__init__(f"another `lmm watch` is already running for this repository{f' (pid {pid})' if pid else ''}")


def transcript_folders(ws: Workspace) -> list[Path]:
    """The folders transcripts appear in, whether they exist yet or not."""
    from ..capture.sessions import codex

    env = os.environ.get("CLAUDE_CONFIG_DIR")
    home = Path.home()
    claude = [Path(env).expanduser()] if env else [home / ".claude", home / ".config" / "claude"]
    return [Path(os.path.abspath(d / "projects")) for d in claude] + [Path(os.path.abspath(codex.home() / "sessions"))]


def _pruned_observer(prune_for: Callable[[str], Callable[[list[bytes]], list[bool]] | None]) -> Any:
    """A watchdog observer whose recursive inotify watches leave out the directories
    ``prune_for(watch path)`` says to skip (a batch of directory paths → skip or not); an ordinary
    ``Observer`` where inotify or this watchdog's watch group is not there."""
    try:
        from watchdog.observers.api import BaseObserver
        from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
    except ImportError:  # not Linux
        return Observer()
    if not all(hasattr(InotifyWatchGroup, a) for a in ("_add_all_callbacks", "_add_callback")):
        return Observer()  # another watchdog: watch everything, filter the events

    class PrunedGroup(InotifyWatchGroup):
        """watchdog's group, walking the tree one level at a time and asking which subdirectories
        to leave out (a whole level at once, so one ``git check-ignore`` answers for it)."""

        prune: Callable[[list[bytes]], list[bool]] = staticmethod(lambda paths: [False] * len(paths))

        def _add_all_callbacks(self, path: bytes) -> None:
            if path != self.path and os.path.isdir(path) and self.prune([path])[0]:
                return  # a directory made or moved in that is ignored: no watch, nor below it
            self._add_callback(path)
            level = [path] if self.is_recursive and os.path.isdir(path) else []
            while level:
                children: list[bytes] = []
                for d in level:
                    try:
                        with os.scandir(d) as it:
                            children += [e.path for e in it if e.is_dir(follow_symlinks=False)]
                    except OSError:
                        continue
                level = [c for c, skip in zip(children, self.prune(children) if children else []) if not skip]
                for c in level:
                    self._add_callback(c)

    class PrunedEmitter(InotifyEmitter):
        def on_thread_start(self) -> None:
            prune = prune_for(self.watch.path)
            if prune is None:
                super().on_thread_start()
                return
            group = type("Group", (PrunedGroup,), {"prune": staticmethod(prune)})
            self._inotify = group(self._inotify_fd, os.fsencode(self.watch.path), is_recursive=self.watch.is_recursive,
                                  event_mask=self.get_event_mask_from_filter(),
                                  follow_symlink=self.watch.follow_symlink)

    return BaseObserver(emitter_class=PrunedEmitter)


def _nearest(path: Path) -> Path | None:
    for p in (path, *path.parents):
        if p.is_dir():
            return p
    return None


def _under(path: str, folder: Path) -> bool:
    f = str(folder)
    return path == f or path.startswith(f.rstrip(os.sep) + os.sep)


class _Events(FileSystemEventHandler):
    """watchdog's handler: every path event goes on a queue the main loop reads."""

    def __init__(self, q: queue.Queue[str]) -> None:
        self.q = q

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):  # reads change nothing
            return
        for p in (event.src_path, event.dest_path):
            if p:
                self.q.put(os.fsdecode(p))


class Watcher:
    def __init__(self, ws: Workspace, say: Callable[[dict[str, Any]], None]) -> None:
        self.ws = ws
        self.say = say
        self.root = Path(os.path.abspath(ws.repo.root))
        self.real_root = Path(os.path.realpath(ws.repo.root))
        self.store = os.path.realpath(ws.dir)
        self.q: queue.Queue[str] = queue.Queue()
        self.handler = _Events(self.q)
        self.observer = _pruned_observer(lambda path: self.skip_dirs if path == str(self.root) else None)
        self.folders = transcript_folders(ws)
        self.watched: dict[Path, Any] = {}      # transcript folder → its recursive watch
        self.waiting: dict[Path, Any] = {}      # parent of a missing folder → its watch
        self.stop = threading.Event()
        self.sessions: set[str] = set()
        self.catch_up = True  # the next capture reads every known transcript (at start, and when a folder appears)
        self.sessions_due = 0.0
        self.tracked_dirs: set[str] = set()  # directories that hold tracked files: watched whatever the ignores say
        self.lmmignore: Any = None
        self.tree: set[str] = set()
        self.tree_due = 0.0

    # -- the watches ---------------------------------------------------------------------------
    def plan(self) -> None:
        """Watch every transcript folder that exists; the nearest parent of those that do not."""
        want_parents: set[Path] = set()
        for folder in self.folders:
            if folder in self.watched:
                continue
            near = _nearest(folder)
            if near is None:
                continue
            if near == folder:
                try:
                    self.watched[folder] = self.observer.schedule(self.handler, str(folder), recursive=True)
                except OSError:
                    continue
                self._catch_up(folder)
            else:
                want_parents.add(near)
        for parent in list(self.waiting):
            if parent not in want_parents:
                self.observer.unschedule(self.waiting.pop(parent))
        for parent in want_parents - set(self.waiting):
            try:
                self.waiting[parent] = self.observer.schedule(self.handler, str(parent), recursive=False)
            except OSError:
                pass

    def _catch_up(self, folder: Path) -> None:
        """A folder that just appeared (or was there at start) may already hold transcripts: the
        next capture reads every known one, from the offsets stored."""
        self.catch_up = True
        self.sessions_due = time.monotonic()

    # -- which directories of the tree are watched ------------------------------------------------
    def load_tracked(self) -> None:
        from ..privacy.ignore import IgnoreRules

        self.lmmignore = IgnoreRules.load(self.ws.repo.root)
        out = self.ws.repo.git("ls-files", "-z", check=False).decode("utf-8", "surrogateescape")
        dirs: set[str] = set()
        for f in out.split("\0"):
            d = os.path.dirname(f)
            while d and d not in dirs:
                dirs.add(d)
                d = os.path.dirname(d)
        self.tracked_dirs = dirs

    def skip_dirs(self, paths: list[bytes]) -> list[bool]:
        """For each directory of the working tree in ``paths``: whether it goes unwatched (``.git``,
        the store, ignored by git or ``.lmmignore``, unless it holds tracked files)."""
        out: list[bool] = []
        ask: dict[str, int] = {}
        for i, raw in enumerate(paths):
            path = os.fsdecode(raw)
            rel = os.path.relpath(path, self.root).replace(os.sep, "/")
            if rel.startswith("../"):
                rel = os.path.relpath(path, self.real_root).replace(os.sep, "/")
            skip = (rel == ".git" or rel.startswith(".git/") or _under(os.path.realpath(path), Path(self.store)))
            if not skip and rel not in self.tracked_dirs:
                if self.lmmignore and self.lmmignore.ignored(rel + "/"):
                    skip = True
                else:
                    ask[rel] = i
            out.append(skip)
        if ask:
            try:
                res = self.ws.repo.git("check-ignore", "-z", "--stdin", check=False,
                                       input="\0".join(ask).encode("utf-8", "surrogateescape") + b"\0")
            except Exception:  # noqa: BLE001 - unsure: watch it (events are filtered again later)
                res = b""
            for rel in res.decode("utf-8", "surrogateescape").split("\0"):
                if rel.rstrip("/") in ask:
                    out[ask[rel.rstrip("/")]] = True
        return out

    # -- events ---------------------------------------------------------------------------------
    def route(self, path: str) -> None:
        now = time.monotonic()
        if any(_under(str(f), Path(path)) for f in self.folders if f not in self.watched):
            self.plan()  # a missing transcript folder, or a folder on the way to it, appeared
            return
        for folder in self.watched:
            if _under(path, folder):
                if path.endswith(".jsonl") and os.path.isfile(path):
                    self.sessions.add(path)
                    self.sessions_due = now + SESSION_DEBOUNCE
                return
        for root in (self.root, self.real_root):
            if _under(path, root):
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                break
        else:
            return
        if rel == ".git" or rel.startswith(".git/") or _under(os.path.realpath(path), Path(self.store)):
            return
        from ..capture.sessions.aider import HISTORY

        if os.path.basename(rel) == HISTORY:
            self.sessions.add(path)
            self.sessions_due = now + SESSION_DEBOUNCE
            return
        if os.path.isfile(path):
            self.tree.add(rel)
            self.tree_due = now + TREE_DEBOUNCE

    # -- captures -------------------------------------------------------------------------------
    def capture_sessions(self) -> None:
        from .. import core

        paths, self.sessions = sorted(self.sessions), set()
        every, self.catch_up = self.catch_up, False
        t0 = time.monotonic()
        try:
            # A catch-up reads every transcript found (the named ones among them), as `ingest --sessions`.
            out = core.capture_sessions(self.ws, transcripts=None if every else paths, wait=LOCK_WAIT)
        except StoreLocked:
            self.sessions.update(paths)  # a drainer holds the store: try again shortly
            self.catch_up = self.catch_up or every
            self.sessions_due = time.monotonic() + SESSION_DEBOUNCE
            return
        if out.get("files") or out.get("turns"):
            self.say({"event": "sessions", "transcripts": len(paths), "turns": out.get("turns", 0),
                      "corrections": out.get("corrections", 0), "seconds": round(time.monotonic() - t0, 3)})

    def record_tree(self) -> None:
        from .. import core

        paths, self.tree = sorted(self.tree), set()
        ignored: set[str] = set()
        out = self.ws.repo.git("check-ignore", "-z", "--stdin", input="\0".join(paths).encode() + b"\0", check=False)
        ignored = {p for p in out.decode("utf-8", "surrogateescape").split("\0") if p}
        kept = [p for p in paths if p not in ignored]
        if kept:
            recorded = core.record_activity(self.ws, kept, via="watch")
            if recorded:
                self.say({"event": "activity", "files": recorded})

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        self.load_tracked()
        self.observer.schedule(self.handler, str(self.root), recursive=True)
        self.plan()
        self.observer.start()
        self.say({"event": "watching", "repo": str(self.root),
                  "transcripts": [str(f) for f in self.folders if f in self.watched],
                  "waiting_for": [str(f) for f in self.folders if f not in self.watched]})
        next_plan = time.monotonic() + REPLAN
        try:
            while not self.stop.is_set():
                try:
                    self.route(self.q.get(timeout=0.2))
                    while True:
                        self.route(self.q.get_nowait())
                except queue.Empty:
                    pass
                now = time.monotonic()
                if now >= next_plan:  # a folder made while a parent watch was being moved
                    self.plan()
                    next_plan = now + REPLAN
                if (self.sessions or self.catch_up) and now >= self.sessions_due:
                    self.capture_sessions()
                if self.tree and now >= self.tree_due:
                    self.record_tree()
        finally:
            self.observer.stop()
            self.observer.join(timeout=5)


def watch(ws: Workspace, say: Callable[[dict[str, Any]], None]) -> int:
    """Watch until SIGTERM (returns 0) or SIGINT (returns 130). Raises ``WatchRunning`` when another
    watcher holds this repository."""
    lock = CaptureLock(ws.dir, "watch")
    if not lock.acquire(0):
        try:
            pid = lock.pidfile.read_text().split()[0]
        except (OSError, IndexError):
            pid = ""
        raise WatchRunning(pid)
    code = [0]
    w = Watcher(ws, say)

    def stop(signum: int, _frame: Any) -> None:
        code[0] = 130 if signum == signal.SIGINT else 0
        w.stop.set()

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        w.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        lock.release()
    return code[0]


def _line(ev: dict[str, Any]) -> str:
    if ev["event"] == "watching":
        waiting = f"; waiting for {', '.join(ev['waiting_for'])}" if ev["waiting_for"] else ""
        return f"watching {ev['repo']} and {len(ev['transcripts'])} transcript folder(s){waiting} (Ctrl-C stops)"
    if ev["event"] == "sessions":
        return (f"{time.strftime('%H:%M:%S')} sessions: {ev['turns']} new turn(s), {ev['corrections']} correction(s)"
                f" from {ev['transcripts']} transcript(s) in {ev['seconds']:.2f}s")
    return f"{time.strftime('%H:%M:%S')} active: {', '.join(ev['files'][:5])}" + (
        f" (+{len(ev['files']) - 5})" if len(ev["files"]) > 5 else "")


def main(argv: list[str] | None = None) -> int:
    """``python -m lmm_cli.jobs.watch STORE_DIR [--json]``: what ``lmm watch`` runs (in its own process)."""
    import json
    import sys

    from ..workspace import workspace_from_store

    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m lmm_cli.jobs.watch STORE_DIR [--json]", file=sys.stderr)
        return 2
    as_json = "--json" in argv[1:]

    def say(ev: dict[str, Any]) -> None:
        print(json.dumps(ev, ensure_ascii=False) if as_json else _line(ev), flush=True)

    try:
        return watch(workspace_from_store(Path(argv[0])), say)
    except LmmError as e:
        print(f"lmm: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # before the handlers were in place
        return 130


if __name__ == "__main__":
    import sys

    sys.exit(main())
