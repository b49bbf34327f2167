"""A tune stopped by SIGTERM or SIGINT removes its temporary worktree and temporary store; what a
`kill -9` leaves behind is removed by the next run (its temporary folders and `git worktree prune`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmm_cli.model.replay import TEMP_PREFIX

from conftest import git, lmm, store_dir


def temp_dirs(tmp: Path) -> list[Path]:
    return sorted(p for p in tmp.iterdir() if p.name.startswith(TEMP_PREFIX))


def worktrees(repo: Path) -> list[str]:
    return [line for line in git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def start_tune(repo: Path, tmp: Path, how: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TMPDIR": str(tmp)}
    if how == "job":
        cmd = [sys.executable, "-m", "lmm_cli.jobs.tune", str(store_dir(repo))]
    else:
        cmd = [sys.executable, "-m", "lmm_cli", "tune", "--repo", str(repo), "--no-embed"]
    # SIGINT as a terminal delivers it: a test run started in the background by a shell without job
    # control inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_temp_store(tmp: Path, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Until the tune has its worktree and has begun building its temporary store."""
    deadline = time.monotonic() + timeout
    while True:
        names = [p.name for p in temp_dirs(tmp)]
        if any(n.startswith(TEMP_PREFIX + "store-") for n in names) and len(names) >= 2:
            return
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the tune never got to its temporary store"
        time.sleep(0.02)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """80 commits that each change one of ten modules: enough held-out questions for a real fit."""
    r = tmp_path / "r"
    r.mkdir()
    git(r, "init", "-q")
    words = ["parser", "cache", "retry", "upload", "session", "config", "logging", "tokens", "queue", "render"]
    stream = []
    for i in range(80):
        k = i % 10
        body = "".join(f"def {words[k]}_{j}(x):\n    return x + {i * j}\n" for j in range(8)).encode()
        msg = f"Tune the {words[k]} step {i}\n".encode()
        stream += [b"commit refs/heads/main\n", b"committer T <t@example.com> %d +0000\n" % (1_700_000_000 + i * 60),
                   b"data %d\n%s" % (len(msg), msg), b"M 100644 inline src/%s.py\ndata %d\n%s\n" % (
                       words[k].encode(), len(body), body)]
    subprocess.run(["git", "fast-import", "--quiet"], cwd=r, input=b"".join(stream), check=True)
    git(r, "reset", "-q", "--hard", "main")
    lmm("init", "--repo", str(r), "--no-hooks")
    return r


@pytest.mark.parametrize("how, sig", [("job", signal.SIGTERM), ("job", signal.SIGINT), ("cli", signal.SIGTERM),
                                      ("cli", signal.SIGINT)])
def test_a_stopped_tune_removes_its_worktree_and_store(repo: Path, tmp_path: Path, how: str, sig: int) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = start_tune(repo, tmp, how)
    wait_for_temp_store(tmp, proc)
    assert len(worktrees(repo)) == 2
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert temp_dirs(tmp) == [], "the temporary worktree and store are removed"
    assert len(worktrees(repo)) == 1, "and the worktree is gone from git's list"
    if how == "job":
        assert proc.returncode == 0
        assert "stopped by a signal" in (store_dir(repo) / "logs" / "tune.log").read_text()
    else:
        assert proc.returncode == 130 and b"Traceback" not in err, err
    assert lmm("status", "--repo", str(repo)).returncode == 0


def test_leftovers_of_kill_9_are_pruned_by_the_next_run(repo: Path, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = start_tune(repo, tmp, "job")
    wait_for_temp_store(tmp, proc)
    proc.kill()
    proc.wait()
    left = temp_dirs(tmp)
    assert len(left) == 2 and len(worktrees(repo)) == 2  # what kill -9 leaves
    # A folder of a tune still running elsewhere is not touched.
    alive = tmp / f"{TEMP_PREFIX}busy"
    alive.mkdir()
    (alive / "owner").write_text(f"{os.getpid()} {Path(f'/proc/{os.getpid()}/stat').read_text().rsplit(')', 1)[1].split()[19]}\n"
                                 if Path("/proc/self/stat").exists() else f"{os.getpid()}\n")
    # The next run (here one that stops early: too few questions) removes them first.
    p = lmm("tune", "--repo", str(repo), "--holdout", "4", check=False, env={"TMPDIR": str(tmp)})
    assert "Traceback" not in p.stderr
    assert temp_dirs(tmp) == [alive]
    assert len(worktrees(repo)) == 1
