"""The session brief kept between sessions (``store.brief_cache``): every capture makes it ahead, the
SessionStart hook serves it without making it again, and it is never served once it has stopped being
what making it now would say — a note remembered or forgotten, a commit captured, a cited file
edited, a cited commit pruned from git, another day."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from test_hooks import build_repo, context, hook

from conftest import commit_file, git, lmm, store_dir


def session_start(repo: Path, store: Path) -> tuple[str, str]:
    """What the SessionStart hook injected, and whether the brief was "kept" or "made" (its log line)."""
    text = context(hook("session-start", {"cwd": str(repo), "source": "startup"}, repo), "SessionStart")
    last = (store / "logs" / "hooks.log").read_text().splitlines()[-1]
    assert "session-start" in last, last
    return text, "kept" if "brief=kept" in last else "made"


def drop_kept(store: Path) -> None:
    with sqlite3.connect(store / "lmm.db") as db:
        assert db.execute("DELETE FROM state WHERE key LIKE 'brief_cache.%'").rowcount >= 1


def made_now(repo: Path, store: Path) -> str:
    """The brief as the hook makes it with nothing kept."""
    drop_kept(store)
    text, how = session_start(repo, store)
    assert how == "made"
    return text


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    r = build_repo(tmp_path / "r")
    lmm("init", "--repo", str(r), "--no-hooks")
    return r, store_dir(r)


def test_init_makes_it_ahead_and_the_hook_serves_it_as_made(repo: tuple[Path, Path]) -> None:
    r, store = repo
    kept, how = session_start(r, store)
    assert how == "kept" and "## Conventions" in kept
    assert made_now(r, store) == kept
    again, how = session_start(r, store)  # the hook kept what it made
    assert (again, how) == (kept, "kept")


def test_a_capture_makes_it_again_ahead(repo: tuple[Path, Path]) -> None:
    r, store = repo
    before, _ = session_start(r, store)
    sha = commit_file(r, "src/upload/retry.py", "def retry_upload(n):\n    return n * 4\n",
                      "Fix upload retry crash when the CDN times out")
    lmm("ingest", "--repo", str(r))
    after, how = session_start(r, store)
    assert how == "kept" and after != before and sha[:7] in after
    assert made_now(r, store) == after


def test_a_note_remembered_then_forgotten(repo: tuple[Path, Path]) -> None:
    r, store = repo
    session_start(r, store)
    lmm("remember", "--repo", str(r), "always run the invoice golden tests before a release", "--kind", "decision")
    text, _ = session_start(r, store)
    assert "invoice golden tests" in text
    lmm("forget", "--repo", str(r), "invoice golden tests")
    text, _ = session_start(r, store)
    assert "invoice golden tests" not in text
    assert made_now(r, store) == text


def test_an_edited_cited_file_is_not_served(repo: tuple[Path, Path]) -> None:
    r, store = repo
    text, how = session_start(r, store)
    assert how == "kept" and "`Makefile`" in text and "lint" not in text
    (r / "Makefile").write_text("lint:\n\truff check .\n\ntest:\n\tpytest -q\n")  # not committed
    text, how = session_start(r, store)
    assert how == "made" and "lint" in text
    assert session_start(r, store) == (text, "kept")


def test_work_in_a_hot_file_keeps_the_brief_and_deleting_it_does_not(repo: tuple[Path, Path]) -> None:
    """A file cited without a line (a hot spot) is cited for its history, not its text: editing it,
    as one does while working on it, leaves the kept brief true; deleting it does not."""
    r, store = repo
    text, how = session_start(r, store)
    assert how == "kept" and "`src/upload/retry.py`" in text and "src/upload/retry.py:" not in text
    (r / "src/upload/retry.py").write_text("def retry_upload(n):\n    # work in progress\n    return n * 5\n")
    assert session_start(r, store) == (text, "kept")
    (r / "src/upload/retry.py").unlink()
    text, how = session_start(r, store)
    assert how == "made" and "`src/upload/retry.py`" not in text


def test_a_config_file_added_at_the_top_is_seen(repo: tuple[Path, Path]) -> None:
    r, store = repo
    text, how = session_start(r, store)
    assert how == "kept" and "tox.ini" not in text
    (r / "tox.ini").write_text("[tox]\nenvlist = py311\n\n[testenv]\ncommands = pytest\n")
    text, how = session_start(r, store)
    assert how == "made" and "tox.ini" in text


@pytest.mark.parametrize("packed", [False, True], ids=["loose", "packed"])
def test_a_cited_commit_pruned_from_git_is_never_served(repo: tuple[Path, Path], packed: bool) -> None:
    r, store = repo
    sha = commit_file(r, "src/billing/invoice.py", "def render_invoice(lines):\n    return round(sum(lines), 2)\n",
                      "Fix invoice rounding crash on empty lines")
    if packed:
        git(r, "gc", "-q")
    lmm("ingest", "--repo", str(r))
    text, how = session_start(r, store)
    assert how == "kept" and sha[:7] in text
    git(r, "reset", "-q", "--hard", "HEAD~1")
    git(r, "reflog", "expire", "--expire=now", "--all")
    git(r, "gc", "-q", "--prune=now") if packed else git(r, "prune", "--expire=now")
    assert git(r, "cat-file", "-t", sha, check=False).strip() == ""
    text, how = session_start(r, store)
    assert how == "made" and sha[:7] not in text


def test_the_key_follows_what_a_brief_reads_and_the_day(repo: tuple[Path, Path]) -> None:
    from lmm_cli.store.brief_cache import fetch, memory_key, session_name
    from lmm_cli.workspace import open_workspace

    r, store = repo
    ws = open_workspace(r)
    db = ws.connect()
    try:
        name = session_name(800)
        assert fetch(db, r, ws.repo.common_dir, name=name) is not None
        assert fetch(db, r, ws.repo.common_dir, name=name, now=time.time() + 86400) is None  # another day
        key = memory_key(db)
        db.execute("UPDATE episodes SET salience = salience / 2, recall_count = recall_count + 1")
        assert memory_key(db) == key  # what no brief reads moves nothing
        assert fetch(db, r, ws.repo.common_dir, name=name) is not None
        for sql in ("UPDATE episodes SET title = title || ' ' WHERE id = (SELECT max(id) FROM episodes)",
                    "UPDATE episode_files SET added = coalesce(added, 0) + 1 WHERE rowid = 1",
                    "DELETE FROM code_files WHERE rowid = (SELECT min(rowid) FROM code_files)",
                    "INSERT INTO episodes (kind, source, ts, title, valid_from, captured_at)"
                    " VALUES ('note', 'n-test', 1, 'a new note', 1, 1)"):
            db.execute(sql)
            assert memory_key(db) != key, sql
            key = memory_key(db)
        assert fetch(db, r, ws.repo.common_dir, name=name) is None
    finally:
        db.close()


def test_a_moved_repository_is_briefed_under_its_new_name(repo: tuple[Path, Path], tmp_path: Path) -> None:
    r, store = repo
    text, how = session_start(r, store)
    assert how == "kept" and "What lmm remembers of r\n" in text
    moved = tmp_path / "renamed"
    r.rename(moved)
    text = context(hook("session-start", {"cwd": str(moved), "source": "startup"}, moved), "SessionStart")
    assert "What lmm remembers of renamed\n" in text and made_now(moved, store_dir(moved)) == text
