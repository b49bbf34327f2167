"""Objects the repository does not have: a partial clone (`--filter=blob:limit=1k`) and a blob lost
from the object database. Capture takes everything else, records the unreadable file versions by
name (``added``/``deleted`` NULL, ``binary`` 0, ``truncated`` 1, no hunks), says so once, and never
fetches: a promisor remote whose upload-pack leaves a mark shows that nothing connected to it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from conftest import commit_file, git, lmm, lmm_json, make_repo, shas_in_store, store_dir

BIG = "".join(f"line {i}: {'x' * 60}\n" for i in range(60))  # ~4 KB: over the 1k filter


def source(path: Path) -> Path:
    src = make_repo(path, commits=2)
    git(src, "config", "uploadpack.allowFilter", "true")
    commit_file(src, "data/big.txt", BIG, "Add the big file")
    commit_file(src, "data/big.txt", BIG.replace("line 7:", "line seven:"), "Edit the big file")
    (src / "data" / "small.txt").write_text("small\n")
    (src / "data" / "big.txt").write_text(BIG.replace("line 9:", "line nine:"))
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "Edit both")
    commit_file(src, "src/tail.py", "def tail():\n    return 1\n", "Add tail")
    return src


def spy_upload_pack(clone: Path, marker: Path) -> None:
    """Any fetch from the promisor remote runs this upload-pack, which leaves ``marker``."""
    script = clone.parent / "upload-pack-spy"
    script.write_text(f"#!/bin/sh\necho fetched >> '{marker}'\nexec git-upload-pack \"$@\"\n")
    script.chmod(0o755)
    git(clone, "config", "remote.origin.uploadpack", str(script))


def missing(repo: Path) -> set[str]:
    out = git(repo, "rev-list", "--objects", "--missing=print", "--all")
    return {line[1:] for line in out.splitlines() if line.startswith("?")}


def files_of(repo: Path, title: str) -> dict[str, dict]:
    entries = lmm_json("log", "--repo", str(repo), "-n", "100")
    entry = next(e for e in entries if e["title"] == title)  # type: ignore[union-attr,index]
    return {f["path"]: f for f in entry["files"]}


def test_a_partial_clone_is_captured_without_fetching(tmp_path: Path) -> None:
    src = source(tmp_path / "src")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--filter=blob:limit=1k", f"file://{src}", str(clone))
    marker = tmp_path / "fetched"
    spy_upload_pack(clone, marker)
    gone = missing(clone)
    assert len(gone) == 2  # the two older versions of data/big.txt

    # The spy works: plain `git log -p` in a second clone fetches lazily.
    probe = tmp_path / "probe"
    git(tmp_path, "clone", "-q", "--filter=blob:limit=1k", f"file://{src}", str(probe))
    spy_upload_pack(probe, marker)
    git(probe, "log", "-p")
    assert marker.exists()
    marker.unlink()

    p = lmm("init", "--repo", str(clone), "--json", check=False)
    assert p.returncode == 0, p.stderr
    assert not marker.exists(), "lmm made git fetch from the promisor remote"
    assert missing(clone) == gone
    assert shas_in_store(clone) == set(git(clone, "rev-list", "HEAD").split())
    add = files_of(clone, "Add the big file")["data/big.txt"]
    assert (add["added"], add["deleted"], add["binary"], add["truncated"]) == (None, None, 0, 1)
    both = files_of(clone, "Edit both")
    assert both["data/big.txt"]["added"] is None
    assert both["data/small.txt"]["added"] == 1, "the readable file of the same commit keeps its diff"
    db = sqlite3.connect(store_dir(clone) / "lmm.db")
    hunks = db.execute("SELECT hunks FROM episode_files WHERE path = 'data/small.txt'").fetchone()[0]
    assert hunks and "+small" in hunks
    assert files_of(clone, "Add tail")["src/tail.py"]["added"] == 2  # everything else as usual

    text = lmm("init", "--repo", str(clone)).stdout  # nothing new now; status says it instead
    status = lmm("status", "--repo", str(clone)).stdout
    assert "partial clone" in status and "never fetches" in status and text.count("partial clone") <= 1
    # Said once, in init's output, when it happened:
    again = tmp_path / "again"
    git(tmp_path, "clone", "-q", "--filter=blob:limit=1k", f"file://{src}", str(again))
    spy_upload_pack(again, marker)
    out = lmm("init", "--repo", str(again)).stdout
    assert out.count("partial clone") == 1 and "lmm never fetches" in out
    assert not marker.exists()

    # A commit made there is captured by the hook, still without any fetch.
    sha = commit_file(clone, "data/big.txt", BIG + "more\n", "Grow the big file")
    from conftest import wait_for_drain

    wait_for_drain(clone)
    assert sha in shas_in_store(clone) and not marker.exists()


def test_a_lost_blob_does_not_stop_init(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=2)
    commit_file(repo, "lost.txt", "this content will be lost\n", "Add a file whose blob gets lost")
    commit_file(repo, "lost.txt", "second version\n", "Change it")
    commit_file(repo, "after.py", "ok = True\n", "A later commit")
    blob = git(repo, "rev-parse", "HEAD~2:lost.txt").strip()
    os.remove(repo / ".git" / "objects" / blob[:2] / blob[2:])
    assert git(repo, "cat-file", "-e", blob, check=False) == ""  # gone

    p = lmm("init", "--repo", str(repo), "--no-hooks", check=False)
    assert p.returncode == 0, p.stderr
    assert "missing objects: 2 changed files in 2 commits" in p.stdout
    assert shas_in_store(repo) == set(git(repo, "rev-list", "HEAD").split())
    assert files_of(repo, "Add a file whose blob gets lost")["lost.txt"]["added"] is None
    assert files_of(repo, "Change it")["lost.txt"]["truncated"] == 1
    assert files_of(repo, "A later commit")["after.py"]["added"] == 1
