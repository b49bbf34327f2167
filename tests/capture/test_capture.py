"""Backfill and ingest on real repositories: what a commit becomes in the store, idempotence,
resuming a killed backfill, and every kind of awkward repository."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import (
    commit_file,
    git,
    lmm,
    lmm_json,
    make_repo,
    shas_in_store,
    store_dir,
)


def fast_history(repo: Path, commits: int) -> None:
    """A long linear history in one `git fast-import` run (seconds, not minutes)."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q")
    lines = []
    for i in range(1, commits + 1):
        content = f"value = {i}\n".encode()
        msg = f"Change {i}\n".encode()
        lines.append(b"commit refs/heads/main\n")
        lines.append(b"committer T <t@example.com> %d +0000\n" % (1_700_000_000 + i * 60))
        lines.append(b"data %d\n%s" % (len(msg), msg))
        lines.append(b"M 100644 inline mod%d.py\ndata %d\n%s\n" % (i % 50, len(content), content))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=b"".join(lines), check=True)
    git(repo, "reset", "-q", "--hard", "main")


def test_commit_details_are_recorded(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=1)
    commit_file(repo, "src/auth/session.py",
                "class SessionManager:\n    def refresh(self, token):\n        x = 1\n" + "        pass\n" * 8
                + "        return token\n", "Add session manager")
    text = (repo / "src/auth/session.py").read_text().replace("return token", "return token.strip()")
    (repo / "src/auth/session.py").write_text(text)
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Fix token refresh\n\nTokens came back with whitespace.")
    git(repo, "mv", "src/auth/session.py", "src/auth/sessions.py")
    git(repo, "commit", "-q", "-m", "Rename session module")
    out = lmm_json("init", "--repo", str(repo), "--no-hooks")
    assert out["ingest"]["new"] == 4  # type: ignore[index]
    entries = {e["title"]: e for e in lmm_json("log", "--repo", str(repo))}  # type: ignore[union-attr]
    fix = entries["Fix token refresh"]
    assert fix["body"] == "Tokens came back with whitespace." and fix["author"] == "Test User"
    files = {f["path"]: f for f in fix["files"]}
    assert files["src/auth/session.py"]["added"] == 1 and files["src/auth/session.py"]["deleted"] == 1
    assert files["logo.png"]["binary"] == 1 and files["logo.png"]["added"] is None
    assert "refresh" in fix["symbols"]  # from the hunk header git printed (python funcname driver)
    ren = entries["Rename session module"]["files"][0]
    assert (ren["status"], ren["old_path"], ren["path"]) == ("R", "src/auth/session.py", "src/auth/sessions.py")
    db = sqlite3.connect(store_dir(repo) / "lmm.db")
    hunks = db.execute("SELECT hunks FROM episode_files WHERE path = 'src/auth/session.py' AND hunks LIKE '%strip%'").fetchone()
    assert hunks and "+        return token.strip()" in hunks[0]
    hit = db.execute("SELECT rowid FROM episodes_fts WHERE episodes_fts MATCH 'whitespace'").fetchall()
    assert [r[0] for r in hit] == [fix["id"]]


def test_capture_is_idempotent_and_incremental(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=5)
    first = lmm_json("init", "--repo", str(repo), "--no-hooks")
    again = lmm_json("init", "--repo", str(repo), "--no-hooks")
    assert first["ingest"]["new"] == 5 and again["ingest"]["new"] == 0 and again["already_initialised"]  # type: ignore[index]
    commit_file(repo, "new.py", "n = 1\n", "Add new")
    git(repo, "checkout", "-q", "-b", "side")
    commit_file(repo, "side.py", "s = 1\n", "Side work")
    git(repo, "checkout", "-q", "main")
    out = lmm_json("ingest", "--repo", str(repo))
    assert out["new"] == 2  # type: ignore[index]  # the other local branch too
    assert lmm_json("ingest", "--repo", str(repo))["new"] == 0  # type: ignore[index]
    st = lmm_json("status", "--repo", str(repo))
    assert st["by_kind"] == {"commit": 7}  # type: ignore[index]


def test_killed_backfill_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    fast_history(repo, 4000)
    proc = subprocess.Popen([sys.executable, "-m", "lmm_cli", "init", "--repo", str(repo), "--no-hooks"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db_path = None
    deadline = time.monotonic() + 120
    partial = 0
    while time.monotonic() < deadline and proc.poll() is None:
        stores = list((tmp_path / "lmm-home" / "repos").glob("*/lmm.db"))
        if stores:
            db_path = stores[0]
            try:
                partial = sqlite3.connect(db_path).execute("SELECT count(*) FROM episodes").fetchone()[0]
            except sqlite3.Error:
                partial = 0
            if partial > 0:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.02)
    proc.wait()
    assert db_path is not None and 0 < partial < 4000, partial
    out = lmm_json("ingest", "--repo", str(repo))
    assert out["known"] >= partial  # type: ignore[index]
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT count(*), count(DISTINCT source) FROM episodes").fetchone() == (4000, 4000)


def test_huge_and_binary_diffs_are_capped(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=1)
    (repo / "big.txt").write_text("".join(f"line {i}\n" for i in range(100_000)))
    (repo / "minified.js").write_text("var a=" + "1+" * 50_000 + "1;\n")
    (repo / "blob.bin").write_bytes(os.urandom(200_000))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Vendor big files")
    lmm("init", "--repo", str(repo), "--no-hooks")
    db = sqlite3.connect(store_dir(repo) / "lmm.db")
    rows = {r[0]: r[1:] for r in db.execute("SELECT path, added, binary, truncated, length(hunks) FROM episode_files")}
    assert rows["big.txt"][:3] == (100_000, 0, 1) and rows["big.txt"][3] <= 8192
    assert rows["minified.js"][0] == 1 and rows["minified.js"][3] <= 1000
    assert rows["blob.bin"][1:] == (1, 0, None)


def test_non_utf8_messages_and_file_names(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=1)
    name = b"caf\xe9-\xff.txt"
    with open(os.path.join(os.fsencode(repo), name), "wb") as f:
        f.write(b"caf\xe9 au lait\n")
    git(repo, "add", "-A")
    msg = tmp_path / "msg"
    msg.write_bytes(b"Fix caf\xe9 encoding \xff\xfe\n")
    subprocess.run(["git", "commit", "-q", "-F", str(msg)], cwd=repo, check=True, capture_output=True)
    lmm("init", "--repo", str(repo), "--no-hooks")
    entry = lmm_json("log", "--repo", str(repo), "-n", "1")[0]  # type: ignore[index]
    assert entry["title"].startswith("Fix caf")
    assert entry["files"][0]["path"].startswith("caf") and entry["files"][0]["added"] == 1
    lmm("log", "--repo", str(repo))  # and the text output prints it


def test_empty_repository_then_first_commit(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    p = lmm("init", "--repo", str(repo))
    assert "no commits yet" in p.stdout
    sha = commit_file(repo, "a.txt", "a\n", "First commit")
    from conftest import wait_for_drain

    wait_for_drain(repo)
    assert shas_in_store(repo) == {sha}


def test_shallow_clone_and_detached_head(tmp_path: Path) -> None:
    origin = make_repo(tmp_path / "origin", commits=10)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "4", f"file://{origin}", str(clone))
    p = lmm("init", "--repo", str(clone), "--no-hooks")
    assert "shallow clone" in p.stdout
    assert len(shas_in_store(clone)) == 4
    det = make_repo(tmp_path / "det", commits=3)
    git(det, "checkout", "-q", "HEAD~1")
    lmm("init", "--repo", str(det))
    sha = commit_file(det, "x.txt", "x\n", "Commit on a detached HEAD")
    from conftest import wait_for_drain

    wait_for_drain(det)
    assert sha in shas_in_store(det) and len(shas_in_store(det)) == 4


def test_worktrees_share_one_store(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    lmm("init", "--repo", str(repo), "--no-hooks")
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "wt", str(wt))
    assert store_dir(wt) == store_dir(repo)


def test_store_lives_under_git_dir_without_lmm_home(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    env = {k: v for k, v in os.environ.items() if k != "LMM_HOME"}
    p = subprocess.run([sys.executable, "-m", "lmm_cli", "init", "--repo", str(repo), "--json", "--no-hooks"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert (repo / ".git" / "lmm" / "lmm.db").exists()
    assert git(repo, "status", "--porcelain") == ""  # nothing in the work tree to commit by mistake


def test_index_entries_can_be_removed_exactly(tmp_path: Path) -> None:
    """The full-text index stores no text of its own; removing an entry (what `lmm forget` will do)
    needs the exact indexed values back, which fts_doc rebuilds from the rows."""
    from lmm_cli.store.episodes import fts_doc

    repo = make_repo(tmp_path / "r", commits=1)
    commit_file(repo, "src/pay/invoice.py", "def render_invoice():\n    return 'zebraword'\n", "Add invoice renderer")
    lmm("init", "--repo", str(repo), "--no-hooks")
    db = sqlite3.connect(store_dir(repo) / "lmm.db")
    eid = db.execute("SELECT id FROM episodes WHERE title = 'Add invoice renderer'").fetchone()[0]
    for term in ("zebraword", "renderer", "invoice"):
        assert db.execute("SELECT rowid FROM episodes_fts WHERE episodes_fts MATCH ?", (term,)).fetchall() == [(eid,)]
    db.execute("INSERT INTO episodes_fts (episodes_fts, rowid, title, body, paths, symbols, diff, terms)"
               " VALUES ('delete', ?, ?, ?, ?, ?, ?, ?)", (eid, *fts_doc(db, eid)))
    for term in ("zebraword", "renderer", "invoice"):
        assert db.execute("SELECT rowid FROM episodes_fts WHERE episodes_fts MATCH ?", (term,)).fetchall() == []
    assert db.execute("SELECT count(*) FROM episodes_fts WHERE episodes_fts MATCH 'mod0'").fetchone()[0] == 1
