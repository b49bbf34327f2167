"""A repository moved with `mv` or copied with `cp -a` keeps capturing, each into its own store, for
both store locations (``.git/lmm/`` and ``$LMM_HOME``); nothing done in one touches the other."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import commit_file, lmm, lmm_json, make_repo, shas_in_store, store_dir, wait_for_drain

WHERE = ["git-dir", "lmm-home"]


def _where(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if where == "git-dir":
        monkeypatch.delenv("LMM_HOME")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def notes(repo: Path) -> list[str]:
    return [e["title"] for e in lmm_json("log", "--repo", str(repo), "--kind", "note")]  # type: ignore[union-attr,index]


def hook_captured(repo: Path, sha: str) -> bool:
    entries = lmm_json("log", "--repo", str(repo), "-n", "50")
    return any(e["source"] == sha and e["provenance"]["capture"] == "hook" for e in entries)  # type: ignore[union-attr,index]


@pytest.mark.parametrize("where", WHERE)
def test_a_moved_repository_keeps_capturing_into_its_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           where: str) -> None:
    _where(where, monkeypatch)
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo))
    lmm("remember", "--repo", str(repo), "we keep the retry budget in src/mod1.py")
    old_store = store_dir(repo)
    moved = tmp_path / "elsewhere" / "r2"
    moved.parent.mkdir()
    os.rename(repo, moved)

    sha = commit_file(moved, "src/after.py", "x = 1\n", "A commit after the move")
    st = wait_for_drain(moved)
    assert hook_captured(moved, sha), "the hook of the moved repository still captures"
    assert st["repo"] == str(moved)
    assert [h["state"] for h in st["hooks"]["states"]] == ["installed"] * 4
    assert notes(moved) == ["we keep the retry budget in src/mod1.py"], "the memory moved with it"
    if where == "lmm-home":
        assert store_dir(moved) != old_store and not old_store.exists(), "the store was adopted, not copied"
    else:
        assert store_dir(moved) == moved / ".git" / "lmm"
    # And again, now that the store knows where it is.
    sha2 = commit_file(moved, "src/after2.py", "y = 2\n", "Another one")
    wait_for_drain(moved)
    assert hook_captured(moved, sha2)


@pytest.mark.parametrize("where", WHERE)
def test_a_copy_gets_its_own_store_and_leaves_the_original_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 where: str) -> None:
    _where(where, monkeypatch)
    orig = make_repo(tmp_path / "orig")
    lmm("init", "--repo", str(orig))
    lmm("remember", "--repo", str(orig), "the original's note")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(orig), str(copy)], check=True)
    orig_hooks = snapshot(orig / ".git" / "hooks")

    in_copy = commit_file(copy, "copy.py", "c = 1\n", "Work in the copy")
    wait_for_drain(copy)
    in_orig = commit_file(orig, "orig.py", "o = 1\n", "Work in the original")
    wait_for_drain(orig)
    assert hook_captured(copy, in_copy) and hook_captured(orig, in_orig)
    assert in_copy not in shas_in_store(orig), "the copy's commit never reaches the original's store"
    assert in_orig not in shas_in_store(copy)
    assert store_dir(copy) != store_dir(orig)
    assert lmm_json("status", "--repo", str(copy))["repo"] == str(copy)  # type: ignore[index]

    # Hooks commands in the copy change the copy only.
    lmm("hooks", "install", "--repo", str(copy))
    lmm("hooks", "uninstall", "--repo", str(copy))
    assert snapshot(orig / ".git" / "hooks") == orig_hooks
    st = lmm_json("hooks", "status", "--repo", str(orig))
    assert [h["state"] for h in st["hooks"]] == ["installed"] * 4  # type: ignore[index]
    lmm("hooks", "install", "--repo", str(copy))

    # The copy started from the original's memory; from then on each remembers on its own.
    assert notes(copy) == ["the original's note"]
    lmm("remember", "--repo", str(copy), "only the copy knows this")
    assert "only the copy knows this" not in notes(orig)
    again = commit_file(orig, "orig2.py", "o = 2\n", "More work in the original")
    wait_for_drain(orig)
    assert hook_captured(orig, again) and again not in shas_in_store(copy)


def test_a_wrapped_hook_still_runs_the_original_after_a_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMM_HOME")
    repo = make_repo(tmp_path / "r")
    marker = tmp_path / "ran.txt"
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text(f"#!/usr/bin/env python3\nopen({str(marker)!r}, 'a').write('mine\\n')\n")
    hook.chmod(0o755)
    lmm("init", "--repo", str(repo))  # a Python hook: lmm wraps it
    moved = tmp_path / "moved"
    shutil.move(str(repo), str(moved))
    commit_file(moved, "a.py", "a = 1\n", "After the move")
    assert marker.read_text() == "mine\n", "the wrapper finds the original beside itself"
    wait_for_drain(moved)
