"""`lmm watch`, for real: a subprocess on a real repository, real transcript files, real signals."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmm_cli.store.lock import lock_is_held

from conftest import commit_file, git, lmm, lmm_json, make_repo, store_dir

SID = "5b1c0e7a-0000-4000-8000-00000000beef"


def _claude_lines(cwd: str) -> list[dict]:
    base = {"sessionId": SID, "cwd": cwd, "gitBranch": "main", "version": "2.1.197", "isSidechain": False}
    return [
        {**base, "type": "user", "uuid": "u1", "timestamp": "2026-11-27T10:00:01.000Z",
         "message": {"role": "user", "content": "Fix the retry loop in src/mod1.py"}},
        {**base, "type": "assistant", "uuid": "x1", "timestamp": "2026-11-27T10:00:02.000Z",
         "message": {"role": "assistant", "content": [
             {"type": "tool_use", "id": "t1", "name": "Edit", "input": {"file_path": f"{cwd}/src/mod1.py",
                                                                         "old_string": "1", "new_string": "2"}},
             {"type": "text", "text": "Fixed the retry loop."}]}},
        {**base, "type": "user", "uuid": "u2", "timestamp": "2026-11-27T10:05:00.000Z",
         "message": {"role": "user", "content": "Thanks. Now the tests."}},
    ]


def _poll(what, timeout: float, every: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)


def test_watch_captures_transcripts_and_activity_one_watcher_at_a_time(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", commits=3)
    lmm("init", "--repo", str(repo))
    store = store_dir(repo)
    claude = tmp_path / "claude"  # its projects/ folder does not exist yet
    env = {**os.environ, "CLAUDE_CONFIG_DIR": str(claude), "CODEX_HOME": str(tmp_path / "codex")}
    w = subprocess.Popen([sys.executable, "-m", "lmm_cli", "watch", "--repo", str(repo), "--json"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert w.stdout is not None
        first = json.loads(w.stdout.readline())
        assert first["event"] == "watching" and str(claude / "projects") in first["waiting_for"]

        # A second watcher of the same repository is refused, in one line.
        second = lmm("watch", "--repo", str(repo), check=False, env=env)
        assert second.returncode == 1 and "already running" in second.stderr and len(second.stderr.splitlines()) == 1

        # The projects folder appears, then a transcript grows in it: its finished turn is in the store in 5 s.
        t0 = time.monotonic()
        path = claude / "projects" / "-repo" / f"{SID}.jsonl"
        path.parent.mkdir(parents=True)
        with open(path, "w") as f:
            for rec in _claude_lines(str(repo)):
                f.write(json.dumps(rec) + "\n")
        turns = _poll(lambda: lmm_json("log", "--repo", str(repo), "--kind", "session"), 10.0)
        took = time.monotonic() - t0
        assert turns and turns[0]["title"].startswith("Fix the retry loop"), turns  # type: ignore[index]
        assert took < 5.0, f"transcript → store took {took:.1f}s"
        print(f"transcript line → store: {took:.2f}s")

        # Editing a tracked file records it as active now; recall's working set ranks it above its peer.
        with open(repo / "src" / "mod0.py", "a") as f:
            f.write("# touched\n")

        def active() -> list:
            db = sqlite3.connect(store / "lmm.db")
            try:
                return db.execute("SELECT path, via FROM activity").fetchall()
            finally:
                db.close()

        t1 = time.monotonic()
        assert _poll(active, 20.0) == [("src/mod0.py", "watch")]
        print(f"edit → activity: {time.monotonic() - t1:.2f}s")
    finally:
        w.send_signal(signal.SIGTERM)
        try:
            rc = w.wait(timeout=10)
        except subprocess.TimeoutExpired:
            w.kill()
            raise
    out = w.stdout.read() if w.stdout else ""
    print(out)
    assert rc == 0, w.stderr.read() if w.stderr else ""
    assert not lock_is_held(store, "watch")


def _start(repo: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], dict]:
    w = subprocess.Popen([sys.executable, "-m", "lmm_cli", "watch", "--repo", str(repo), "--json"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert w.stdout is not None
    return w, json.loads(w.stdout.readline())


def _stop(w: subprocess.Popen[str]) -> str:
    w.send_signal(signal.SIGTERM)
    try:
        rc = w.wait(timeout=10)
    except subprocess.TimeoutExpired:
        w.kill()
        raise
    err = w.stderr.read() if w.stderr else ""
    assert rc == 0, err
    return w.stdout.read() if w.stdout else ""


def test_watch_catches_up_on_lines_written_while_it_was_not_running(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", commits=3)
    lmm("init", "--repo", str(repo))
    claude = tmp_path / "claude"
    env = {**os.environ, "CLAUDE_CONFIG_DIR": str(claude), "CODEX_HOME": str(tmp_path / "codex")}
    path = claude / "projects" / "-repo" / f"{SID}.jsonl"
    path.parent.mkdir(parents=True)
    lines = _claude_lines(str(repo))
    base = {k: lines[0][k] for k in ("sessionId", "cwd", "gitBranch", "version", "isSidechain")}
    more = [
        {**base, "type": "assistant", "uuid": "x2", "timestamp": "2026-11-27T10:05:30.000Z",
         "message": {"role": "assistant", "content": [{"type": "text", "text": "The tests pass."}]}},
        {**base, "type": "user", "uuid": "u3", "timestamp": "2026-11-27T10:06:00.000Z",
         "message": {"role": "user", "content": "Good. Commit it."}},
    ]
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in lines)
    # An earlier capture read the first turn; its byte offset is in the store.
    first = json.loads(lmm("ingest", "--repo", str(repo), "--sessions", "--json", env=env).stdout)["sessions"]
    assert first["turns"] == 1 and first["pending"] == 1, first
    # The session goes on while no watcher runs.
    with open(path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in more)

    # aider wrote its history in the work tree, never seen by lmm.
    (repo / ".aider.chat.history.md").write_text(
        "\n# aider chat started at 2026-11-27 11:00:00\n\n#### Rename f0 to first in src/mod0.py\n\n"
        "Renamed it.\n\n> Applied edit to src/mod0.py\n\n#### Now run the tests\n\n")

    w, ready = _start(repo, env)
    t0 = time.monotonic()  # from the moment it says it is watching
    try:
        assert str(claude / "projects") in ready["transcripts"]
        turns = _poll(lambda: len(lmm_json("log", "--repo", str(repo), "--kind", "session")) >= 3, 10.0)  # type: ignore[arg-type]
        took = time.monotonic() - t0
    finally:
        out = _stop(w)
    assert turns, out
    titles = sorted(t["title"] for t in lmm_json("log", "--repo", str(repo), "--kind", "session"))  # type: ignore[union-attr, index]
    # Each once: the first Claude turn is not read again, the second is read from the stored offset.
    assert titles == ["Fix the retry loop in src/mod1.py", "Rename f0 to first in src/mod0.py",
                      "Thanks. Now the tests."], titles
    assert took < 5.0, f"catch-up at start took {took:.1f}s"
    assert '"event": "sessions"' in out and '"turns": 2' in out, out


def _watched_inodes(pid: int) -> set[int]:
    """The inodes the process's inotify instances watch (``/proc/PID/fdinfo``)."""
    out: set[int] = set()
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) != "anon_inode:inotify":
                continue
            info = (Path(f"/proc/{pid}/fdinfo") / fd.name).read_text()
        except OSError:
            continue
        out |= {int(m, 16) for m in re.findall(r"^inotify wd:\S+ ino:([0-9a-f]+)", info, re.MULTILINE)}
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify watches are a Linux matter")
def test_watch_puts_no_watch_on_ignored_directories(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", commits=3)
    commit_file(repo, ".gitignore", "node_modules/\nbuild/\n*.log\n", "Ignore dependencies and build output")
    commit_file(repo, "vendor/keep/tracked.py", "X = 1\n", "A tracked file under a directory an ignore matches")
    commit_file(repo, ".gitignore", "node_modules/\nbuild/\n*.log\nvendor/\n", "Ignore vendor too")
    (repo / ".lmmignore").write_text("secrets/\n")
    for d in ("node_modules/left-pad/lib/deep", "node_modules/react/dist", "build/out/x", "secrets/prod",
              "src/pkg/sub", "docs/notes"):
        (repo / d).mkdir(parents=True, exist_ok=True)
    lmm("init", "--repo", str(repo))
    env = {**os.environ, "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"), "CODEX_HOME": str(tmp_path / "codex")}

    def inode(rel: str) -> int:
        return os.stat(repo / rel).st_ino

    w, _ = _start(repo, env)
    try:
        watched = _poll(lambda: _watched_inodes(w.pid) if inode("docs/notes") in _watched_inodes(w.pid) else set(), 10.0)
        for rel in (".", "src", "src/pkg", "src/pkg/sub", "docs", "docs/notes", "vendor", "vendor/keep"):
            assert inode(rel) in watched, f"{rel} is not watched"
        for rel in ("node_modules", "node_modules/left-pad", "node_modules/left-pad/lib/deep", "node_modules/react/dist",
                    "build", "build/out/x", "secrets", "secrets/prod", ".git", ".git/objects"):
            assert inode(rel) not in watched, f"{rel} is watched"

        # Directories made while it runs: watched when not ignored, not when ignored.
        (repo / "src" / "newpkg" / "inner").mkdir(parents=True)
        (repo / "node_modules" / "newdep" / "lib").mkdir(parents=True)
        (repo / "build" / "again").mkdir()
        assert _poll(lambda: inode("src/newpkg/inner") in _watched_inodes(w.pid), 10.0)
        now = _watched_inodes(w.pid)
        assert inode("src/newpkg") in now
        for rel in ("node_modules/newdep", "node_modules/newdep/lib", "build/again"):
            assert inode(rel) not in now, f"{rel} is watched"
        # …and a file edited in a new directory is seen.
        (repo / "src" / "newpkg" / "inner" / "mod.py").write_text("def g():\n    return 1\n")
        (repo / "node_modules" / "newdep" / "index.js").write_text("module.exports = 1\n")

        def active() -> list:
            db = sqlite3.connect(store_dir(repo) / "lmm.db")
            try:
                return db.execute("SELECT path FROM activity ORDER BY path").fetchall()
            finally:
                db.close()

        assert _poll(active, 20.0) == [("src/newpkg/inner/mod.py",)]
    finally:
        _stop(w)


def test_an_edit_under_watch_lifts_the_file_in_recall(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", commits=4)
    commit_file(repo, "src/upload/retry_a.py", "def retry_upload_a(n):\n    return n\n", "Add an upload retry helper")
    commit_file(repo, "src/upload/retry_b.py", "def retry_upload_b(n):\n    return n\n", "Add another upload retry helper")
    lmm("init", "--repo", str(repo))
    env = {**os.environ, "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"), "CODEX_HOME": str(tmp_path / "codex")}

    def ranked() -> list[str]:
        out = lmm_json("recall", "upload retry helper", "--repo", str(repo))
        return [f["path"] for f in out["files"]]  # type: ignore[index]

    assert ranked()[:2] == ["src/upload/retry_b.py", "src/upload/retry_a.py"]  # the newer one first
    before = lmm_json("recall", "upload retry helper", "--repo", str(repo))["files"][1]  # type: ignore[index]
    w, _ = _start(repo, env)
    try:
        # Edit retry_a and put it back as it was: git status is clean again, so only the watcher knows.
        f = repo / "src" / "upload" / "retry_a.py"
        text = f.read_text()
        f.write_text(text + "# trying something\n")
        time.sleep(0.3)
        f.write_text(text)
        assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
        lifted = _poll(lambda: ranked()[0] == "src/upload/retry_a.py", 20.0, every=0.5)
    finally:
        _stop(w)
    assert lifted, ranked()
    out = lmm_json("recall", "upload retry helper", "--repo", str(repo))
    top = out["files"][0]  # type: ignore[index]
    assert top["path"] == "src/upload/retry_a.py" and top["channels"]["recency"] > before["channels"]["recency"], top
    assert top["channels"]["lexical"] == before["channels"]["lexical"]  # the words did not change: the activity did
