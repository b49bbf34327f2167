"""The session readers on transcripts shaped like the real ones (Claude Code 2.1, Codex 0.17, aider):
prompts, answers, files, commands and failures, corrections; injected context and lmm's own echo left
out; unknown records, a half-written last line and bytes that are not UTF-8 survived."""

from __future__ import annotations

import json
from pathlib import Path

from lmm_cli.capture.sessions import aider, claude, codex
from lmm_cli.capture.sessions.model import LMM_MARK, corrections, strip_injected

SID = "dcee55b3-ca05-40c9-9d63-bb305e4598e1"


def _claude_lines(cwd: str) -> list[dict]:
    base = {"sessionId": SID, "cwd": cwd, "gitBranch": "main", "version": "2.1.197", "isSidechain": False}
    return [
        {"type": "queue-operation", "operation": "enqueue", "timestamp": "2026-11-27T10:00:00.000Z", "sessionId": SID},
        {**base, "type": "user", "uuid": "u1", "timestamp": "2026-11-27T10:00:01.000Z",
         "message": {"role": "user", "content": "No, don't use print statements. Fix the login timeout in auth/session.py"}},
        {**base, "type": "attachment", "uuid": "a1", "timestamp": "2026-11-27T10:00:01.100Z",
         "attachment": {"type": "hook_success", "content": f"{LMM_MARK}\n# lmm recall: login timeout\n- auth/session.py"}},
        {**base, "type": "user", "uuid": "m1", "isMeta": True, "timestamp": "2026-11-27T10:00:01.200Z",
         "message": {"role": "user", "content": "<system-reminder>injected context</system-reminder>"}},
        {**base, "type": "assistant", "uuid": "x1", "timestamp": "2026-11-27T10:00:02.000Z",
         "message": {"role": "assistant", "content": [
             {"type": "thinking", "thinking": "hmm"},
             {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": f"{cwd}/auth/session.py"}},
             {"type": "tool_use", "id": "t2", "name": "Bash", "input": {"command": "pytest tests/test_auth.py -q"}}]}},
        {**base, "type": "user", "uuid": "r1", "timestamp": "2026-11-27T10:00:03.000Z",
         "message": {"role": "user", "content": [
             {"type": "tool_result", "tool_use_id": "t1", "content": "def login(): ..."},
             {"type": "tool_result", "tool_use_id": "t2", "is_error": True,
              "content": [{"type": "text", "text": "FAILED tests/test_auth.py::test_timeout\n1 failed"}]}]}},
        {**base, "type": "assistant", "uuid": "x2", "timestamp": "2026-11-27T10:00:04.000Z",
         "message": {"role": "assistant", "content": [
             {"type": "tool_use", "id": "t3", "name": "Edit", "input": {"file_path": f"{cwd}/auth/session.py",
                                                                         "old_string": "30", "new_string": "300"}},
             {"type": "text", "text": "Raised the timeout to 300 s; the test passes now."}]}},
        {"type": "mystery-record-from-the-future", "payload": [1, 2, 3]},
        {**base, "type": "user", "uuid": "u2", "timestamp": "2026-11-27T10:05:00.000Z",
         "message": {"role": "user", "content": [{"type": "text", "text": "Thanks. Always run the linter before committing."}]}},
        {"type": "summary", "summary": "Fix login timeout", "leafUuid": "u2"},
    ]


def _write_jsonl(path: Path, lines: list[dict], tail: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for obj in lines:
            f.write(json.dumps(obj).encode() + b"\n")
        f.write(tail)
    return path


def test_claude_transcript(tmp_path: Path) -> None:
    cwd = str(tmp_path / "repo")
    path = _write_jsonl(tmp_path / "t.jsonl", _claude_lines(cwd),
                        tail=b"not json at all\n\xff\xfe garbage bytes\n" + b'{"type": "user", "uuid": "half')
    s = claude.read(path)
    assert (s.id, s.cwd, s.branch, s.title) == (SID, cwd, "main", "Fix login timeout")
    assert [t.id for t in s.turns] == ["u1", "u2"]
    first, second = s.turns
    assert first.prompt == "No, don't use print statements. Fix the login timeout in auth/session.py"
    assert first.corrections == ["No, don't use print statements."]
    assert first.read == [f"{cwd}/auth/session.py"] and first.edited == [f"{cwd}/auth/session.py"]
    assert [(c.command, c.failed) for c in first.commands] == [("pytest tests/test_auth.py -q", True)]
    assert "1 failed" in first.commands[0].error
    assert first.answer == "Raised the timeout to 300 s; the test passes now." and not first.open
    assert second.corrections == ["Always run the linter before committing."] and second.open
    assert all(LMM_MARK not in t.prompt and "lmm recall" not in t.prompt for t in s.turns)


def test_claude_reads_on_from_an_offset(tmp_path: Path) -> None:
    lines = _claude_lines(str(tmp_path))
    path = _write_jsonl(tmp_path / "t.jsonl", lines)
    whole = claude.read(path)
    again = claude.read(path, whole.turns[-1].offset)
    assert [t.id for t in again.turns] == ["u2"] and again.turns[0].prompt == whole.turns[-1].prompt


def test_claude_finds_transcripts_and_subagents(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "cfg"))
    proj = tmp_path / "cfg" / "projects" / "-tmp-repo"
    _write_jsonl(proj / f"{SID}.jsonl", _claude_lines("/tmp/repo"))
    _write_jsonl(proj / SID / "subagents" / "agent-1.jsonl", _claude_lines("/tmp/repo"))
    found = list(claude.transcripts())
    assert [(p.name, parent) for p, parent in found] == [(f"{SID}.jsonl", None), ("agent-1.jsonl", SID)]
    assert claude.first_cwd(found[0][0]) == "/tmp/repo"
    sub = claude.read(found[1][0], sidechain=True)
    assert sub.turns and not any(t.by_user or t.corrections for t in sub.turns)


def test_codex_rollout(tmp_path: Path) -> None:
    cwd = str(tmp_path / "repo")
    patch = "*** Begin Patch\n*** Update File: src/app.py\n@@\n-a\n+b\n*** Add File: src/new.py\n+x\n*** End Patch\n"
    lines = [
        {"timestamp": "2026-11-27T10:00:00Z", "type": "session_meta",
         "payload": {"id": "0199-abc", "cwd": cwd, "cli_version": "0.171.0", "git": {"branch": "feature/x"}}},
        {"timestamp": "2026-11-27T10:00:01Z", "type": "response_item", "payload": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "<environment_context>\n  <cwd>/x</cwd>\n</environment_context>"}]}},
        {"timestamp": "2026-11-27T10:00:02Z", "type": "response_item", "payload": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Never touch the vendored code. Fix app.py"}]}},
        {"timestamp": "2026-11-27T10:00:03Z", "type": "event_msg", "payload": {"type": "user_message", "message": "dup"}},
        {"timestamp": "2026-11-27T10:00:04Z", "type": "response_item", "payload": {
            "type": "function_call", "name": "shell", "call_id": "c1",
            "arguments": json.dumps({"command": ["bash", "-lc", "make test"]})}},
        {"timestamp": "2026-11-27T10:00:05Z", "type": "response_item", "payload": {
            "type": "function_call_output", "call_id": "c1",
            "output": json.dumps({"output": "error: 2 tests failed", "metadata": {"exit_code": 2}})}},
        {"timestamp": "2026-11-27T10:00:06Z", "type": "response_item", "payload": {
            "type": "custom_tool_call", "name": "apply_patch", "call_id": "c2", "input": patch}},
        {"timestamp": "2026-11-27T10:00:07Z", "type": "response_item", "payload": {
            "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Fixed app.py."}]}},
    ]
    s = codex.read(_write_jsonl(tmp_path / "rollout-2026-11-27T10-00-00-0199-abc.jsonl", lines))
    assert (s.id, s.cwd, s.branch) == ("0199-abc", cwd, "feature/x")
    assert len(s.turns) == 1
    t = s.turns[0]
    assert t.prompt == "Never touch the vendored code. Fix app.py"
    assert t.corrections == ["Never touch the vendored code."]
    assert [(c.command, c.failed) for c in t.commands] == [("make test", True)] and "2 tests failed" in t.commands[0].error
    assert t.edited == ["src/app.py", "src/new.py"] and t.answer == "Fixed app.py."


def test_aider_history(tmp_path: Path) -> None:
    text = (
        "# aider chat started at 2026-11-20 09:00:00\n\n"
        "> Add src/app.py to the chat\n\n"
        "#### Make the retry limit configurable\n"
        "#### and no, don't hardcode 3 again.\n\n"
        "I will add a setting.\n\n"
        "> Applied edit to src/app.py\n"
        "> Running pytest -q\n\n"
        "# aider chat started at 2026-11-21 10:00:00\n\n"
        "#### thanks\n\nYou're welcome.\n"
        "#### half a line being writ"
    )
    path = tmp_path / aider.HISTORY
    path.write_bytes(text.encode())
    sessions = aider.read(path)
    assert [s.id for s in sessions] == ["aider-2026-11-20T09:00:00", "aider-2026-11-21T10:00:00"]
    t = sessions[0].turns[0]
    assert t.prompt == "Make the retry limit configurable\nand no, don't hardcode 3 again."
    assert t.edited == ["src/app.py"] and [c.command for c in t.commands] == ["pytest -q"]
    assert t.answer == "I will add a setting." and not t.open
    assert t.corrections == ["no, don't hardcode 3 again."]
    later = aider.read(path, sessions[1].offset)
    assert [s.id for s in later] == ["aider-2026-11-21T10:00:00"] and later[0].turns[0].answer == "You're welcome."


def test_corrections_are_instructions_not_requests() -> None:
    assert corrections("No, use httpx instead of requests.") == ["No, use httpx instead of requests."]
    assert corrections("Use the logger in foo.py to report it") == []
    assert corrections("I don't know why it fails") == []
    assert corrections("Stop adding type: ignore comments! Thanks") == ["Stop adding type: ignore comments!"]


def test_injected_text_is_not_the_users() -> None:
    assert strip_injected("<system-reminder>x</system-reminder>Fix it") == "Fix it"
    assert strip_injected(f"real words\n{LMM_MARK}\n# lmm recall …") == "real words"
