"""`lmm hook EVENT` as Claude Code and Codex run it: JSON on stdin, context on stdout, exit 0.

SessionStart gives the session brief; UserPromptSubmit gives a recall only for a prompt about
something the memory knows, and silence for "thanks" or "run the tests", under both gates (lexical
without embeddings, dense with them); SessionEnd starts the transcript capture and returns at once.
Whatever goes wrong (bad JSON, no store, no repository, a damaged store) the hook exits 0, prints
nothing and says why in logs/hooks.log."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import commit_file, lmm, lmm_json, make_repo, store_dir, wait_for_log

MARK = "<!-- lmm -->"


def hook(event: str, payload: object, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The hook exactly as an assistant runs it: the `lmm` script, the payload on stdin."""
    lmm_script = Path(sys.executable).parent / "lmm"
    data = payload if isinstance(payload, str) else json.dumps(payload)
    base = {k: v for k, v in os.environ.items() if k != "CLAUDE_PROJECT_DIR"}
    return subprocess.run([str(lmm_script), "hook", event], input=data, cwd=cwd, capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=60)


def context(p: subprocess.CompletedProcess[str], event: str) -> str:
    """The text a hook gave the model ("" when it said nothing); it always exits 0 and never writes stderr."""
    assert p.returncode == 0 and p.stderr == "", p.stderr
    if not p.stdout.strip():
        return ""
    out = json.loads(p.stdout)
    assert out["hookSpecificOutput"]["hookEventName"] == event
    text: str = out["hookSpecificOutput"]["additionalContext"]
    assert text.startswith(MARK + "\n")  # transcript capture knows lmm's own words by this
    return text


def build_repo(path: Path) -> Path:
    r = make_repo(path, commits=12)
    commit_file(r, "src/upload/retry.py", "def retry_upload(n):\n    return n * 2\n", "Retry uploads twice before giving up")
    commit_file(r, "src/upload/retry.py", "def retry_upload(n):\n    # the CDN drops the first try\n    return n * 3\n",
                "Fix upload retry counting: three tries, the CDN drops the first")
    commit_file(r, "src/billing/invoice.py", "def render_invoice(lines):\n    return sum(lines)\n",
                "Render invoices from their lines")
    commit_file(r, "Makefile", "test:\n\tpytest -q\n", "Add a make target for the tests")
    return r


@pytest.fixture(scope="module")
def lexical_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import module_environment

    base = tmp_path_factory.mktemp("lexical")
    with module_environment(base):
        r = build_repo(base / "r")
        lmm("init", "--repo", str(r), "--no-hooks")  # no embeddings: the lexical gate decides
    return r


@pytest.fixture
def repo(lexical_repo: Path, tmp_path: Path) -> Path:
    """A copy of the module's repository and its store, for this test's LMM_HOME."""
    import shutil

    home = lexical_repo.parent / "lmm-home"
    shutil.copytree(home, Path(os.environ["LMM_HOME"]), dirs_exist_ok=True)
    return lexical_repo


SOURCES = ("startup", "resume", "clear", "compact")


@pytest.mark.parametrize("source", SOURCES)
def test_session_start_gives_the_session_brief(repo: Path, source: str) -> None:
    p = hook("session-start", {"session_id": "s1", "cwd": str(repo), "hook_event_name": "SessionStart",
                               "source": source, "transcript_path": "/nowhere.jsonl"}, repo)
    text = context(p, "SessionStart")
    assert 200 < len(text) < 10_000  # Claude Code moves anything over 10,000 characters to a file
    assert "## Conventions" in text and "src/upload" in text
    assert "## Layout" not in text and "## Central modules" not in text  # overviews do not help agents
    assert "`recall`" in text  # names the tool that answers the rest


def test_session_start_from_a_subfolder_and_from_claude_project_dir(repo: Path, tmp_path: Path) -> None:
    sub = repo / "src" / "upload"
    assert context(hook("SessionStart", {"cwd": str(sub), "source": "startup"}, tmp_path), "SessionStart")
    # No cwd in the payload: Claude Code's CLAUDE_PROJECT_DIR, then the working directory.
    assert context(hook("SessionStart", {}, tmp_path, env={"CLAUDE_PROJECT_DIR": str(repo)}), "SessionStart")
    assert context(hook("SessionStart", {}, sub), "SessionStart")


RELEVANT = "why does the upload retry count twice?"
CHAT = ["thanks", "Thanks!", "run the tests", "ok, continue", "looks good, commit it", "let's stop here for today",
        "write a haiku about autumn"]


def test_prompt_about_the_code_gets_a_recall(repo: Path) -> None:
    p = hook("user-prompt-submit", {"cwd": str(repo), "hook_event_name": "UserPromptSubmit", "prompt": RELEVANT}, repo)
    text = context(p, "UserPromptSubmit")
    assert "`src/upload/retry.py`" in text and "three tries" in text
    assert len(text) < 4 * 600 * 1.5  # within the prompt budget of 600 tokens
    assert "recall_id" in text  # so the model can give feedback


@pytest.mark.parametrize("prompt", CHAT)
def test_chat_gets_silence(repo: Path, prompt: str) -> None:
    p = hook("user-prompt-submit", {"cwd": str(repo), "prompt": prompt}, repo)
    assert context(p, "UserPromptSubmit") == ""


def test_the_lexical_gate_both_ways(repo: Path) -> None:
    from lmm_cli import core
    from lmm_cli.workspace import open_workspace

    ws = open_workspace(repo)
    hit = core.prompt_context(ws, RELEVANT)
    assert hit["inject"] and hit["dense"] is None and hit["specificity"] >= core.SPECIFIC
    named = core.prompt_context(ws, "rename render_invoice")  # a code name the memory has
    assert named["inject"] and named["why"] == "the prompt names it"
    # Subject words, but spread thin: "count" and "lines" are in the memory, never together in one place.
    thin = core.prompt_context(ws, "count the lines of the report")
    assert not thin["inject"] and thin["specificity"] < core.SPECIFIC, thin
    assert core.prompt_context(ws, "run the tests")["why"] == "the prompt names nothing to recall"


def test_the_dense_gate_both_ways(tmp_path: Path) -> None:
    r = build_repo(tmp_path / "dense")
    lmm("init", "--repo", str(r), "--no-hooks", embed=True)
    from lmm_cli import core
    from lmm_cli.workspace import open_workspace

    ws = open_workspace(r)
    hit = core.prompt_context(ws, RELEVANT)
    assert hit["inject"] and hit["dense"] >= core.DENSE_GATE, hit
    for chat in ("good morning, how was your weekend", "write a haiku about autumn", "I disagree with that approach"):
        out = core.prompt_context(ws, chat)
        assert not out["inject"], (chat, out)


def test_session_end_starts_the_capture_and_returns_at_once(repo: Path, tmp_path: Path) -> None:
    transcript = tmp_path / "home" / ".claude" / "projects" / "-r" / "5e55-10n.jsonl"
    transcript.parent.mkdir(parents=True)
    records = [
        {"type": "user", "uuid": "u1", "sessionId": "5e55-10n", "cwd": str(repo), "timestamp": "2026-11-20T10:00:00Z",
         "message": {"role": "user", "content": "No, don't retry uploads more than three times."}},
        {"type": "assistant", "uuid": "a1", "parentUuid": "u1", "sessionId": "5e55-10n", "cwd": str(repo),
         "timestamp": "2026-11-20T10:00:05Z",
         "message": {"role": "assistant", "content": [{"type": "text", "text": "Understood: three at most."}]}},
    ]
    transcript.write_text("".join(json.dumps(r) + "\n" for r in records))
    t0 = time.monotonic()
    p = hook("session-end", {"session_id": "5e55-10n", "cwd": str(repo), "hook_event_name": "SessionEnd",
                             "reason": "exit", "transcript_path": str(transcript)}, repo)
    wall = time.monotonic() - t0
    assert context(p, "SessionEnd") == "" and wall < 2.5  # Claude Code gives SessionEnd hooks about 1.5 s
    # The capture job it started writes the hook's line (the hook itself knows no store).
    log = wait_for_log(store_dir(repo) / "logs" / "hooks.log", "session-end capture pid=")
    line = next(ln for ln in log.splitlines() if "session-end capture pid=" in ln)
    assert "final=1" in line and "transcript=yes" in line, line
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if lmm_json("status", "--repo", str(repo))["by_kind"].get("session"):  # type: ignore[index]
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"the session was not captured: {(store_dir(repo) / 'logs').iterdir()}")


def test_pre_compact_and_stop_capture_without_final(repo: Path) -> None:
    for event in ("pre-compact", "PreCompact", "stop"):
        assert context(hook(event, {"cwd": str(repo), "transcript_path": "/gone.jsonl"}, repo), "x") == ""
    log = wait_for_log(store_dir(repo) / "logs" / "hooks.log", "capture pid=", count=3)
    lines = [ln for ln in log.splitlines() if "capture pid=" in ln]
    assert len(lines) == 3 and all("final=0" in ln for ln in lines), lines
    assert sorted(ln.split()[-6] for ln in lines) == ["pre-compact", "pre-compact", "stop"], lines


def test_after_file_edit_feeds_the_working_set(repo: Path) -> None:
    payload = {"conversation_id": "c1", "hook_event_name": "afterFileEdit", "workspace_roots": [str(repo)],
               "file_path": str(repo / "src" / "upload" / "retry.py"), "edits": []}
    assert context(hook("after-file-edit", payload, repo), "x") == ""
    db = sqlite3.connect(store_dir(repo) / "lmm.db")
    rows = db.execute("SELECT path, via FROM activity").fetchall()
    db.close()
    assert rows == [("src/upload/retry.py", "cursor")]
    assert not (store_dir(repo) / "working-set.jsonl").exists()  # nothing written that nobody reads


@pytest.mark.parametrize("event", ["session-start", "user-prompt-submit", "session-end", "no-such-event"])
@pytest.mark.parametrize("payload", ["", "not json {", "[1, 2]", '"a string"', '{"cwd": 42, "prompt": ["x"]}'],
                         ids=["empty", "garbage", "list", "string", "wrong-types"])
def test_bad_input_is_silence(repo: Path, event: str, payload: str) -> None:
    p = hook(event, payload, repo)
    assert p.returncode == 0 and p.stderr == ""
    if event == "session-start":  # no payload to go by: the repository around the working directory
        assert p.stdout.startswith('{"hookSpecificOutput"')
    else:
        assert p.stdout == ""


def test_no_repository_no_store_damaged_store_are_silence(repo: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    uninit = make_repo(tmp_path / "uninit", commits=1)
    for where in (plain, uninit, tmp_path / "missing"):
        for event in ("session-start", "user-prompt-submit", "session-end"):
            p = hook(event, {"cwd": str(where), "prompt": RELEVANT, "transcript_path": "/x.jsonl"}, plain)
            assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    store = store_dir(repo)
    (store / "lmm.db").write_bytes(b"this is no database" * 100)
    for event in ("session-start", "user-prompt-submit"):
        p = hook(event, {"cwd": str(repo), "prompt": RELEVANT}, repo)
        assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    log = (store / "logs" / "hooks.log").read_text()
    assert "error StoreCorrupt" in log


def test_cli_help_and_fast_path() -> None:
    p = lmm("hook", "--help")
    assert "Always exits 0" in p.stdout
    p = lmm("hook", check=False)  # the event is required: a usage error, as for any command
    assert p.returncode == 2
