"""Tried as a new user would: every mistake and every hostile environment ends in one line on stderr
that says how to fix it, with exit 1 (2 for a bad argument) — never a traceback.

The full-disk and read-only cases run lmm on a real file system that is full or read-only: a tmpfs
mounted in a private mount namespace (``unshare``), which needs no root where unprivileged user
namespaces are allowed. Where they are not, those tests are skipped with the reason shown.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import commit_file, git, lmm, make_repo, store_dir


def one_line_error(p: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmm: "), p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _namespaces_work() -> str | None:
    """None when `unshare -rm` can mount a tmpfs here, else why not."""
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    p = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>&1 || "
                        "mount -t tmpfs -o size=64k tmpfs /tmp 2>&1"], capture_output=True, text=True)
    return None if p.returncode == 0 else f"no private mount namespace here: {(p.stderr or p.stdout).strip()}"


NS = _namespaces_work()
needs_ns = pytest.mark.skipif(NS is not None, reason=f"full-disk and read-only tests: {NS}")


def in_namespace(setup: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``setup`` (mounts) then ``lmm ARGS`` inside a private user + mount namespace."""
    cmd = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "lmm_cli", *args])
    return subprocess.run(["unshare", "-rm", "sh", "-c", f"set -e; {setup}; exec {cmd}"], capture_output=True,
                          text=True, env=os.environ.copy())


# --------------------------------------------------------------------------- where the store lives


def test_lmm_home_pointing_at_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "r")
    home = tmp_path / "not-a-folder"
    home.write_text("oops")
    monkeypatch.setenv("LMM_HOME", str(home))
    one_line_error(lmm("init", "--repo", str(repo), check=False), 1, "LMM_HOME", "is a file")
    one_line_error(lmm("status", "--repo", str(repo), check=False), 1, "lmm init")


@needs_ns
def test_lmm_home_on_a_read_only_file_system(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    home = Path(os.environ["LMM_HOME"])
    home.mkdir(parents=True)
    p = in_namespace(f"mount -t tmpfs -o size=1m,ro tmpfs {shlex.quote(str(home))}", "init", "--repo", str(repo))
    one_line_error(p, 1, "cannot write the store", "LMM_HOME")


@needs_ns
def test_a_full_disk_during_init_says_so(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=2)
    for i in range(40):  # enough history that the store outgrows a 256 KB disk
        commit_file(repo, f"pkg/m{i}.py", "".join(f"def f{i}_{j}(x):\n    return x + {j}\n" for j in range(60)),
                    f"Add module m{i} with sixty small functions")
    home = Path(os.environ["LMM_HOME"])
    home.mkdir(parents=True)
    p = in_namespace(f"mount -t tmpfs -o size=256k tmpfs {shlex.quote(str(home))}",
                     "init", "--repo", str(repo), "--no-hooks", "--no-embed")
    line = one_line_error(p, 1, "no space left", "lmm ingest")
    assert "rollback" not in line and "no transaction" not in line


@needs_ns
def test_init_and_hooks_uninstall_on_a_read_only_store(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo))
    store = store_dir(repo)
    hooks_before = {p.name: p.read_bytes() for p in (repo / ".git" / "hooks").iterdir()}
    ro = f"mount --bind {shlex.quote(str(store))} {shlex.quote(str(store))}; " \
         f"mount -o remount,bind,ro {shlex.quote(str(store))}"
    commit_file(repo, "src/late.py", "x = 1\n", "A commit to capture")
    one_line_error(in_namespace(ro, "init", "--repo", str(repo)), 1, "cannot write the store")
    one_line_error(in_namespace(ro, "hooks", "uninstall", "--repo", str(repo)), 1, "cannot write the store")
    # Nothing was half done: the hooks are still installed, exactly as they were.
    assert {p.name: p.read_bytes() for p in (repo / ".git" / "hooks").iterdir()} == hooks_before
    # Even reading needs a writable store (SQLite's WAL keeps its index beside the database): one line.
    one_line_error(in_namespace(ro, "status", "--repo", str(repo)), 1, "cannot write the store")


# --------------------------------------------------------------------------- arguments


def test_log_with_a_huge_count_shows_everything(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=3)
    lmm("init", "--repo", str(repo), "--no-hooks")
    p = lmm("log", "--repo", str(repo), "-n", "99999999999999999999", check=False)
    assert p.returncode == 0 and "Traceback" not in p.stderr
    assert len(p.stdout.strip().splitlines()) == 3


@pytest.mark.parametrize("args, needle", [
    (["log", "-n", "0"], "-n"),
    (["log", "-n", "-5"], "-n"),
    (["log", "--since", "last tuesday-ish"], "--since"),
    (["recall", "auth", "-k", "-3"], "-k"),
    (["recall", "auth", "--budget", "0"], "--budget"),
    (["recall", "   "], "query"),
    (["brief", "--budget", "10"], "--budget"),
    (["tune", "--holdout", "1"], "--holdout"),
    (["bench", "localize", "--holdout", "1"], "--holdout"),
    (["bench", "localize", "--baselines", "grep"], "--baselines"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    repo = make_repo(tmp_path / "r", commits=3)
    lmm("init", "--repo", str(repo), "--no-hooks")
    one_line_error(lmm(*args, "--repo", str(repo), check=False), 2, needle)


# --------------------------------------------------------------------------- hooks and history


def test_hooks_install_with_a_leftover_lmm_orig(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo), "--no-hooks")
    hooks = repo / ".git" / "hooks"
    (hooks / "post-commit").write_text("#!/usr/bin/env python3\nprint('mine')\n")
    (hooks / "post-commit").chmod(0o755)
    (hooks / "post-commit.lmm-orig").write_text("#!/bin/sh\necho left over\n")
    one_line_error(lmm("hooks", "install", "--repo", str(repo), check=False), 1, "post-commit.lmm-orig", "move")
    assert (hooks / "post-commit").read_text() == "#!/usr/bin/env python3\nprint('mine')\n"  # untouched


def test_bench_localize_on_a_one_commit_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=1)
    lmm("init", "--repo", str(repo), "--no-hooks")
    one_line_error(lmm("bench", "localize", "--repo", str(repo), check=False), 1, "at least two commits")


def test_tune_on_a_one_commit_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=1)
    lmm("init", "--repo", str(repo), "--no-hooks")
    one_line_error(lmm("tune", "--repo", str(repo), check=False), 1, "not tuned")


def test_git_hook_variables_do_not_leak_into_lmm(tmp_path: Path) -> None:
    """A drainer started by a hook inherits GIT_DIR and GIT_INDEX_FILE; lmm must still work on its own
    repository, not on the one those variables name."""
    repo = make_repo(tmp_path / "r", commits=2)
    other = make_repo(tmp_path / "other", commits=5)
    lmm("init", "--repo", str(repo), "--no-hooks")
    env = {"GIT_DIR": str(other / ".git"), "GIT_INDEX_FILE": str(other / ".git" / "index.lock"),
           "GIT_WORK_TREE": str(other)}
    commit_file(repo, "src/after.py", "y = 2\n", "One more")
    p = lmm("ingest", "--repo", str(repo), "--json", env=env)
    assert '"new": 1' in p.stdout
    assert git(other, "rev-list", "--count", "HEAD").strip() == "5"
