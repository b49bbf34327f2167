"""A hooks folder git tracks (husky v8: core.hooksPath = .husky, committed): lmm changes nothing in
it, says exactly which line to add by hand, and that line — no absolute path — captures in every
clone that runs `lmm init`, and does nothing where lmm is not set up."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lmm_cli.integrations.githooks import HOOKS, MANUAL_LINE

from conftest import commit_file, git, lmm, lmm_json, make_repo, shas_in_store, wait_for_drain


def husky_v8(repo: Path) -> None:
    husky = repo / ".husky"
    (husky / "_").mkdir(parents=True)
    (husky / "_" / ".gitignore").write_text("*\n")
    (husky / "_" / "husky.sh").write_text("#!/usr/bin/env sh\n")
    (husky / "pre-commit").write_text('#!/usr/bin/env sh\n. "$(dirname -- "$0")/_/husky.sh"\n\ntrue\n')
    (husky / "pre-commit").chmod(0o755)
    git(repo, "add", ".husky")
    git(repo, "commit", "-q", "-m", "Add husky")
    git(repo, "config", "core.hooksPath", ".husky")


def test_init_leaves_a_tracked_hooks_folder_alone_and_says_what_to_add(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    husky_v8(repo)
    before = {p: p.read_bytes() for p in (repo / ".husky").rglob("*") if p.is_file()}
    p = lmm("init", "--repo", str(repo))
    assert MANUAL_LINE in p.stdout and ".husky/post-commit" in p.stdout
    assert "/" + str(tmp_path).strip("/") not in MANUAL_LINE
    assert git(repo, "status", "--porcelain", "--ignored=no") == "", "the working tree stays clean"
    assert {p: p.read_bytes() for p in (repo / ".husky").rglob("*") if p.is_file()} == before
    st = lmm_json("hooks", "status", "--repo", str(repo))
    assert [h["state"] for h in st["hooks"]] == ["manual"] * 4 and MANUAL_LINE in st["manual"]  # type: ignore[index]
    assert MANUAL_LINE in lmm("hooks", "status", "--repo", str(repo)).stdout
    assert MANUAL_LINE in lmm("status", "--repo", str(repo)).stdout
    assert MANUAL_LINE in lmm("hooks", "install", "--repo", str(repo)).stdout
    assert git(repo, "status", "--porcelain") == ""

    # The user adds the line, as told, and commits it for everyone.
    for hook in HOOKS:
        f = repo / ".husky" / hook
        f.write_text(f'#!/usr/bin/env sh\n. "$(dirname -- "$0")/_/husky.sh"\n\n{MANUAL_LINE}\n')
        f.chmod(0o755)
    git(repo, "add", ".husky")
    git(repo, "commit", "-q", "-m", "Capture commits with lmm")
    added = git(repo, "rev-parse", "HEAD").strip()
    wait_for_drain(repo)
    assert added in shas_in_store(repo)
    st = lmm_json("hooks", "status", "--repo", str(repo))
    assert [h["state"] for h in st["hooks"]] == ["installed"] * 4  # type: ignore[index]
    git(repo, "checkout", "-q", "-b", "topic")
    wait_for_drain(repo)
    checkouts = lmm_json("log", "--repo", str(repo), "--kind", "checkout")
    assert any(e["data"]["branch"] == "topic" for e in checkouts)  # type: ignore[union-attr,index]

    # Another clone: without lmm the line does nothing and costs nothing visible; with lmm it
    # captures there, into that clone's own store.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(clone, "config", "core.hooksPath", ".husky")  # what `husky install` does, with its helper:
    (clone / ".husky" / "_").mkdir(exist_ok=True)
    (clone / ".husky" / "_" / "husky.sh").write_text("#!/usr/bin/env sh\n")
    (clone / ".husky" / "_" / ".gitignore").write_text("*\n")
    c = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "no lmm here"], cwd=clone,
                       capture_output=True, text=True)
    assert c.returncode == 0 and c.stdout == "" and c.stderr == ""
    lmm("init", "--repo", str(clone))
    sha = commit_file(clone, "c.py", "c = 1\n", "Work in the clone")
    wait_for_drain(clone)
    assert sha in shas_in_store(clone) and sha not in shas_in_store(repo)
    assert git(clone, "status", "--porcelain") == ""


def test_an_untracked_hooks_path_inside_the_tree_is_still_installed(tmp_path: Path) -> None:
    """husky v9 points core.hooksPath at .husky/_, which git ignores: lmm installs there as before."""
    repo = make_repo(tmp_path / "r")
    (repo / ".husky" / "_").mkdir(parents=True)
    (repo / ".husky" / "_" / ".gitignore").write_text("*\n")
    git(repo, "config", "core.hooksPath", ".husky/_")
    out = lmm_json("init", "--repo", str(repo))
    assert out["hooks_manual"] is None and [h["state"] for h in out["hooks"]] == ["installed"] * 4  # type: ignore[index]
    sha = commit_file(repo, "a.py", "a = 1\n", "Captured by the hook")
    wait_for_drain(repo)
    assert sha in shas_in_store(repo)
