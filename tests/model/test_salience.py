"""The salience gate: what happened in a repository is weighed by what it was — a revert or a fix
above a feature, a feature above lockfile, formatting and version-bump churn, the user's own
corrections and decisions at the top — each with the reasons `lmm log --salience` shows; refresh is
incremental and idempotent; the adapter's surprise raises an episode and says so; feedback raises
what a useful recall listed; a store written before the gate gets it on its next open."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from lmm_cli.model import salience
from lmm_cli.store.migrations import MIGRATIONS
from lmm_cli.workspace import open_workspace

from conftest import commit_file, git, lmm, lmm_json, make_repo, store_dir

PARSER = "".join(f"def parse_{i}(text):\n    return text.split('{i}')\n\n\n" for i in range(8))
PARSER_FIXED = PARSER.replace("def parse_0(text):\n    return", "def parse_0(text):\n    if not text:\n"
                              "        return []\n    return")
PYPROJECT = '[project]\nname = "demo"\nversion = "1.2.0"\ndescription = "a demo"\n'


def _claude_transcript(config: Path, cwd: Path, sid: str, turns: list[tuple[str, str]]) -> Path:
    """A Claude Code transcript of ``turns`` (prompt, answer), shaped as Claude Code writes them."""
    folder = config / "projects" / "".join(c if c.isalnum() else "-" for c in str(cwd))
    folder.mkdir(parents=True, exist_ok=True)
    ts, parent, records = time.time() - 1800, None, []
    for n, (prompt, answer) in enumerate(turns):
        for kind, message in (("user", {"role": "user", "content": prompt}),
                              ("assistant", {"id": f"msg_{n}", "type": "message", "role": "assistant",
                                             "model": "claude-sonnet-4-5", "stop_reason": "end_turn",
                                             "content": [{"type": "text", "text": answer}]})):
            ts += 1
            uid = f"{kind[0]}{len(records):07d}-0000-4000-8000-{sid[-12:]}"
            records.append({"parentUuid": parent, "isSidechain": False, "userType": "external", "cwd": str(cwd),
                            "sessionId": sid, "version": "2.1.197", "gitBranch": "main", "type": kind,
                            "uuid": uid, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts)),
                            "message": message})
            parent = uid
    path = folder / f"{sid}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _history(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A repository with one commit of each kind the gate tells apart."""
    repo = make_repo(tmp_path / "r", commits=3)
    shas = {
        "packaging": commit_file(repo, "pyproject.toml", PYPROJECT, "Add packaging metadata"),
        "feature": commit_file(repo, "src/parser.py", PARSER, "Add a parser for the config format"),
        "fix": commit_file(repo, "src/parser.py", PARSER_FIXED, "Fix crash in the parser on empty input"),
    }
    git(repo, "revert", "--no-edit", "HEAD")
    shas["revert"] = git(repo, "rev-parse", "HEAD").strip()
    shas["lockfile"] = commit_file(repo, "poetry.lock", '[[package]]\nname = "click"\nversion = "8.1.7"\n',
                                   "Refresh the locked packages")
    shas["formatting"] = commit_file(repo, "src/parser.py", PARSER.replace("'", '"'), "Reformat with black")
    shas["version"] = commit_file(repo, "pyproject.toml", PYPROJECT.replace("1.2.0", "1.3.0"),
                                  "Bump version to 1.3.0")
    return repo, shas


def _rows(repo: Path) -> dict[str, dict[str, Any]]:
    rows = lmm_json("log", "--repo", str(repo), "-n", "100", "--salience")
    assert isinstance(rows, list)
    return {r["source"]: r for r in rows}


def _texts(row: dict[str, Any]) -> list[str]:
    return [r["text"] for r in row["salience_reasons"]]


def test_what_matters_weighs_more_than_churn_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, shas = _history(tmp_path)
    lmm("init", "--repo", str(repo), "--no-hooks")
    lmm("remember", "--repo", str(repo), "--kind", "decision",
        "we keep parser errors as ParseError in src/parser.py, never bare ValueError")
    config = tmp_path / "claude-config"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config))
    _claude_transcript(config, repo, "5e55a0d1-0000-4000-8000-00000000beef", [
        ("No, don't use print statements in the parser. Log through the logging module", "Switched to logging."),
        ("Thanks, that is all", "Glad to help."),
    ])
    lmm("ingest", "--repo", str(repo), "--sessions")

    rows = _rows(repo)
    commit = {k: rows[sha] for k, sha in shas.items()}
    [decision] = [r for r in rows.values() if r["kind"] == "note" and r["data"].get("kind") == "decision"]
    [correction] = [r for r in rows.values() if r["kind"] == "note" and r["data"].get("kind") == "correction"]
    [turn] = [r for r in rows.values() if r["kind"] == "session" and r["title"].startswith("No, don't")]
    s = {k: r["salience"] for k, r in commit.items()}
    # The user's own words first, then what broke and was undone, then the work, then the churn.
    assert correction["salience"] == 1.0 > decision["salience"] >= 0.9
    assert decision["salience"] > s["revert"] > s["fix"] > s["feature"]
    assert min(s["feature"], turn["salience"]) > max(s["lockfile"], s["formatting"], s["version"])
    assert turn["salience"] > s["feature"]
    # The contract recall's fixes prior and the brief's breakage lines read: ≥ 0.7 is a fix or a revert.
    assert {k for k, v in s.items() if v >= salience.FIX_FLOOR} == {"fix", "revert"}

    assert f"revert: undoes {shas['fix'][:7]}" in _texts(commit["revert"])
    assert any(t.startswith("fix: the subject says “Fix”") for t in _texts(commit["fix"]))
    assert "lockfile churn only" in _texts(commit["lockfile"])
    assert "formatting only" in _texts(commit["formatting"])
    assert "version bump" in _texts(commit["version"])
    assert "decision (lmm remember)" in _texts(decision)
    assert "user correction" in _texts(correction)
    assert "the user corrected the assistant here" in _texts(turn)
    for r in commit["lockfile"]["salience_reasons"]:
        assert set(r) == {"factor", "weight", "text"}
    assert commit["lockfile"]["salience_reasons"][0]["weight"] < 0

    out = lmm("log", "--repo", str(repo), "-n", "100", "--salience").stdout
    lines = out.splitlines()
    for key, why in (("revert", f"revert: undoes {shas['fix'][:7]}"), ("lockfile", "lockfile churn only"),
                     ("formatting", "formatting only"), ("version", "version bump")):
        [i] = [n for n, line in enumerate(lines) if f" {shas[key][:8]} " in line]
        assert f" {s[key]:.2f} " in lines[i], lines[i]
        assert why in lines[i + 1], (lines[i], lines[i + 1])
    assert "user correction" in out and "decision (lmm remember)" in out
    # The log's filters still apply.
    only = lmm_json("log", "--repo", str(repo), "--kind", "note", "--salience")
    assert isinstance(only, list) and {r["kind"] for r in only} == {"note"} and all(r["salience_reasons"] for r in only)
    plain = lmm_json("log", "--repo", str(repo), "-n", "3")
    assert isinstance(plain, list) and all("salience_reasons" not in r for r in plain)


def test_refresh_is_incremental_and_idempotent(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=12)
    lmm("init", "--repo", str(repo), "--no-hooks")
    db = open_workspace(repo).connect()
    try:
        before = db.execute("SELECT episode_id, value, reasons FROM salience ORDER BY episode_id").fetchall()
        assert len(before) == db.execute("SELECT count(*) FROM episodes").fetchone()[0] == 12, "init scored them"
        assert salience.refresh(db) == 0, "nothing new: nothing rescored"
        assert salience.refresh(db, episode_ids=[r[0] for r in before]) == 12
        after = db.execute("SELECT episode_id, value, reasons FROM salience ORDER BY episode_id").fetchall()
        assert [tuple(r) for r in after] == [tuple(r) for r in before]
        assert all(e == s for e, s in db.execute(
            "SELECT e.salience, s.value FROM episodes e JOIN salience s ON s.episode_id = e.id"))
    finally:
        db.close()
    commit_file(repo, "src/late.py", "def late():\n    return 1\n", "Fix the late loader")
    lmm("ingest", "--repo", str(repo))
    db = open_workspace(repo).connect()
    try:
        row = db.execute("SELECT s.value, s.reasons FROM episodes e JOIN salience s ON s.episode_id = e.id"
                         " WHERE e.title = 'Fix the late loader'").fetchone()
        assert row is not None and row[0] >= salience.FIX_FLOOR, "ingest scored the new commit"
        assert salience.refresh(db) == 0
    finally:
        db.close()


def test_surprise_raises_an_episode_and_says_why(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=12)
    lmm("init", "--repo", str(repo), "--no-hooks")
    db = open_workspace(repo).connect()
    try:
        ids = [r[0] for r in db.execute("SELECT id FROM episodes ORDER BY id")]
        target = ids[4]
        old = db.execute("SELECT salience FROM episodes WHERE id = ?", (target,)).fetchone()[0]
        losses = {i: 2.0 for i in ids}
        losses[target] = 5.0  # 2.5× the typical loss of this round
        losses[ids[5]] = 0.6  # 0.3×: the adapter knows it well
        salience.record_surprise(db, losses)
        new, reasons, surprise = db.execute(
            "SELECT e.salience, s.reasons, s.surprise FROM episodes e JOIN salience s ON s.episode_id = e.id"
            " WHERE e.id = ?", (target,)).fetchone()
        assert new > old and surprise == pytest.approx(2.5)
        assert "surprising to the adapter: loss 2.5× typical" in [r["text"] for r in salience.reasons_of(reasons)]
        known = db.execute("SELECT e.salience, s.reasons FROM episodes e JOIN salience s ON s.episode_id = e.id"
                           " WHERE e.id = ?", (ids[5],)).fetchone()
        assert known[0] < old and any("already known to the adapter" in r["text"] for r in salience.reasons_of(known[1]))
        # The surprise stays through later refreshes (it is an input, not a result).
        salience.refresh(db, episode_ids=[target])
        assert db.execute("SELECT salience FROM episodes WHERE id = ?", (target,)).fetchone()[0] == new
        # A later, smaller batch is measured against the typical loss the big one set.
        salience.record_surprise(db, {ids[6]: 6.0})
        assert db.execute("SELECT surprise FROM salience WHERE episode_id = ?", (ids[6],)).fetchone()[0] == \
            pytest.approx(3.0)
    finally:
        db.close()


def test_feedback_and_notes_raise_what_they_point_at(tmp_path: Path) -> None:
    from lmm_cli import core

    repo = make_repo(tmp_path / "r", commits=6)
    commit_file(repo, "src/billing.py", "def invoice_total(lines):\n    return sum(lines)\n",
                "Add invoice totals to billing")
    first = git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    lmm("init", "--repo", str(repo), "--no-hooks")
    ws = open_workspace(repo)
    db = ws.connect()
    try:
        plain = db.execute("SELECT salience FROM episodes WHERE source = ?", (first,)).fetchone()[0]
    finally:
        db.close()
    lmm("remember", "--repo", str(repo), f"the module layout was decided in {first[:8]}; keep it")
    db = ws.connect()
    try:
        value, reasons = db.execute("SELECT e.salience, s.reasons FROM episodes e JOIN salience s"
                                    " ON s.episode_id = e.id WHERE e.source = ?", (first,)).fetchone()
        assert value > plain
        assert any(r["text"].startswith("cited by a note: “the module layout") for r in salience.reasons_of(reasons))
    finally:
        db.close()
    ans = core.recall(ws, "invoice totals billing", budget=400, fast=True)
    listed = [c["sha"] for c in ans["commits"]]
    assert listed, ans
    db = ws.connect()
    try:
        before = {s: v for s, v in db.execute("SELECT source, salience FROM episodes")}
    finally:
        db.close()
    core.feedback(ws, ans["recall_id"], useful=True)
    db = ws.connect()
    try:
        for sha in listed:
            value, reasons = db.execute("SELECT e.salience, s.reasons FROM episodes e JOIN salience s"
                                        " ON s.episode_id = e.id WHERE e.source = ?", (sha,)).fetchone()
            assert value > before[sha]
            assert "listed by 1 recall judged useful" in [r["text"] for r in salience.reasons_of(reasons)]
    finally:
        db.close()


def test_a_note_citing_a_sha_that_begins_with_digits_only_raises_that_commit(tmp_path: Path) -> None:
    """One sha in 40 begins with eight digits. A note that cites such a prefix cites that commit, as
    a recall naming it does; a number in a note that is no stored commit's prefix raises nothing."""
    repo = make_repo(tmp_path / "r", commits=4)
    (repo / "src" / "layout.py").write_text("LAYOUT = 'flat'\n")
    git(repo, "add", "--", "src/layout.py")
    when = {"GIT_AUTHOR_DATE": "@1700000000 +0000", "GIT_COMMITTER_DATE": "@1700000000 +0000"}
    for attempt in range(2000):  # the same dates every run: the same sha, found in about 40 tries
        git(repo, "commit", "-q", *(["--amend"] if attempt else []), "-m", f"Lay the modules out flat ({attempt})",
            env=when)
        sha = git(repo, "rev-parse", "HEAD").strip()
        if sha[:8].isdigit():
            break
    assert sha[:8].isdigit(), sha
    lmm("init", "--repo", str(repo), "--no-hooks")
    ws = open_workspace(repo)
    db = ws.connect()
    try:
        before = dict(db.execute("SELECT source, salience FROM episodes WHERE kind = 'commit'").fetchall())
    finally:
        db.close()
    unknown = next(n for n in ("1234567", "7654321", "9999999") if not any(s.startswith(n) for s in before))
    lmm("remember", "--repo", str(repo), f"the flat layout was decided in {sha[:8]}; ticket {unknown}")
    db = ws.connect()
    try:
        after = dict(db.execute("SELECT source, salience FROM episodes WHERE kind = 'commit'").fetchall())
        reasons = db.execute("SELECT s.reasons FROM episodes e JOIN salience s ON s.episode_id = e.id"
                             " WHERE e.source = ?", (sha,)).fetchone()[0]
    finally:
        db.close()
    assert after[sha] > before[sha]
    assert any(r["text"].startswith("cited by a note: “the flat layout") for r in salience.reasons_of(reasons))
    assert {s: v for s, v in after.items() if s != sha} == {s: v for s, v in before.items() if s != sha}


def test_a_store_from_before_the_gate_gets_it(tmp_path: Path) -> None:
    """Migration m007 on a store written by the lmm before it (schema 6): the table appears on the
    next open, every episode is scored on the next look, and nothing older is lost."""
    repo = make_repo(tmp_path / "r", commits=5)
    lmm("init", "--repo", str(repo), "--no-hooks")
    lmm("remember", "--repo", str(repo), "the release checklist lives in docs/release.md")
    path = store_dir(repo) / "lmm.db"
    db = sqlite3.connect(path)
    try:  # back to what the previous lmm wrote: its six migrations, no salience table or state
        db.execute("DROP TABLE salience")
        db.execute("DELETE FROM _migrations WHERE name = 'm007_salience'")
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            db.execute(f"DROP TRIGGER {name}")  # every trigger is m008's or a later migration's
        db.execute("DELETE FROM _migrations WHERE id > 7")  # m008 and what came after it
        db.execute("DELETE FROM state WHERE key IN ('sessions_gen', 'memory_gen')")
        db.execute("DELETE FROM state WHERE key LIKE 'salience.%'")
        db.execute("UPDATE episodes SET salience = 0.5 WHERE kind = 'commit'")
        db.execute("PRAGMA user_version = 6")
        db.commit()
    finally:
        db.close()
    assert MIGRATIONS[6].__name__ == "m007_salience"

    status = lmm_json("status", "--repo", str(repo))
    assert isinstance(status, dict) and status["schema"]["version"] == status["schema"]["latest"] >= 7
    rows = lmm_json("log", "--repo", str(repo), "-n", "50", "--salience")
    assert isinstance(rows, list) and len(rows) == 6
    assert all(r["salience_reasons"] for r in rows), "every episode got its reasons"
    assert [r["title"] for r in rows if r["kind"] == "note"] == ["the release checklist lives in docs/release.md"]
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("SELECT count(*) FROM salience").fetchone()[0] == 6
        assert db.execute("SELECT count(*) FROM _migrations WHERE name = 'm007_salience'").fetchone()[0] == 1
    finally:
        db.close()
    # Forgetting the note takes its salience row with it (ON DELETE CASCADE).
    lmm("forget", "--repo", str(repo), "release checklist")
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT count(*) FROM salience").fetchone()[0] == 5
    finally:
        db.close()


def test_score_episode_reads_diffs_and_sizes() -> None:
    """The pure scorer: whitespace-only diffs, huge mechanical sweeps, indentation in Python."""
    ws_diff = "@@ -1,2 +1,2 @@\n-{\"a\":1,\n-\"b\":2}\n+{\"a\": 1,\n+ \"b\": 2}\n"
    tidy = salience.EpisodeFacts(1, "commit", "a" * 40, "Tidy settings",
                                 files=[salience.FileStat("conf/settings.json", "M", 2, 2, hunks=ws_diff)])
    value, reasons = salience.score_episode(tidy)
    assert "whitespace changes only" in [r.text for r in reasons] and value < 0.3
    dedent = "@@ -1,3 +1,3 @@\n     else:\n-        value = f(x)\n+    value = f(x)\n"
    py = salience.EpisodeFacts(2, "commit", "b" * 40, "Move the assignment out of the branch",
                               files=[salience.FileStat("src/x.py", "M", 1, 1, hunks=dedent)])
    assert "whitespace changes only" not in [r.text for r in salience.score_episode(py)[1]], \
        "in Python, indentation is code"
    sweep = salience.EpisodeFacts(3, "commit", "c" * 40, "Apply the new naming scheme",
                                  files=[salience.FileStat(f"src/m{i}.py", "M", 60, 60) for i in range(80)])
    normal = salience.EpisodeFacts(4, "commit", "d" * 40, "Add retry to the upload client",
                                   files=[salience.FileStat("src/upload.py", "M", 120, 10)])
    v_sweep, r_sweep = salience.score_episode(sweep)
    v_normal, _ = salience.score_episode(normal)
    assert v_sweep < v_normal and any("likely mechanical" in r.text for r in r_sweep)
    merge = salience.EpisodeFacts(5, "merge", "e" * 40, "Merge branch 'feature'")
    assert salience.score_episode(merge)[0] < v_normal
