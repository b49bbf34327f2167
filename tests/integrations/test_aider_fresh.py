"""aider's conventions file stays fresh: after every capture, while the aider integration is installed,
``.aider.lmm.md`` is rewritten with the current session brief (only when the memory changed), the
user's other files are untouched, and `lmm integrate aider --remove` still restores them byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import commit_file, git, lmm, make_repo

CONF = "read: [CONVENTIONS.md]  # the team's\nmodel: gpt-5\n"


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(folder).parts}


def test_conventions_follow_the_memory(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=3)
    lmm("init", "--repo", str(repo), "--no-hooks")
    (repo / ".aider.conf.yml").write_text(CONF)
    (repo / "CONVENTIONS.md").write_text("Use tabs.\n")
    before = files_of(repo)
    lmm("integrate", "aider", "--repo", str(repo))
    conventions = repo / ".aider.lmm.md"
    first = conventions.read_text()
    assert "zanzibar" not in first

    sha = commit_file(repo, "src/zanzibar.py", "RATE = 3\n", "Throttle the zanzibar uploader to three per second")
    lmm("ingest", "--repo", str(repo))
    fresh = conventions.read_text()
    assert fresh != first and fresh.startswith("<!-- lmm -->") and "lmm recall" in fresh
    assert "zanzibar" in fresh, fresh
    assert (repo / ".aider.conf.yml").read_text() == "read: [CONVENTIONS.md, .aider.lmm.md]  # the team's\nmodel: gpt-5\n"
    assert (repo / "CONVENTIONS.md").read_text() == "Use tabs.\n"

    # Nothing new captured: the file is not rewritten.
    st = os.stat(conventions)
    lmm("ingest", "--repo", str(repo))
    st2 = os.stat(conventions)
    assert (st2.st_ino, st2.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)

    lmm("integrate", "aider", "--remove", "--repo", str(repo))
    assert files_of(repo) == {**before, "src/zanzibar.py": b"RATE = 3\n"}
    assert git(repo, "rev-parse", "HEAD").strip() == sha


def test_user_file_without_mark_is_left_alone(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=2)
    lmm("init", "--repo", str(repo), "--no-hooks")
    lmm("integrate", "aider", "--repo", str(repo))
    conventions = repo / ".aider.lmm.md"
    conventions.write_text("my own notes\n")
    commit_file(repo, "src/quux.py", "X = 1\n", "Add quux")
    lmm("ingest", "--repo", str(repo))
    assert conventions.read_text() == "my own notes\n"
