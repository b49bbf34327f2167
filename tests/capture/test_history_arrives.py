"""History that arrives below what was captured: `git fetch --unshallow`, a deeper fetch of a branch,
`git replace --graft`. `lmm ingest` and `lmm init` capture every reachable commit not yet stored,
not only those above the captured tips — and with nothing new they stay fast."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import commit_file, git, lmm, lmm_json, make_repo, shas_in_store, store_dir


def reachable(repo: Path, *refs: str) -> set[str]:
    return set(git(repo, "rev-list", *(refs or ("HEAD",))).split())


def source_with_side_branch(path: Path) -> Path:
    src = make_repo(path, commits=12)
    git(src, "checkout", "-q", "-b", "side", "HEAD~6")
    for i in range(3):
        commit_file(src, f"side{i}.py", f"s = {i}\n", f"Side work {i}")
    git(src, "checkout", "-q", "main")
    return src


@pytest.mark.parametrize("command", ["ingest", "init"])
def test_unshallow_then_capture_everything_older(tmp_path: Path, command: str) -> None:
    src = source_with_side_branch(tmp_path / "src")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "3", f"file://{src}", str(clone))
    first = lmm_json("init", "--repo", str(clone), "--no-hooks")
    assert first["ingest"]["new"] == 3 and first["ingest"]["shallow"]  # type: ignore[index]
    git(clone, "fetch", "-q", "--unshallow")
    out = lmm_json(command, "--repo", str(clone), "--no-hooks") if command == "init" else \
        lmm_json("ingest", "--repo", str(clone))
    ing = out["ingest"] if command == "init" else out  # type: ignore[index]
    assert ing["new"] == 9 and ing["full_walk"] and ing["older"] == 9  # type: ignore[index]
    assert shas_in_store(clone) == reachable(clone)
    # Nothing new: the next run walks nothing.
    again = lmm_json("ingest", "--repo", str(clone))
    assert again["new"] == 0 and not again["full_walk"]  # type: ignore[index]


def test_fetching_a_branch_into_a_shallow_clone(tmp_path: Path) -> None:
    src = source_with_side_branch(tmp_path / "src")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "2", "--single-branch", "--branch", "main", f"file://{src}", str(clone))
    lmm("init", "--repo", str(clone), "--no-hooks")
    assert len(shas_in_store(clone)) == 2
    git(clone, "fetch", "-q", "--depth", "100", "origin", "side:side")
    lmm("ingest", "--repo", str(clone))
    assert shas_in_store(clone) == reachable(clone, "HEAD", "side")


def test_a_replace_graft_joins_old_history(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=4)
    # An older history kept outside the branches (an import), not captured.
    git(repo, "checkout", "-q", "--orphan", "old")
    git(repo, "rm", "-q", "-rf", ".")
    old = [commit_file(repo, f"legacy{i}.py", f"l = {i}\n", f"Legacy {i}") for i in range(3)]
    git(repo, "update-ref", "refs/archive/old", "old")
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-q", "-D", "old")
    lmm("init", "--repo", str(repo), "--no-hooks")
    assert not set(old) & shas_in_store(repo)
    root = git(repo, "rev-list", "--max-parents=0", "HEAD").split()[0]
    git(repo, "replace", "--graft", root, old[-1])
    out = lmm_json("ingest", "--repo", str(repo))
    assert out["new"] == 3 and out["full_walk"]  # type: ignore[index]
    assert set(old) <= shas_in_store(repo)


def test_reachable_count_catches_what_the_shape_does_not_show(tmp_path: Path) -> None:
    """The safety net: more commits reachable than captures accounted for means some arrived below
    the captured tips, even when nothing in the shallow file, grafts or replace refs says so."""
    repo = make_repo(tmp_path / "r", commits=4)
    git(repo, "checkout", "-q", "--orphan", "old")
    git(repo, "rm", "-q", "-rf", ".")
    old = [commit_file(repo, f"legacy{i}.py", f"l = {i}\n", f"Legacy {i}") for i in range(2)]
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-q", "-D", "old")
    lmm("init", "--repo", str(repo), "--no-hooks")
    root = git(repo, "rev-list", "--max-parents=0", "HEAD").split()[0]
    git(repo, "replace", "--graft", root, old[-1])
    # Pretend the shape was already seen (as if the change had come some way lmm cannot fingerprint).
    from lmm_cli.capture.ingest import history_shape
    from lmm_cli.workspace import open_workspace

    shape = history_shape(open_workspace(repo))
    db = sqlite3.connect(store_dir(repo) / "lmm.db")
    with db:
        db.execute("UPDATE state SET value = ? WHERE key = 'history_shape'", (shape,))
    db.close()
    out = lmm_json("ingest", "--repo", str(repo))
    assert out["full_walk"] and set(old) <= shas_in_store(repo)  # type: ignore[index]


def _fast_history(repo: Path, commits: int) -> None:
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    lines = []
    for i in range(1, commits + 1):
        content = f"value = {i}\n".encode()
        msg = f"Change {i}\n".encode()
        lines.append(b"commit refs/heads/main\ncommitter T <t@example.com> %d +0000\n" % (1_700_000_000 + i * 60))
        lines.append(b"data %d\n%s" % (len(msg), msg))
        lines.append(b"M 100644 inline mod%d.py\ndata %d\n%s\n" % (i % 50, len(content), content))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=b"".join(lines), check=True)
    git(repo, "reset", "-q", "--hard", "main")


def test_nothing_new_on_six_thousand_commits_stays_fast(tmp_path: Path) -> None:
    repo = tmp_path / "big"
    _fast_history(repo, 6000)
    lmm("init", "--repo", str(repo), "--no-hooks")
    times = []
    for _ in range(3):
        out = lmm_json("ingest", "--repo", str(repo))
        assert out["new"] == 0 and not out["full_walk"]  # type: ignore[index]
        times.append(out["seconds"])  # type: ignore[index]
    assert min(times) < 0.5, times
