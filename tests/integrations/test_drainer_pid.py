"""A dead drainer never delays the next event: when its pid in drain.pid now belongs to another
process, or to a zombie, the hook starts a drainer at once instead of trusting `kill -0`."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from lmm_cli.store.lock import process_start

from conftest import commit_file, lmm, make_repo, shas_in_store, store_dir, wait_for_drain

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def _start(pid: int) -> str:
    return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split())[19]


@needs_proc
def test_a_pid_recycled_by_another_process_is_not_taken_for_a_drainer(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo))
    other = subprocess.Popen(["sleep", "120"])  # alive, and not a drainer
    try:
        # The pidfile a drainer killed long ago left: its pid now belongs to `sleep`.
        (store_dir(repo) / "drain.pid").write_text(f"{other.pid} 1\n")
        sha = commit_file(repo, "a.py", "a = 1\n", "Captured at once")
        wait_for_drain(repo, timeout=30)
        assert sha in shas_in_store(repo)
    finally:
        other.kill()
        other.wait()


@needs_proc
def test_a_zombie_drainer_is_not_taken_for_a_live_one(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo))
    zombie = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert process_start(zombie.pid) is None  # lmm's own reading agrees: gone
        (store_dir(repo) / "drain.pid").write_text(f"{zombie.pid} {_start(zombie.pid)}\n")
        sha = commit_file(repo, "b.py", "b = 1\n", "Captured despite the zombie")
        wait_for_drain(repo, timeout=30)
        assert sha in shas_in_store(repo)
    finally:
        zombie.wait()


@needs_proc
def test_a_live_drainer_is_trusted(tmp_path: Path) -> None:
    """The pidfile a running drainer writes names it with its start time: the hook starts no other."""
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo))
    store = store_dir(repo)
    me = subprocess.Popen(["sleep", "120"])  # stands in for a running drainer
    try:
        (store / "drain.pid").write_text(f"{me.pid} {_start(me.pid)}\n")
        commit_file(repo, "c.py", "c = 1\n", "Waits for the running drainer")
        time.sleep(1.5)
        assert len(list((store / "queue").glob("ev.*.q"))) == 1, "no second drainer was started"
    finally:
        me.kill()
        me.wait()
    (store / "drain.pid").unlink()
    commit_file(repo, "d.py", "d = 1\n", "The next commit starts one")
    wait_for_drain(repo, timeout=30)
