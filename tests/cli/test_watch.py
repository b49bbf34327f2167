"""`lmm watch`, for real: a subprocess on a real repository, real transcript files, real signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from lmm_cli.store.lock import lock_is_held

from conftest import lmm, lmm_json, make_repo, store_dir

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
