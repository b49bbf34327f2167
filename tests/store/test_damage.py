"""Damage is named correctly: an empty database is corruption, not a fresh store; garbage in the
middle of the file is noticed by every command (not only those that happen to read the damaged
page); and a locked store and a corrupt store each get their own message and advice (the read-only
and full-disk cases are in tests/cli/test_edges.py)."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from lmm_cli.store.db import CHECKED_FILE

from conftest import lmm, make_repo, store_dir


def one_line_error(p: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmm: ") and "Traceback" not in p.stderr, p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _fresh(repo: Path) -> Path:
    lmm("init", "--repo", str(repo), "--no-hooks")
    lmm("remember", "--repo", str(repo), "keep this note through the damage")
    return store_dir(repo)


def test_an_empty_database_is_corruption_not_a_fresh_store(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=3)
    store = _fresh(repo)
    (store / "lmm.db").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (store / f"lmm.db{suffix}").unlink(missing_ok=True)
    for args in (["status"], ["log"], ["init", "--no-hooks"], ["ingest"]):
        one_line_error(lmm(*args, "--repo", str(repo), check=False), "empty (0 bytes)", "lmm init --rebuild")
    assert (store / "lmm.db").stat().st_size == 0, "nothing was written over it"
    lmm("init", "--repo", str(repo), "--no-hooks", "--rebuild")
    assert "3 commit" in lmm("status", "--repo", str(repo)).stdout


def _damage_pages_of(db_path: Path, table: str) -> int:
    """Overwrite the leaf pages of ``table`` (and nothing else) with garbage; how many."""
    db = sqlite3.connect(db_path)
    try:
        pages = [r[0] for r in db.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf'",
                                          (table,))]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    except sqlite3.OperationalError as e:
        pytest.skip(f"SQLite without dbstat: {e}")
    finally:
        db.close()
    with open(db_path, "r+b") as f:
        for p in pages:
            f.seek((p - 1) * size)
            f.write(bytes((i * 37 + 11) % 256 for i in range(size)))
    return len(pages)


def test_garbage_in_the_middle_is_noticed_by_every_command(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=20)
    store = _fresh(repo)
    lmm("status", "--repo", str(repo))
    assert (store / CHECKED_FILE).exists(), "a clean check is remembered"
    assert _damage_pages_of(store / "lmm.db", "code_chunks") > 0
    for args in (["status"], ["log", "-n", "1"], ["tune", "--holdout", "4"], ["recall", "--fast", "f1"], ["brief"],
                 ["remember", "another note"], ["ingest"], ["hooks", "install"]):
        one_line_error(lmm(*args, "--repo", str(repo), check=False), "corrupt", "lmm init --rebuild")
    out = lmm("init", "--repo", str(repo), "--no-hooks", "--rebuild").stdout
    assert "1 note" in out and "(kept)" in out
    assert "keep this note through the damage" in lmm("log", "--repo", str(repo), "--kind", "note").stdout


def test_locked_and_corrupt_each_get_their_own_advice(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=3)
    store = _fresh(repo)
    holder = sqlite3.connect(store / "lmm.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        locked = one_line_error(lmm("remember", "--repo", str(repo), "x", check=False,
                                    env={"LMM_LOCK_TIMEOUT": "0.3"}), "locked", "wait")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    (store / "lmm.db").write_bytes(b"\x00" * 8192)
    corrupt = one_line_error(lmm("status", "--repo", str(repo), check=False), "corrupt", "--rebuild")
    assert "--rebuild" not in locked and "wait" not in corrupt


def test_the_check_runs_once_per_change(tmp_path: Path) -> None:
    """lmm's own writes do not make the next command check again; a change behind its back does."""
    repo = make_repo(tmp_path / "r", commits=3)
    store = _fresh(repo)
    lmm("status", "--repo", str(repo))
    stamp = (store / CHECKED_FILE).read_text()
    lmm("remember", "--repo", str(repo), "a second note")
    lmm("status", "--repo", str(repo))
    after = (store / CHECKED_FILE).read_text()
    size, mtime, _ = after.split()
    st = (store / "lmm.db").stat()
    assert (int(size), int(mtime)) == (st.st_size, st.st_mtime_ns), "the file as lmm left it is recorded"
    assert stamp  # and a change made outside lmm no longer matches it:
    with open(store / "lmm.db", "r+b") as f:
        f.seek(0, 2)
        f.write(b"\0" * 4096)
    lmm("status", "--repo", str(repo))  # checked again (and still fine: zeros past the last page)
    assert (store / CHECKED_FILE).read_text() != after
