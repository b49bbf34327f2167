"""Claude Code's own auto-memory files (``<config>/projects/<project>/memory/*.md``) become notes: one per
bullet or paragraph, headings kept as context, only for project folders whose transcripts are this
repository's, incrementally (an unchanged file is not read again, the same entry stored once), redacted,
and never lmm's own injected text."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from lmm_cli.capture.sessions.memory import entries
from lmm_cli.capture.sessions.model import LMM_MARK

from conftest import commit_file, lmm, lmm_json, make_repo, store_dir

SID = "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"
OTHER_SID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
GH = "ghp_" + "Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lz9Xc8Zx9"


def project_dir(config: Path, cwd: Path) -> Path:
    return config / "projects" / "".join(c if c.isalnum() else "-" for c in str(cwd))


def transcript(folder: Path, cwd: Path, sid: str) -> Path:
    ts = "2026-11-20T10:00:00.000Z"
    base = {"cwd": str(cwd), "sessionId": sid, "version": "2.1.197", "gitBranch": "main", "timestamp": ts,
            "isSidechain": False, "parentUuid": None}
    recs = [{**base, "type": "user", "uuid": "u1", "message": {"role": "user", "content": "Fix the login timeout"}},
            {**base, "type": "assistant", "uuid": "a1", "message": {"role": "assistant", "content": [
                {"type": "text", "text": "Done."}]}}]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sid}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    old = time.time() - 7200
    os.utime(path, (old, old))
    return path


MEMORY_MD = f"""# Project memory

- [Testing](testing.md) — how the tests run
- The staging deploy needs `make deploy-staging`, never a plain push
- Release tags are signed; the GitHub token is {GH}
  and lives in the CI secrets only
{LMM_MARK} What lmm remembers: quokkafish
- `src/auth/session.py` — zebracorn (`session 2026-11-20`)

## Conventions

Timeouts live in src/auth/session.py and are in seconds,
not milliseconds.
"""

TESTING_MD = """---
name: testing
description: how the tests run
type: project
---

# Testing

1. Run `pytest -q -x` before every commit; the slow suite is marked `slow`.
2. The fixtures copy a template repository instead of running git.
"""


def _notes(repo: Path) -> list[dict[str, Any]]:
    rows = lmm_json("log", "--repo", str(repo), "--kind", "note", "-n", "1000")
    assert isinstance(rows, list)
    return rows


def _ingest(repo: Path) -> dict[str, Any]:
    out = lmm_json("ingest", "--repo", str(repo), "--sessions")
    assert isinstance(out, dict)
    return out["sessions"]  # type: ignore[no-any-return]


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    config = tmp_path / "claude-config"
    config.mkdir()
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config))
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex-home"))
    repo = make_repo(tmp_path / "r", commits=2)
    commit_file(repo, "src/auth/session.py", "TIMEOUT = 30\n", "Add the login session timeout")
    lmm("init", "--repo", str(repo), "--no-hooks")
    return repo, config


def test_memory_files_become_notes_once(setup: tuple[Path, Path], tmp_path: Path) -> None:
    repo, config = setup
    ours = project_dir(config, repo)
    transcript(ours, repo, SID)
    (ours / "memory").mkdir()
    (ours / "memory" / "MEMORY.md").write_text(MEMORY_MD)
    (ours / "memory" / "testing.md").write_text(TESTING_MD)
    other_repo = tmp_path / "elsewhere"
    other_repo.mkdir()
    theirs = project_dir(config, other_repo)
    transcript(theirs, other_repo, OTHER_SID)
    (theirs / "memory").mkdir()
    (theirs / "memory" / "MEMORY.md").write_text("- The other project deploys with capybara-ship\n")

    got = _ingest(repo)
    assert got["memory"] == 5 and got["memory_files"] == 2, got
    notes = {n["title"]: n for n in _notes(repo) if n["data"].get("kind") == "claude-memory"}
    assert set(notes) == {
        "The staging deploy needs `make deploy-staging`, never a plain push",
        "Release tags are signed; the GitHub token is [REDACTED:github-token]",
        "Timeouts live in src/auth/session.py and are in seconds,",
        "Run `pytest -q -x` before every commit; the slow suite is marked `slow`.",
        "The fixtures copy a template repository instead of running git.",
    }, list(notes)
    timeouts = next(n for t, n in notes.items() if t.startswith("Timeouts"))
    assert timeouts["data"] == {"kind": "claude-memory", "file": "MEMORY.md"}
    assert "not milliseconds" in timeouts["body"] and "Conventions" in timeouts["body"]
    assert timeouts["salience"] == pytest.approx(0.8)
    release = next(n for t, n in notes.items() if t.startswith("Release tags"))
    assert "CI secrets" in release["body"]
    assert {n["data"]["file"] for n in notes.values()} == {"MEMORY.md", "testing.md"}

    again = _ingest(repo)
    assert again["memory"] == 0 and again["memory_files"] == 0, again  # unchanged files are not even read
    assert len(_notes(repo)) == len(notes)

    # A new entry appended: only it is new; the rest is stored once.
    with open(ours / "memory" / "MEMORY.md", "a") as f:
        f.write("\n- The CLI exits 2 on a bad argument\n")
    assert _ingest(repo)["memory"] == 1

    stored = b"".join(p.read_bytes() for p in sorted(store_dir(repo).glob("lmm.db*")) if p.is_file())
    for absent in (GH.encode(), GH[4:20].encode(), b"capybara", b"quokkafish", b"zebracorn", LMM_MARK.encode()):
        assert absent not in stored, absent


def test_entries_split() -> None:
    text = ("---\nname: x\n---\n# A\n## B\n- one\n  - sub of one\n- two\n\n```sh\nmake x\n\nmake y\n```\n\n"
            "para one\nstill one\n\npara two\n- [Link](t.md) — hook\n")
    got = [(e.text, e.section) for e in entries(text, ["t.md"])]
    assert got == [("one\n  - sub of one", "A › B"), ("two", "A › B"), ("```sh\nmake x\n\nmake y\n```", "A › B"),
                   ("para one\nstill one", "A › B"), ("para two", "A › B")]


def test_an_entry_deleted_from_claude_memory_is_superseded_not_deleted(setup: tuple[Path, Path]) -> None:
    """Claude Code dropped an entry (or a whole topic file): lmm stops citing it, and keeps what it said."""
    repo, config = setup
    ours = project_dir(config, repo)
    transcript(ours, repo, SID)
    (ours / "memory").mkdir()
    memory_md = ours / "memory" / "MEMORY.md"
    memory_md.write_text(MEMORY_MD)
    (ours / "memory" / "testing.md").write_text(TESTING_MD)
    lmm("remember", "--repo", str(repo), "Run `pytest -q -x` before every commit; the slow suite is marked `slow`.")
    assert _ingest(repo)["memory"] == 4  # the pytest entry was a person's note first: it is theirs
    staging = "The staging deploy needs `make deploy-staging`, never a plain push"

    def recalled(query: str) -> str:
        return json.dumps(lmm_json("recall", query, "--repo", str(repo)))

    assert "make deploy-staging" in recalled("how do I deploy to staging")

    # The staging entry is deleted and the timeouts paragraph rewritten; the topic file is removed.
    text = MEMORY_MD.replace(f"- {staging}\n", "").replace("are in seconds,\nnot milliseconds.",
                                                           "are in milliseconds since 2026-11.")
    text = text.replace("- [Testing](testing.md) — how the tests run\n", "")  # its index line goes with it
    assert text != MEMORY_MD and staging not in text
    memory_md.write_text(text)
    (ours / "memory" / "testing.md").unlink()
    got = _ingest(repo)
    assert (got["memory"], got["memory_retired"]) == (1, 3), got  # new timeouts; staging, old timeouts, fixtures

    live = {n["title"] for n in _notes(repo)}
    assert staging not in live and "The fixtures copy a template repository instead of running git." not in live
    assert "Run `pytest -q -x` before every commit; the slow suite is marked `slow`." in live  # the person's note
    every = {n["title"]: n for n in lmm_json("log", "--repo", str(repo), "--kind", "note", "-n", "100", "--all")}  # type: ignore[union-attr]
    assert every[staging]["valid_to"] is not None and every[staging]["superseded_by"] is None  # kept, closed
    new_timeouts = every["Timeouts live in src/auth/session.py and are in milliseconds since 2026-11."]
    old_timeouts = every["Timeouts live in src/auth/session.py and are in seconds,"]
    assert old_timeouts["valid_to"] is not None and old_timeouts["superseded_by"] == new_timeouts["source"]
    assert new_timeouts["valid_to"] is None
    assert "make deploy-staging" not in recalled("how do I deploy to staging")
    assert _ingest(repo)["memory_retired"] == 0  # nothing read again, nothing retired twice

    # The entry comes back: it is valid again, still one note.
    memory_md.write_text(text + f"\n- {staging}\n")
    got = _ingest(repo)
    assert got["memory"] == 0 and got["memory_retired"] == 0, got
    assert [n["title"] for n in _notes(repo)].count(staging) == 1
    assert "make deploy-staging" in recalled("how do I deploy to staging")
