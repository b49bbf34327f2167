"""`lmm init --rebuild` never drops what git cannot give back: notes, rewrite links (the rewrites
table and the superseded commits' episodes and marks), checkouts — any episode kind that is not a
commit or merge — are carried into the rebuilt store, and the old file is kept beside it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import commit_file, git, lmm, lmm_json, make_repo, store_dir, wait_for_drain


def entries(repo: Path, *extra: str) -> list[dict]:
    return lmm_json("log", "--repo", str(repo), "-n", "1000", "--all", *extra)  # type: ignore[return-value]


def test_rebuild_carries_what_git_cannot_give_back(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=3)
    lmm("init", "--repo", str(repo))
    lmm("remember", "--repo", str(repo), "we pin numpy below 3 because of src/mod1.py")
    lmm("remember", "--repo", str(repo), "never call the payment API from tests")
    old = commit_file(repo, "a.py", "a = 1\n", "Add a")
    git(repo, "commit", "-q", "--amend", "-m", "Add a, amended")
    new = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "-b", "topic")
    wait_for_drain(repo)
    store = store_dir(repo)
    # A kind that does not exist yet (sessions, feedback…): carried all the same.
    db = sqlite3.connect(store / "lmm.db")
    with db:
        db.execute("INSERT INTO episodes (kind, source, ts, title, valid_from, captured_at, recall_count) "
                   "VALUES ('session', 'session:1', 1.0, 'a coding session', 1.0, 1.0, 4)")
        db.execute("UPDATE episodes SET recall_count = 7 WHERE source = ?", (new,))
    db.close()
    before = {(e["kind"], e["source"]): e for e in entries(repo)}

    out = lmm_json("init", "--repo", str(repo), "--rebuild")
    carried = out["carried"]  # type: ignore[index]
    assert carried["episodes"]["note"] == 2 and carried["episodes"]["session"] == 1  # type: ignore[index]
    assert carried["episodes"]["rewrite"] == 1 and carried["episodes"]["commit"] == 1  # type: ignore[index]
    assert carried["rewrites"] == 1  # type: ignore[index]
    assert Path(out["moved_aside"]).exists() and Path(out["moved_aside"]).parent == store  # type: ignore[index]

    after = {(e["kind"], e["source"]): e for e in entries(repo)}
    assert set(before) <= set(after), f"lost: {set(before) - set(after)}"
    assert after[("commit", old)]["superseded_by"] == new and after[("commit", old)]["valid_to"] is not None
    assert after[("commit", old)]["files"] == before[("commit", old)]["files"]
    notes = {e["title"] for e in entries(repo, "--kind", "note")}
    assert notes == {"we pin numpy below 3 because of src/mod1.py", "never call the payment API from tests"}
    assert [f["path"] for f in after[("note", before_note_source(before))]["files"]] == ["src/mod1.py"]
    assert any(e["data"].get("branch") == "topic" for e in entries(repo, "--kind", "checkout"))
    db = sqlite3.connect(store / "lmm.db")
    assert db.execute("SELECT count(*) FROM rewrites").fetchone()[0] == 1
    assert db.execute("SELECT recall_count FROM episodes WHERE source = ?", (new,)).fetchone()[0] == 7
    # Carried notes are searchable again.
    hit = db.execute("SELECT count(*) FROM episodes_fts WHERE episodes_fts MATCH 'payment'").fetchone()[0]
    assert hit == 1
    db.close()
    # A second rebuild keeps both old files and still carries everything once.
    out2 = lmm_json("init", "--repo", str(repo), "--rebuild")
    assert out2["carried"]["episodes"]["note"] == 2  # type: ignore[index]
    assert len([p for p in store.glob("lmm.db.aside-*") if not p.name.endswith(("-wal", "-shm"))]) == 2
    assert {e["title"] for e in entries(repo, "--kind", "note")} == notes


def before_note_source(before: dict) -> str:
    return next(src for (kind, src), e in before.items() if kind == "note" and "numpy" in e["title"])
