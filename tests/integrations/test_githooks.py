"""Git hooks: real commits, amends, rebases, merges and checkouts land in the store, existing hooks
keep running, uninstall restores the hooks folder byte for byte, and a broken or missing lmm never
fails or slows a git command."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    commit_file,
    git,
    lmm,
    lmm_json,
    make_repo,
    shas_in_store,
    store_dir,
    wait_for_drain,
)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, bool]]:
    out = {}
    if not folder.exists():
        return out
    for p in sorted(folder.iterdir()):
        out[p.name] = (p.read_bytes() if not p.is_symlink() else os.readlink(p).encode(),
                       stat.S_IMODE(p.lstat().st_mode), p.is_symlink())
    return out


def log_entries(repo: Path, *extra: str) -> list[dict]:
    return lmm_json("log", "--repo", str(repo), "-n", "1000", *extra)  # type: ignore[return-value]


def test_commit_is_captured_by_the_hook(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo))
    commit = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "Add retry to uploader"],
                            cwd=repo, capture_output=True, text=True)
    assert commit.returncode == 0 and commit.stdout == "" and commit.stderr == ""  # the hook prints nothing
    sha = git(repo, "rev-parse", "HEAD").strip()
    wait_for_drain(repo)
    entries = log_entries(repo)
    assert entries[0]["source"] == sha and entries[0]["title"] == "Add retry to uploader"
    assert entries[0]["provenance"]["capture"] == "hook"


def test_amend_links_old_to_new_and_keeps_the_old(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo))
    old = commit_file(repo, "a.py", "x = 1\n", "Add a")
    git(repo, "commit", "-q", "--amend", "-m", "Add a, amended")
    new = git(repo, "rev-parse", "HEAD").strip()
    wait_for_drain(repo)
    entries = {e["source"]: e for e in log_entries(repo, "--all")}
    assert entries[old]["superseded_by"] == new and entries[old]["valid_to"] is not None
    assert entries[new]["title"] == "Add a, amended" and entries[new]["superseded_by"] is None
    assert old not in {e["source"] for e in log_entries(repo)}  # hidden without --all
    rewrites = [e for e in log_entries(repo, "--kind", "rewrite")]
    assert rewrites and rewrites[0]["data"]["kind"] == "amend" and rewrites[0]["data"]["pairs"] == [[old, new]]


def test_scripted_interactive_rebase_squash(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=1)
    lmm("init", "--repo", str(repo))
    olds = [commit_file(repo, f"f{i}.py", f"v = {i}\n", f"Step {i}") for i in range(3)]
    # Squash "Step 1" into "Step 0", keep "Step 2": a rebase -i driven by a scripted editor.
    git(repo, "rebase", "-q", "-i", "HEAD~3",
        env={"GIT_SEQUENCE_EDITOR": "sed -i -e '2s/^pick/squash/'", "GIT_EDITOR": "true"})
    news = git(repo, "rev-list", "-2", "HEAD").split()
    wait_for_drain(repo)
    entries = {e["source"]: e for e in log_entries(repo, "--all")}
    assert set(news) <= set(entries)
    assert entries[olds[0]]["superseded_by"] == entries[olds[1]]["superseded_by"] == news[1]
    assert entries[olds[2]]["superseded_by"] == news[0]
    rebase = [e for e in log_entries(repo, "--kind", "rewrite") if e["data"]["kind"] == "rebase"]
    assert len(rebase) == 1 and len(rebase[0]["data"]["pairs"]) == 3


def test_merge_and_checkout_are_captured(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo))
    git(repo, "checkout", "-q", "-b", "feature")
    feat = commit_file(repo, "feature.py", "def feature():\n    pass\n", "Add feature")
    git(repo, "checkout", "-q", "main")
    commit_file(repo, "main.py", "x = 1\n", "Main work")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge feature", "feature")
    merge = git(repo, "rev-parse", "HEAD").strip()
    wait_for_drain(repo)
    entries = log_entries(repo)
    kinds = {e["source"]: e["kind"] for e in entries}
    assert kinds[merge] == "merge" and kinds[feat] == "commit"
    merge_entry = next(e for e in entries if e["source"] == merge)
    assert merge_entry["files"] == []  # merges are recorded without re-storing their diffs
    checkouts = [e["data"]["branch"] for e in entries if e["kind"] == "checkout"]
    assert "feature" in checkouts and "main" in checkouts


def test_existing_hooks_keep_running_and_uninstall_restores_them(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    hooks = repo / ".git" / "hooks"
    marker = tmp_path / "ran.txt"
    # A shell hook, as people write them; and a Python hook, which lmm must wrap rather than edit.
    (hooks / "post-commit").write_text(f"#!/bin/sh\necho \"post-commit $(git rev-parse HEAD)\" >> '{marker}'\n")
    (hooks / "post-rewrite").write_text(
        f"#!{sys.executable}\nimport sys\nopen({str(marker)!r}, 'a').write('post-rewrite ' + sys.argv[1] + ' '"
        " + str(len(sys.stdin.read().split())) + '\\n')\n")
    for h in ("post-commit", "post-rewrite"):
        (hooks / h).chmod(0o755)
    (hooks / "post-merge").write_text("#!/bin/sh\nexit 0\n")  # not executable: git ignores it; so must we
    before = snapshot(hooks)

    lmm("init", "--repo", str(repo))
    lmm("init", "--repo", str(repo))  # idempotent: a second install changes nothing
    after_two = snapshot(hooks)
    lmm("hooks", "install", "--repo", str(repo))
    assert snapshot(hooks) == after_two

    sha = commit_file(repo, "b.py", "y = 2\n", "Add b")
    git(repo, "commit", "-q", "--amend", "-m", "Add b!")
    lines = marker.read_text().splitlines()
    assert f"post-commit {sha}" in lines
    assert "post-rewrite amend 2" in lines  # the Python hook still got its stdin
    wait_for_drain(repo)
    assert sha in shas_in_store(repo)

    lmm("hooks", "uninstall", "--repo", str(repo))
    assert snapshot(hooks) == before
    st = lmm_json("hooks", "status", "--repo", str(repo))
    assert all(h["state"] == "missing" for h in st["hooks"])  # type: ignore[index]


def test_core_hooks_path_husky_and_pre_commit_layouts(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    # husky: core.hooksPath = .husky/_, whose scripts find their helper through $(dirname "$0").
    husky = repo / ".husky" / "_"
    husky.mkdir(parents=True)
    (husky / "h").write_text(f"#!/usr/bin/env sh\necho \"husky $(basename \"$0\")\" >> '{tmp_path / 'husky.txt'}'\n")
    (husky / "post-checkout").write_text('#!/usr/bin/env sh\n. "$(dirname "$0")/h"')  # no final newline
    (husky / "post-checkout").chmod(0o755)
    git(repo, "config", "core.hooksPath", ".husky/_")
    before = snapshot(husky)
    lmm("init", "--repo", str(repo))
    st = lmm_json("hooks", "status", "--repo", str(repo))
    assert Path(st["dir"]).resolve() == husky.resolve()  # type: ignore[index]
    assert [h["state"] for h in st["hooks"]] == ["installed"] * 4  # type: ignore[index]
    git(repo, "checkout", "-q", "-b", "topic")
    assert "husky post-checkout" in (tmp_path / "husky.txt").read_text()
    wait_for_drain(repo)
    assert any(e["data"].get("branch") == "topic" for e in log_entries(repo, "--kind", "checkout"))
    lmm("hooks", "uninstall", "--repo", str(repo))
    assert snapshot(husky) == before

    # A hooks folder that does not exist yet is created, and removed again on uninstall.
    git(repo, "config", "core.hooksPath", str(tmp_path / "nohooks"))
    lmm("hooks", "install", "--repo", str(repo))
    assert (tmp_path / "nohooks" / "post-commit").exists()
    lmm("hooks", "uninstall", "--repo", str(repo))
    assert not (tmp_path / "nohooks").exists()


def test_hooks_never_fail_git_when_lmm_is_broken_or_gone(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo))
    # lmm broken: its package no longer imports (PYTHONPATH shadows it with a broken one).
    broken = tmp_path / "broken" / "lmm_cli"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('broken install')\n")
    env = {**os.environ, "PYTHONPATH": str(broken.parent)}
    p = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "while broken"], cwd=repo, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "" and p.stdout == ""
    sha = git(repo, "rev-parse", "HEAD").strip()
    # Nothing was lost: the event waited in the queue and the next lmm run captures it.
    lmm("ingest", "--repo", str(repo))
    assert sha in shas_in_store(repo)
    # lmm gone entirely: the store folder deleted, the hooks still in place.
    import shutil

    shutil.rmtree(store_dir(repo))
    p = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "after removal"], cwd=repo,
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "" and p.stdout == ""


def drainer_intervals(store: Path) -> list[tuple[int, str]]:
    events = []
    for line in (store / "logs" / "drain.log").read_text().splitlines():
        ts, pid, what = line.split(" ", 2)
        events.append((int(pid), what.split(" ")[0]))
    return events


def assert_one_drainer_at_a_time(store: Path) -> None:
    running = None
    for pid, what in drainer_intervals(store):
        if what == "start":
            assert running is None, f"drainer {pid} started while {running} was running"
            running = pid
        elif what in ("end", "error"):
            assert running == pid
            running = None


def test_rebase_of_300_commits_loses_nothing(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=1)
    git(repo, "checkout", "-q", "-b", "feature")
    for i in range(300):
        (repo / f"f{i % 10}.txt").write_text(f"line {i}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"Feature step {i}")
    olds = git(repo, "rev-list", "main..feature").split()
    git(repo, "checkout", "-q", "main")
    commit_file(repo, "main.txt", "moved on\n", "Main moves on")
    lmm("init", "--repo", str(repo))
    git(repo, "checkout", "-q", "feature")
    git(repo, "rebase", "-q", "main")
    news = git(repo, "rev-list", "main..feature").split()
    assert len(olds) == len(news) == 300
    wait_for_drain(repo, timeout=300)
    entries = {e["source"]: e for e in log_entries(repo, "--all", "-n", "5000")}
    assert set(news) <= set(entries), "every rebased commit is captured"
    old_to_new = dict(zip(reversed(olds), reversed(news)))
    assert all(entries[o]["superseded_by"] == n for o, n in old_to_new.items())
    store = store_dir(repo)
    db = sqlite3.connect(store / "lmm.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT count(*) FROM rewrites WHERE kind = 'rebase'").fetchone()[0] == 300
    assert_one_drainer_at_a_time(store)


def test_twenty_worktrees_committing_at_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo))
    trees = []
    for i in range(20):
        wt = tmp_path / f"wt{i}"
        git(repo, "worktree", "add", "-q", "-b", f"b{i}", str(wt))
        trees.append(wt)
    # Content and message name the worktree, so no two commits share a sha.
    script = ('n=$(basename "$PWD"); for j in 1 2 3 4 5; do echo "$n $j" > "w$j.txt"; '
              'git add -A && git commit -q -m "$n commit $j" || exit 1; done')
    procs = [subprocess.Popen(["sh", "-c", script], cwd=wt, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for wt in trees]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    expected = set()
    for wt in trees:
        expected.update(git(wt, "rev-list", "-5", "HEAD").split())
    assert len(expected) == 100
    wait_for_drain(repo, timeout=300)
    assert expected <= shas_in_store(repo)
    store = store_dir(repo)
    db = sqlite3.connect(store / "lmm.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert_one_drainer_at_a_time(store)
    # A checkout per `worktree add`, with its branch.
    branches = {e["data"]["branch"] for e in log_entries(repo, "--kind", "checkout")}
    assert {f"b{i}" for i in range(20)} <= branches


@pytest.mark.parametrize("hook", ["post-commit", "post-rewrite"])
def test_hook_block_is_safe_under_strict_shells(tmp_path: Path, hook: str) -> None:
    """A user's hook running under `sh -eu` still runs to the end after lmm's block."""
    repo = make_repo(tmp_path / "r")
    marker = tmp_path / "done"
    path = repo / ".git" / "hooks" / hook
    path.write_text(f"#!/bin/sh -eu\ncat >/dev/null\ntouch '{marker}'\n")
    path.chmod(0o755)
    lmm("init", "--repo", str(repo))
    commit_file(repo, "x.txt", "1\n", "x")
    git(repo, "commit", "-q", "--amend", "-m", "x2")
    assert marker.exists()


def test_half_written_and_garbage_events_are_never_dropped(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo), "--no-hooks")
    queue = store_dir(repo) / "queue"
    head = git(repo, "rev-parse", "HEAD").strip()
    half = queue / "ev.99999.0.q"
    half.write_text(f"lmm-event-1\npost-commit\n{repo}\n{head}\n")  # a hook still writing: no "end"
    garbage = queue / "ev.99999.1.q"
    garbage.write_bytes(b"\xff\xfe not an event\nend\n")
    drain = [sys.executable, "-m", "lmm_cli.jobs.drain", str(store_dir(repo))]
    subprocess.run(drain, check=True, timeout=60)
    assert half.exists(), "an event being written is left for its hook to finish"
    assert not garbage.exists() and (queue / "bad" / garbage.name).exists(), "unreadable events are kept aside"
    with half.open("a") as f:
        f.write("refs/heads/main\nend\n")
    subprocess.run(drain, check=True, timeout=60)
    assert not half.exists()
    st = lmm_json("status", "--repo", str(repo))
    assert st["queue"] == {"pending": 0, "bad": 1}  # type: ignore[index]
    # A hook that died mid-write long ago: its event is taken as it is.
    stale = queue / "ev.99999.2.q"
    stale.write_text(f"lmm-event-1\npost-commit\n{repo}\n{head}\nrefs/heads/main\n")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    subprocess.run(drain, check=True, timeout=60)
    assert not stale.exists() and not (queue / "bad" / stale.name).exists()
