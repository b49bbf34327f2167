"""A store written under older redaction rules is re-redacted on its next capture, and the old
secret bytes leave the database file; control characters never reach what lmm prints."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from lmm_cli.capture.rescan import RULES_KEY, TEXT_COLUMNS
from lmm_cli.privacy.redact import RULES_VERSION, redact, redact_note
from lmm_cli.store.episodes import Episode, FileChange, insert_episode

from conftest import commit_file, git, lmm, lmm_json, make_repo, store_dir, wait_for_drain
from secrets_corpus import GH_TOKEN, NOTE_PW, OPENAI_STYLE_KEY, PG_PASSWORD, PROSE_PW, SLACK_BOT, STRIPE_LIVE

# What an older lmm let through (the rules of RULES_VERSION 0 missed these), and what it never did.
OLD_MISSES = {
    "prose": f"the staging db password is {PROSE_PW} until Friday",
    "env": f"export PGPASSWORD={PG_PASSWORD}",
    "key": f"OPENAI_KEY={OPENAI_STYLE_KEY}",
    "note": f"the admin password is {NOTE_PW}",  # a plain word: only notes redact it (note mode)
}
ALWAYS = {"token": GH_TOKEN, "stripe": STRIPE_LIVE, "slack": SLACK_BOT}  # written raw, as a broken capture would
SECRETS = [PROSE_PW, PG_PASSWORD, OPENAI_STYLE_KEY, NOTE_PW, GH_TOKEN, STRIPE_LIVE, SLACK_BOT]


def _checkpoint(db_path: Path) -> None:
    db = sqlite3.connect(db_path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def _file_bytes(store: Path) -> bytes:
    _checkpoint(store / "lmm.db")
    return b"".join(p.read_bytes() for p in sorted(store.glob("lmm.db*")))


def _write_old_store(db_path: Path) -> None:
    """Write text the way an older lmm would have stored it: secrets in every text column capture
    fills, the contentless indexes holding their words, the rules version back at 0."""
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("BEGIN IMMEDIATE")
    insert_episode(db, Episode(
        kind="commit", source="f" * 40, ts=1.0, title="Configure staging " + ALWAYS["token"],
        body="\n".join(v for k, v in OLD_MISSES.items() if k != "note"), author="dev", data={"committer": "ci", "note": ALWAYS["slack"]},
        files=[FileChange(path=f"deploy/{ALWAYS['stripe']}.env.txt", hunks="+" + OLD_MISSES["key"] + "\n+"
                          + OLD_MISSES["env"]),
               FileChange(path="src/app.py", hunks="@@ -1 +1 @@ def connect(token=\"" + ALWAYS["token"] + "\"):\n+x")],
        symbols=[("src/app.py", "connect", 'def connect(token="' + ALWAYS["token"] + '"):')],
        provenance={"capture": "backfill", "commits": ["f" * 40]},
    ))
    insert_episode(db, Episode(kind="note", source="note:0123456789abcdef", ts=2.0, title=OLD_MISSES["note"],
                               provenance={"capture": "cli", "files": []}))
    # the code index: a chunk and a signature holding a secret, indexed
    db.execute("INSERT INTO code_files (path, hash, lang, size, lines, indexed_at) VALUES ('old.py', 'h', 'python', 1, 1, 0)")
    db.execute("INSERT INTO code_chunks (id, path, start_line, end_line, symbol, text, hash) VALUES "
               "(999999, 'old.py', 1, 1, 'f', ?, 'h')", (OLD_MISSES["key"],))
    db.execute("INSERT INTO code_fts (rowid, path, symbol, text, terms) VALUES (999999, 'old.py', 'f', ?, '')",
               (OLD_MISSES["key"],))
    db.execute("INSERT INTO code_symbols (path, name, kind, parent, start_line, end_line, signature) VALUES "
               "('old.py', 'f', 'function', NULL, 1, 1, ?)", (OLD_MISSES["env"],))
    db.execute("INSERT INTO state (key, value) VALUES (?, '0') ON CONFLICT(key) DO UPDATE SET value = '0'", (RULES_KEY,))
    db.execute("COMMIT")
    db.close()


def _fts_hits(db_path: Path, table: str, word: str) -> int:
    db = sqlite3.connect(db_path)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table} WHERE {table} MATCH ?", (f'"{word}"',)).fetchone()[0])
    finally:
        db.close()


def test_a_store_written_under_old_rules_is_cleaned_on_the_next_ingest(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=2)
    lmm("init", "--repo", str(repo))
    store = store_dir(repo)
    db_path = store / "lmm.db"
    _write_old_store(db_path)
    before = _file_bytes(store)
    assert all(s.encode() in before for s in SECRETS), "the simulated old store holds the secrets"
    assert _fts_hits(db_path, "episodes_fts", OPENAI_STYLE_KEY) == 1

    out = lmm_json("ingest", "--repo", str(repo))
    assert isinstance(out, dict)
    done = out["rescanned"]
    assert done and done["from_version"] == 0 and done["to_version"] == RULES_VERSION
    assert done["episodes"] >= 2 and done["files"] >= 2 and done["symbols"] >= 1 and done["code_index_cleared"]

    after = _file_bytes(store)
    # FTS5 keeps words lower-cased (and may share a prefix with the word before): both cases are
    # looked for here, and the indexes are queried below.
    left = [s[:12] for s in SECRETS if s.encode() in after or s.lower().encode() in after]
    assert not left, f"old secret bytes survive in the database file: {left}"

    db = sqlite3.connect(db_path)
    try:
        assert db.execute("SELECT value FROM state WHERE key = ?", (RULES_KEY,)).fetchone()[0] == str(RULES_VERSION)
        title, body, data = db.execute("SELECT title, body, data FROM episodes WHERE source = ?", ("f" * 40,)).fetchone()
        assert title == "Configure staging [REDACTED:github-token]"
        assert body == redact("\n".join(v for k, v in OLD_MISSES.items() if k != "note"))
        assert "[REDACTED:prose-secret]" in body
        assert json.loads(data)["note"] == "[REDACTED:slack-token]"
        paths = {p for (p,) in db.execute("SELECT path FROM episode_files")}
        assert "deploy/[REDACTED:stripe-secret-key].env.txt" in paths
        (note,) = db.execute("SELECT title FROM episodes WHERE kind = 'note'").fetchone()
        assert note == redact_note(OLD_MISSES["note"]) == "the admin password is [REDACTED:prose-secret]"
        # the code index was emptied and rebuilt from the working tree by the same ingest
        assert db.execute("SELECT count(*) FROM code_chunks WHERE path = 'old.py'").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM code_chunks").fetchone()[0] > 0
        # the contentless indexes are whole: integrity holds, old words are gone, new ones found
        db.execute("INSERT INTO episodes_fts (episodes_fts, rank) VALUES ('integrity-check', 1)")
        db.execute("INSERT INTO code_fts (code_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        db.close()
    assert _fts_hits(db_path, "episodes_fts", OPENAI_STYLE_KEY) == 0
    assert _fts_hits(db_path, "episodes_fts", "staging") == 1
    assert _fts_hits(db_path, "code_fts", OPENAI_STYLE_KEY) == 0
    lmm("recall", "--repo", str(repo), "--fast", "configure staging")  # the rebuilt index reads cleanly

    # Idempotent: the next capture finds the store current and does nothing.
    again = lmm_json("ingest", "--repo", str(repo))
    assert isinstance(again, dict) and again["rescanned"] is None


def test_the_hook_drainer_rescans_too(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=1)
    lmm("init", "--repo", str(repo))
    store = store_dir(repo)
    _write_old_store(store / "lmm.db")
    commit_file(repo, "src/new.py", "x = 1\n", "Add new module")  # the post-commit hook wakes the drainer
    wait_for_drain(repo)
    data = _file_bytes(store)
    left = [s[:12] for s in SECRETS if s.encode() in data or s.lower().encode() in data]
    assert not left, f"old secret bytes survive a hook-driven capture: {left}"


def test_a_fresh_store_is_current_from_its_first_capture(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=1)
    out = lmm_json("init", "--repo", str(repo))
    assert isinstance(out, dict)
    db = sqlite3.connect(store_dir(repo) / "lmm.db")
    try:
        assert db.execute("SELECT value FROM state WHERE key = ?", (RULES_KEY,)).fetchone()[0] == str(RULES_VERSION)
    finally:
        db.close()


# Columns that hold no free text: kinds, statuses, hashes, shas, model ids, the state's keys.
NOT_FREE_TEXT: dict[str, set[str]] = {
    "_migrations": {"name"},
    "episodes": {"kind", "tier", "superseded_by"},
    "episode_files": {"status"},
    "commit_parents": {"sha", "parent"},
    "rewrites": {"old_sha", "new_sha", "kind"},
    "tips": {"sha"},
    "state": {"key"},
    "code_files": {"hash", "lang"},
    "code_symbols": {"kind"},
    "code_chunks": {"hash"},
    "vectors": {"model", "hash"},
}


def test_every_text_column_is_known_to_the_rescan(tmp_path: Path) -> None:
    """A new table or column holding text must be added to capture/rescan.py (TEXT_COLUMNS, and
    the pass itself), or here when it holds no free text; otherwise a store upgraded from older
    rules would keep whatever that column holds."""
    repo = make_repo(tmp_path / "r", commits=2)
    lmm("init", "--repo", str(repo))
    db = sqlite3.connect(store_dir(repo) / "lmm.db")
    try:
        virtual = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL TABLE%'")}
        shadows = {n for n in (r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
                   if any(n.startswith(v + "_") for v in virtual)}
        unknown: list[str] = []
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            if table in virtual or table in shadows or table.startswith("sqlite_"):
                continue
            for row in db.execute(f"PRAGMA table_info('{table}')").fetchall():
                column, kind = row[1], (row[2] or "").upper()
                if "INT" in kind or "REAL" in kind or "BLOB" in kind:
                    continue
                if column not in TEXT_COLUMNS.get(table, ()) and column not in NOT_FREE_TEXT.get(table, set()):
                    unknown.append(f"{table}.{column}")
    finally:
        db.close()
    assert not unknown, f"text columns the re-redaction pass does not cover: {unknown}"


# --------------------------------------------------------------------------
# Control characters never reach what lmm prints
# --------------------------------------------------------------------------

_HOSTILE = "\x1b[31mRed\x1b[0m alert \x07 bell \x1b]0;pwned\x07 title\rOVERWRITE \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ \u202eevil"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _controls(text: str) -> list[str]:
    return sorted({repr(c) for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F
                   or 0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069})


def test_control_characters_in_a_commit_never_reach_the_output(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commits=1)
    (repo / "alert.py").write_text("def alert():\n    return 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-F", "-", input=_HOSTILE + "\n\nbody \x1b[2J cleared\x07\n")
    lmm("init", "--repo", str(repo))
    lmm("remember", "--repo", str(repo), "note \x1b[31mred\x1b[0m about alert.py\x07")
    r = str(repo)
    for args in (("log", "--repo", r, "-n", "50"), ("recall", "--repo", r, "--fast", "red alert title"),
                 ("brief", "--repo", r)):
        out = lmm(*args).stdout
        assert "alert" in out.lower() or args[0] == "brief"
        assert not _controls(out), (args[0], _controls(out))
    for args in (("log", "--repo", r, "-n", "50"), ("recall", "--repo", r, "--fast", "red alert title"),
                 ("brief", "--repo", r)):
        data = lmm_json(*args)
        strings = _strings(data)
        bad = [s for s in strings if _controls(s)]
        assert not bad, (args[0], bad[:3])
    entries = lmm_json("log", "--repo", r, "-n", "50")
    titles = [e["title"] for e in entries]  # type: ignore[index,union-attr]
    assert "Red alert  bell  titleOVERWRITE link evil" in titles
