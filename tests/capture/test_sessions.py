"""Assistant sessions captured into the memory, on real repositories and transcripts in the real formats
(Claude Code 2.1 main sessions and worktrees, Codex CLI rollouts, aider's chat history): finished turns
become episodes with repository-relative files, corrections become notes, capture is incremental by
file offset (nothing twice; an appended turn exactly once; the last turn when the session ends), other
repositories' sessions are left alone, broken transcripts are captured up to what is whole, secrets and
lmm's own injected text never reach the store, and recall and the briefs cite session turns and show
open threads."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lmm_cli.capture.sessions import ingest as sessions_ingest
from lmm_cli.capture.sessions.aider import HISTORY
from lmm_cli.capture.sessions.ingest import capture_sessions
from lmm_cli.capture.sessions.model import LMM_MARK
from lmm_cli.workspace import open_workspace

from conftest import commit_file, git, lmm, lmm_json, make_repo, store_dir

SID = "dcee55b3-ca05-40c9-9d63-bb305e4598e1"
SID2 = "7a1f0c2e-5b3d-4e8f-9a6b-0c1d2e3f4a5b"
OTHER_SID = "0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b"

_ids = itertools.count(1)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def append_jsonl(path: Path, records: list[dict[str, Any]], tail: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        for r in records:
            f.write(json.dumps(r).encode() + b"\n")
        f.write(tail)
    return path


def project_dir(config: Path, cwd: Path) -> Path:
    """Where Claude Code keeps a project's transcripts: the cwd with every non-alphanumeric made '-'."""
    return config / "projects" / "".join(c if c.isalnum() else "-" for c in str(cwd))


class Claude:
    """Records of one Claude Code session, shaped like 2.1's (uuid chain, cwd, gitBranch, version…)."""

    def __init__(self, cwd: Path | str, sid: str, *, branch: str = "main", start: float | None = None) -> None:
        self.cwd = str(cwd)
        self.sid = sid
        self.branch = branch
        self.ts = start if start is not None else time.time() - 1800
        self.parent: str | None = None
        self.records: list[dict[str, Any]] = []

    def _base(self, kind: str, **kw: Any) -> dict[str, Any]:
        self.ts += 1
        uid = f"{kind[0]}{next(_ids):07d}-0000-4000-8000-{self.sid[-12:]}"
        rec = {"parentUuid": self.parent, "isSidechain": False, "userType": "external", "cwd": self.cwd,
               "sessionId": self.sid, "version": "2.1.197", "gitBranch": self.branch, "type": kind,
               "uuid": uid, "timestamp": iso(self.ts), **kw}
        self.parent = uid
        self.records.append(rec)
        return rec

    def user(self, text: str | list[dict[str, Any]]) -> str:
        return str(self._base("user", message={"role": "user", "content": text})["uuid"])

    def meta(self, text: str) -> None:
        self._base("user", isMeta=True, message={"role": "user", "content": text})

    def attachment(self, content: str) -> None:
        self._base("attachment", attachment={"type": "hook_success", "hookName": "SessionStart:startup",
                                             "content": content, "stdout": content, "exitCode": 0})

    def tool(self, name: str, args: dict[str, Any], result: str = "ok", *, error: bool = False) -> None:
        tid = f"toolu_{next(_ids):06d}"
        self._base("assistant", message={"id": f"msg_{next(_ids)}", "type": "message", "role": "assistant",
                                         "model": "claude-sonnet-4-5", "content": [
                                             {"type": "tool_use", "id": tid, "name": name, "input": args}],
                                         "usage": {"input_tokens": 10, "output_tokens": 5}})
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tid, "content": result}
        if error:
            block["is_error"] = True
        self._base("user", message={"role": "user", "content": [block]},
                   toolUseResult={"stdout": result, "stderr": "", "interrupted": False})

    def say(self, text: str) -> None:
        self._base("assistant", message={"id": f"msg_{next(_ids)}", "type": "message", "role": "assistant",
                                         "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": text}],
                                         "stop_reason": "end_turn"})

    def flush(self, path: Path, tail: bytes = b"") -> Path:
        """Append the records made since the last flush."""
        append_jsonl(path, self.records, tail)
        self.records = []
        return path


def codex_rollout(home: Path, cwd: Path | str, sid: str, turns: list[dict[str, Any]], *, start: float | None = None) -> Path:
    """A Codex CLI rollout: session_meta, then per turn the user's message, shell calls, a patch, the answer."""
    ts = start if start is not None else time.time() - 1800
    day = datetime.fromtimestamp(ts, UTC)
    path = home / "sessions" / day.strftime("%Y/%m/%d") / f"rollout-{day.strftime('%Y-%m-%dT%H-%M-%S')}-{sid}.jsonl"
    recs: list[dict[str, Any]] = [
        {"timestamp": iso(ts), "type": "session_meta", "payload": {
            "id": sid, "timestamp": iso(ts), "cwd": str(cwd), "originator": "codex_cli_rs", "cli_version": "0.171.0",
            "git": {"commit_hash": "0" * 40, "branch": "main", "repository_url": "git@example.com:x/y.git"}}},
        {"timestamp": iso(ts), "type": "response_item", "payload": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": f"<environment_context>\n  <cwd>{cwd}</cwd>\n</environment_context>"}]}},
    ]
    for i, t in enumerate(turns):
        at = iso(ts + 10 * (i + 1))
        recs.append({"timestamp": at, "type": "turn_context", "payload": {"cwd": str(cwd), "model": "gpt-5-codex"}})
        recs.append({"timestamp": at, "type": "response_item", "payload": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": t["prompt"]}]}})
        recs.append({"timestamp": at, "type": "event_msg", "payload": {"type": "user_message", "message": t["prompt"]}})
        for j, (cmd, code, output) in enumerate(t.get("commands", [])):
            cid = f"call_{i}_{j}"
            recs.append({"timestamp": at, "type": "response_item", "payload": {
                "type": "function_call", "name": "shell", "call_id": cid,
                "arguments": json.dumps({"command": ["bash", "-lc", cmd], "workdir": str(cwd)})}})
            recs.append({"timestamp": at, "type": "response_item", "payload": {
                "type": "function_call_output", "call_id": cid,
                "output": json.dumps({"output": output, "metadata": {"exit_code": code, "duration_seconds": 0.1}})}})
        if t.get("patch"):
            recs.append({"timestamp": at, "type": "response_item", "payload": {
                "type": "custom_tool_call", "name": "apply_patch", "call_id": f"patch_{i}", "status": "completed",
                "input": t["patch"]}})
        if t.get("answer"):
            recs.append({"timestamp": at, "type": "response_item", "payload": {
                "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": t["answer"]}]}})
    return append_jsonl(path, recs)


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Claude Code's and Codex's folders under tmp_path, as their environment variables name them."""
    claude_dir, codex_dir = tmp_path / "claude-config", tmp_path / "codex-home"
    claude_dir.mkdir()
    codex_dir.mkdir()
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(claude_dir))
    monkeypatch.setenv("CODEX_HOME", str(codex_dir))
    return {"claude": claude_dir, "codex": codex_dir}


def _repo(tmp_path: Path, name: str = "r") -> Path:
    repo = make_repo(tmp_path / name, commits=2)
    commit_file(repo, "src/auth/session.py", "TIMEOUT = 30\n\ndef login(user):\n    return TIMEOUT\n",
                "Add the login session timeout")
    lmm("init", "--repo", str(repo), "--no-hooks")
    return repo


def _sessions(repo: Path) -> list[dict[str, Any]]:
    rows = lmm_json("log", "--repo", str(repo), "--kind", "session", "-n", "1000")
    assert isinstance(rows, list)
    return sorted(rows, key=lambda r: (r["ts"], r["id"]))


def _notes(repo: Path) -> list[dict[str, Any]]:
    rows = lmm_json("log", "--repo", str(repo), "--kind", "note", "-n", "1000")
    assert isinstance(rows, list)
    return rows


def _ingest(repo: Path) -> dict[str, Any]:
    out = lmm_json("ingest", "--repo", str(repo), "--sessions")
    assert isinstance(out, dict)
    return out["sessions"]  # type: ignore[no-any-return]


def _store_bytes(repo: Path) -> bytes:
    d = store_dir(repo)
    return b"".join(p.read_bytes() for p in sorted(d.glob("lmm.db*")) if p.is_file())


def _job(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lmm_cli.jobs.sessions", str(store), *args],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


# ---------------------------------------------------------------------------------------------
# Claude Code: turns, files, corrections, increments, the session's end


def test_claude_turns_become_episodes_incrementally(tmp_path: Path, homes: dict[str, Path]) -> None:
    repo = _repo(tmp_path)
    c = Claude(repo / "src", SID)  # started in a subfolder of the work tree
    first = c.user("No, don't use print statements. Fix the login timeout in auth/session.py")
    c.tool("Read", {"file_path": str(repo / "src/auth/session.py")}, "TIMEOUT = 30")
    c.tool("Read", {"file_path": str(repo / "src/mod0.py")}, "def f0(): ...")
    c.tool("Read", {"file_path": "/etc/hostname"}, "box")  # outside the repository: not recorded
    c.tool("Bash", {"command": "pytest tests/test_auth.py -q"}, "FAILED tests/test_auth.py::test_timeout\n1 failed",
           error=True)
    c.tool("Edit", {"file_path": str(repo / "src/auth/session.py"), "old_string": "30", "new_string": "300"})
    c.say("Raised the login timeout to 300 s; the test passes now.")
    second = c.user("Thanks. Always run the linter before committing.")
    c.say("Will do.")
    transcript = c.flush(project_dir(homes["claude"], repo / "src") / f"{SID}.jsonl")

    other = make_repo(tmp_path / "other", commits=1)  # another repository's session: never captured
    o = Claude(other, OTHER_SID)
    o.user("Refactor the billing module")
    o.say("Done.")
    o.user("Now the invoices")
    o.flush(project_dir(homes["claude"], other) / f"{OTHER_SID}.jsonl")

    got = _ingest(repo)
    assert (got["turns"], got["sessions"], got["corrections"], got["pending"], got["other"], got["skipped"]) == \
        (1, 1, 1, 1, 1, 0), got
    [ep] = _sessions(repo)
    assert ep["source"] == f"claude:{SID}:{first}"
    assert ep["title"] == "No, don't use print statements. Fix the login timeout in auth/session.py"
    assert "Raised the login timeout to 300 s" in ep["body"] and "test_timeout" in ep["body"]
    assert {f["path"]: f["status"] for f in ep["files"]} == {"src/auth/session.py": "E", "src/mod0.py": "V"}
    data = ep["data"]
    assert (data["tool"], data["session"], data["turn"], data["branch"], data["open"]) == \
        ("claude", SID, first, "main", False)
    assert [(x["command"], x["failed"]) for x in data["commands"]] == [("pytest tests/test_auth.py -q", True)]
    assert "1 failed" in data["commands"][0]["error"]
    assert ep["salience"] >= 0.9  # a correction, and a failure
    [note] = _notes(repo)
    assert note["title"] == "No, don't use print statements." and note["salience"] == 1.0
    assert note["data"] == {"kind": "correction", "session": SID, "tool": "claude"}
    assert not any("billing" in e["title"] for e in _sessions(repo) + _notes(repo))

    again = _ingest(repo)  # nothing changed: nothing read, nothing added
    assert (again["turns"], again["corrections"], again["read"], again["files"]) == (0, 0, 0, 1), again

    c.user("Now bump the version in pyproject")  # the session goes on: the second turn is finished now
    c.say("Bumped to 1.2.0.")
    c.flush(transcript)
    more = _ingest(repo)
    assert (more["turns"], more["corrections"], more["pending"]) == (1, 1, 1), more
    eps = _sessions(repo)
    assert [e["data"]["turn"] for e in eps] == [first, second]
    assert sorted(n["title"] for n in _notes(repo)) == ["Always run the linter before committing.",
                                                       "No, don't use print statements."]

    # SessionEnd: the hook starts the job with --final; the last turn is written, marked as the last.
    store = store_dir(repo)
    p = _job(store, str(transcript), "--final")
    assert p.returncode == 0 and p.stdout == "" and p.stderr == ""
    eps = _sessions(repo)
    assert len(eps) == 3 and eps[-1]["title"] == "Now bump the version in pyproject" and eps[-1]["data"]["open"]
    assert "captured" in (store / "logs" / "sessions.log").read_text()
    assert _job(store, str(transcript), "--final").returncode == 0
    assert len(_sessions(repo)) == 3  # idempotent
    text = lmm("log", "--repo", str(repo), "--kind", "session").stdout
    assert text.count("session ") == 3 and "Now bump the version" in text
    assert lmm_json("status", "--repo", str(repo))["by_kind"]["session"] == 3  # type: ignore[index]


def test_worktrees_symlinks_codex_and_aider(tmp_path: Path, homes: dict[str, Path]) -> None:
    repo = _repo(tmp_path)
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(wt))
    c = Claude(wt, SID, branch="feature")  # a linked worktree of the repository
    c.user("Add a retry helper")
    c.tool("Write", {"file_path": str(wt / "src/retry.py"), "content": "def retry(): ..."})
    c.say("Added src/retry.py.")
    c.user("thanks")
    c.flush(project_dir(homes["claude"], wt) / f"{SID}.jsonl")

    link = tmp_path / "link"
    link.symlink_to(repo)  # Codex started through a symlink to the work tree
    patch = "*** Begin Patch\n*** Update File: src/mod1.py\n@@\n-a\n+b\n*** End Patch\n"
    codex_rollout(homes["codex"], link, "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", [
        {"prompt": "Never touch the vendored code. Fix mod1", "commands": [("make test", 2, "error: 2 tests failed")],
         "patch": patch, "answer": "Fixed mod1."},
        {"prompt": "and the docs?"},
    ])
    codex_rollout(homes["codex"], tmp_path / "elsewhere", "0199ffff-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                  [{"prompt": "unrelated work", "answer": "ok"}, {"prompt": "more"}])

    (repo / HISTORY).write_text(
        "# aider chat started at 2026-11-20 09:00:00\n\n"
        "#### Make the retry limit configurable\n\nI will add a setting.\n\n"
        "> Applied edit to src/mod0.py\n> Running pytest -q\n\n"
        "#### and no, don't hardcode 3 again.\n\nUnderstood.\n\n"
        "# aider chat started at 2026-11-21 10:00:00\n\n#### thanks\n\nYou're welcome.\n")
    got = _ingest(repo)
    assert got["tools"] == {"claude": 1, "codex": 1, "aider": 2} and got["other"] == 1, got
    by_tool = {e["data"]["tool"]: e for e in _sessions(repo)}
    assert [f["path"] for f in by_tool["claude"]["files"]] == ["src/retry.py"]
    assert by_tool["claude"]["data"]["branch"] == "feature"
    assert [f["path"] for f in by_tool["codex"]["files"]] == ["src/mod1.py"]
    [cmd] = by_tool["codex"]["data"]["commands"]
    assert (cmd["command"], cmd["failed"], cmd["error"]) == ("make test", True, "error: 2 tests failed") and cmd["ts"] > 0
    aider_titles = [e["title"] for e in _sessions(repo) if e["data"]["tool"] == "aider"]
    assert aider_titles == ["Make the retry limit configurable", "and no, don't hardcode 3 again."]
    notes = {n["title"] for n in _notes(repo)}
    assert notes == {"Never touch the vendored code.", "no, don't hardcode 3 again."}
    assert _ingest(repo)["turns"] == 0


# ---------------------------------------------------------------------------------------------
# Broken transcripts, secrets, lmm's own echo


def test_broken_transcripts_are_captured_up_to_what_is_whole(tmp_path: Path, homes: dict[str, Path]) -> None:
    repo = _repo(tmp_path)
    proj = project_dir(homes["claude"], repo)
    c = Claude(repo, SID)
    c.user("Explain the login flow")
    c.say("It checks TIMEOUT first.")
    c.flush(proj / f"{SID}.jsonl", tail=b"\xff\xfe\x00 garbage, not json\n{\"type\": \"mystery\", \"x\": [1,\n")
    c.user("What does \udcff mean")  # lone surrogate → written as an escape; and raw non-UTF-8 bytes below
    c.say("An undecodable byte.")
    c.flush(proj / f"{SID}.jsonl")
    with open(proj / f"{SID}.jsonl", "ab") as f:
        f.write(b'{"type": "user", "uuid": "raw-bytes", "sessionId": "' + SID.encode() + b'", "cwd": "'
                + str(repo).encode() + b'", "timestamp": "' + iso(c.ts + 0.5).encode()
                + b'", "message": {"role": "user", "content": "caf\xe9 \xff\xfe bytes here"}}\n')
    c.say("Those bytes are not UTF-8.")
    c.user("Next question")
    records, c.records = c.records, []
    whole = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    cut = len(whole) - 40
    with open(proj / f"{SID}.jsonl", "ab") as f:
        f.write(whole[:cut])  # the last record half-written: the writer is in the middle of it
    (proj / "broken.jsonl").mkdir()  # a "transcript" that cannot be read at all
    got = _ingest(repo)
    assert got["skipped"] == 1 and got["turns"] == 2, got  # the third turn is the last whole one: still open
    titles = [e["title"] for e in _sessions(repo)]
    assert titles == ["Explain the login flow", "What does \ufffd mean"]
    with open(proj / f"{SID}.jsonl", "ab") as f:
        f.write(whole[cut:])  # the writer finishes the line
    c.say("Here is the answer.")
    c.user("bye")
    c.flush(proj / f"{SID}.jsonl")
    got = _ingest(repo)
    assert got["turns"] == 2 and got["skipped"] == 0, got  # the broken one is not retried until it changes
    titles = [e["title"] for e in _sessions(repo)]
    assert titles[2] == "caf\ufffd \ufffd\ufffd bytes here" and titles[3] == "Next question", titles


def test_no_secret_reaches_the_store(tmp_path: Path, homes: dict[str, Path]) -> None:
    repo = _repo(tmp_path)
    gh = "ghp_" + "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lz9Xc8"
    aws = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Ex4mPLk"
    c = Claude(repo, SID)
    c.user(f"Always keep this out of git: the staging password is swordfish. Deploy with token {gh}")
    c.tool("Bash", {"command": f"AWS_SECRET_ACCESS_KEY={aws} ./deploy.sh"},
           f"error: token {gh} rejected", error=True)
    c.say(f"The deploy failed; your AWS_SECRET_ACCESS_KEY={aws} was refused.")
    c.user("ok")
    _age(c.flush(project_dir(homes["claude"], repo) / f"{SID}.jsonl"), 7200)  # an old session: all of it
    got = _ingest(repo)
    assert got["turns"] == 2 and got["corrections"] == 1, got
    [ep, _] = _sessions(repo)
    assert "[REDACTED:" in ep["title"] and "[REDACTED:" in ep["data"]["commands"][0]["command"]
    [note] = _notes(repo)
    assert "[REDACTED:" in note["title"]
    stored = _store_bytes(repo)
    for secret in (gh, aws, "swordfish", gh[4:20], aws[:16]):
        assert secret.encode() not in stored, secret


def test_lmm_injected_brief_leaves_no_trace(tmp_path: Path, homes: dict[str, Path]) -> None:
    repo = _repo(tmp_path)
    brief = f"{LMM_MARK}\n# lmm recall: zebracorn quokkafish\n- `src/auth/session.py` — zebracorn (`session 2026-11-20`)"
    c = Claude(repo, SID)
    c.attachment(brief)  # SessionStart hook output, recorded as an attachment
    c.meta(f"<system-reminder>\nSessionStart hook additional context: {brief}\n</system-reminder>")
    c.user(f"<system-reminder>\nUserPromptSubmit hook additional context: {brief}\n</system-reminder>\n"
           "Fix the login timeout")
    c.say("Done.")
    c.user(f"Check the tests too\n{brief}")  # hook text appended after the user's words
    c.say("They pass.")
    c.user("bye")
    c.flush(project_dir(homes["claude"], repo) / f"{SID}.jsonl")
    got = _ingest(repo)
    assert got["turns"] == 2, got
    assert [e["title"] for e in _sessions(repo)] == ["Fix the login timeout", "Check the tests too"]
    stored = _store_bytes(repo)
    assert b"zebracorn" not in stored and b"quokkafish" not in stored and LMM_MARK.encode() not in stored


# ---------------------------------------------------------------------------------------------
# Recall and the briefs


def test_recall_cites_session_turns_and_briefs_show_open_threads(tmp_path: Path, homes: dict[str, Path]) -> None:
    repo = _repo(tmp_path)
    commit_file(repo, "src/upload.py", "def upload(blob, retries=3):\n    return send(blob)\n", "Add uploads")
    lmm("ingest", "--repo", str(repo))
    c = Claude(repo, SID, start=time.time() - 3 * 86400)
    c.user("Fix the flaky upload retry in src/upload.py")
    c.tool("Bash", {"command": "cd src && pytest tests/test_upload.py -q"}, "FAILED test_retry_backoff\n1 failed",
           error=True)
    c.tool("Edit", {"file_path": str(repo / "src/upload.py"), "old_string": "3", "new_string": "5"})
    c.say("I raised the retries to 5 but test_retry_backoff still fails.")
    c.user("Also clean up the lint warnings")
    c.tool("Bash", {"command": "make lint"}, "E501 line too long", error=True)
    c.tool("Bash", {"command": "make lint"}, "All checks passed")  # the failure was settled
    c.say("Lint is clean.")
    c.user("Why does the upload hang on large files?")  # the session ends before an answer
    c.tool("Read", {"file_path": str(repo / "src/upload.py")}, "def upload(...)")
    _age(c.flush(project_dir(homes["claude"], repo) / f"{SID}.jsonl"), 7200)  # untouched for 2 hours: over
    got = _ingest(repo)
    assert got["turns"] == 3 and got["pending"] == 0, got

    out = lmm_json("recall", "--repo", str(repo), "flaky upload retry")
    assert isinstance(out, dict)
    assert out["sessions"] and out["sessions"][0]["prompt"] == "Fix the flaky upload retry in src/upload.py"
    brief = out["brief"]
    assert "## What happened" in brief and "asked claude: “Fix the flaky upload retry" in brief, brief
    assert "(`session " in brief, brief
    threads = brief.split("## Open threads")[1].split("\n## ")[0]
    assert "`cd src && pytest tests/test_upload.py -q` failed (FAILED test_retry_backoff)" in threads, brief
    assert "make lint" not in threads

    repo_brief = lmm("brief", "--repo", str(repo)).stdout
    threads = repo_brief.split("## Open threads")[1].split("\n## ")[0]
    assert "pytest tests/test_upload.py" in threads and "make lint" not in threads, repo_brief
    assert "Asked and not finished: “Why does the upload hang on large files?”" in threads, repo_brief
    assert threads.count("(`session ") == 2

    # A cited turn that is forgotten is no longer cited: every citation is checked against the store.
    eid = next(e["id"] for e in _sessions(repo) if e["title"].startswith("Why does"))
    lmm("forget", "--repo", str(repo), str(eid))
    assert "Asked and not finished" not in lmm("brief", "--repo", str(repo)).stdout


def test_open_threads_cache_follows_every_change_to_the_turns(tmp_path: Path, homes: dict[str, Path]) -> None:
    """The open threads are cached (in the process and in the store) under a counter that triggers
    move on: a long-lived reader sees a turn another process captured, an edit made by plain SQL
    that knows nothing of the cache, and a forgotten turn — never a stale list."""
    from lmm_cli.brief.threads import CACHE_KEY, open_threads

    repo = _repo(tmp_path)
    c = Claude(repo, SID, start=time.time() - 3 * 86400)
    c.user("Make the login timeout configurable")
    c.tool("Bash", {"command": "pytest tests/test_login.py"}, "1 failed", error=True)
    c.say("The login test still fails.")
    c.user("ok")
    path = project_dir(homes["claude"], repo) / f"{SID}.jsonl"
    _age(c.flush(path), 7200)
    _ingest(repo)
    db = open_workspace(repo).connect()
    try:
        first = open_threads(db)
        assert [t.command for t in first] == ["pytest tests/test_login.py"]
        assert db.execute("SELECT 1 FROM state WHERE key = ?", (CACHE_KEY,)).fetchone()  # kept for the next process

        # Another process captures a new session with its own open failure.
        other = Claude(repo, "5e1f7a2b-0000-4000-8000-000000000002", start=time.time() - 2 * 86400)
        other.user("Speed up the token refresh")
        other.tool("Bash", {"command": "make bench"}, "bench: error 2", error=True)
        other.say("The benchmark does not build.")
        other.user("ok")
        _age(other.flush(project_dir(homes["claude"], repo) / "5e1f7a2b-0000-4000-8000-000000000002.jsonl"), 7200)
        _ingest(repo)
        assert sorted(t.command for t in open_threads(db)) == ["make bench", "pytest tests/test_login.py"]

        # A rescore of every turn's salience changes nothing the threads read: the cache stays valid.
        w = sqlite3.connect(store_dir(repo) / "lmm.db", isolation_level=None)
        gen = w.execute("SELECT value FROM state WHERE key = 'sessions_gen'").fetchone()
        w.execute("UPDATE episodes SET salience = 0.9 WHERE kind = 'session'")
        assert w.execute("SELECT value FROM state WHERE key = 'sessions_gen'").fetchone() == gen

        # A writer that knows nothing of the cache: the failure is marked passed by plain SQL.
        (eid, data), = w.execute("SELECT id, data FROM episodes WHERE kind = 'session' AND title LIKE 'Speed%'")
        d = json.loads(data)
        d["commands"] = [dict(x, failed=False) for x in d["commands"]]
        w.execute("UPDATE episodes SET data = ? WHERE id = ?", (json.dumps(d), eid))
        w.close()
        assert [t.command for t in open_threads(db)] == ["pytest tests/test_login.py"]

        # Forgotten in another process: gone from this reader's answer too.
        login = next(e["id"] for e in _sessions(repo) if e["title"].startswith("Make the login"))
        lmm("forget", "--repo", str(repo), str(login))
        assert open_threads(db) == []
    finally:
        db.close()


# ---------------------------------------------------------------------------------------------
# In-process: what is opened, rotation, files that vanish, the job's interface


def test_unchanged_files_are_not_opened_and_rotated_files_are_reread(tmp_path: Path, homes: dict[str, Path],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _repo(tmp_path)
    path = project_dir(homes["claude"], repo) / f"{SID}.jsonl"
    c = Claude(repo, SID)
    c.user("First question")
    c.say("First answer.")
    c.user("Second question")
    c.flush(path)
    ws = open_workspace(repo)
    db = ws.connect()
    try:
        assert capture_sessions(ws, db).turns == 1

        def boom(*a: object, **k: object) -> None:
            raise AssertionError("an unchanged transcript was opened")

        with monkeypatch.context() as m:
            m.setattr(sessions_ingest, "_read", boom)
            m.setattr(sessions_ingest, "complete_length", boom)
            m.setattr(sessions_ingest.claude, "first_cwd", boom)
            assert capture_sessions(ws, db).read == 0

        path.write_bytes(b"")  # rotated: a new, shorter session in the same file
        r = Claude(repo, SID2)
        r.user("Rotated question")
        r.say("Rotated answer.")
        r.user("x")
        r.flush(path)
        res = capture_sessions(ws, db)
        assert res.turns == 1
        assert db.execute("SELECT count(*) FROM episodes WHERE kind = 'session' AND title = 'Rotated question'"
                          ).fetchone()[0] == 1

        c2 = Claude(repo, OTHER_SID)  # a file that vanishes while it is read is skipped; the rest goes on
        c2.user("Vanishing question")
        c2.say("gone")
        c2.user("y")
        doomed = c2.flush(project_dir(homes["claude"], repo) / f"{OTHER_SID}.jsonl")
        real_read = sessions_ingest._read

        def vanish(t: Any, offset: int) -> Any:
            if t.path.name == doomed.name:
                doomed.unlink()
            return real_read(t, offset)

        monkeypatch.setattr(sessions_ingest, "_read", vanish)
        res = capture_sessions(ws, db, final=True)
        assert res.skipped == 1 and res.turns == 1  # the rotated session's last turn, at its end
    finally:
        db.close()


def test_job_never_fails(tmp_path: Path, homes: dict[str, Path]) -> None:
    repo = _repo(tmp_path)
    store = store_dir(repo)
    p = _job(store, str(tmp_path / "nowhere.jsonl"), "--final")
    assert p.returncode == 0 and p.stdout == "" and p.stderr == ""
    assert "skipped=1" in (store / "logs" / "sessions.log").read_text()
    assert _job(tmp_path / "not-a-store").returncode == 0
    assert _job(store).returncode == 0  # no transcript named: every transcript of the repository


def test_ingest_without_sessions_leaves_them_alone(tmp_path: Path, homes: dict[str, Path]) -> None:
    repo = _repo(tmp_path)
    c = Claude(repo, SID)
    c.user("Question")
    c.say("Answer.")
    c.user("Next")
    c.flush(project_dir(homes["claude"], repo) / f"{SID}.jsonl")
    out = lmm_json("ingest", "--repo", str(repo))
    assert isinstance(out, dict) and out["sessions"] is None
    assert _sessions(repo) == []
    text = lmm("ingest", "--repo", str(repo), "--sessions").stdout
    assert "1 new turns from 1 assistant sessions, 0 corrections" in text, text


def test_subagents_belong_to_their_main_session(tmp_path: Path, homes: dict[str, Path]) -> None:
    repo = _repo(tmp_path)
    proj = project_dir(homes["claude"], repo)
    main = Claude(repo, SID)
    main.user("Find why the auth tests fail")
    main.tool("Task", {"description": "investigate", "prompt": "Run the auth tests and report"}, "report")
    main.tool("Bash", {"command": "pytest tests/test_auth.py"}, "1 passed")  # it passes in the end
    main.say("Fixed; the auth tests pass.")
    main.user("thanks")
    transcript = main.flush(proj / f"{SID}.jsonl")
    sub = Claude(repo, SID)
    sub.user("No, don't stop. Run the auth tests and report")  # the main agent's words: no correction
    sub.tool("Bash", {"command": "pytest tests/test_auth.py"}, "1 failed", error=True)
    sub.say("One test fails: test_timeout.")
    for r in sub.records:
        r["isSidechain"] = True
        r["agentId"] = "a1b2c3"
    sub.flush(proj / SID / "subagents" / "agent-a1b2c3.jsonl")
    p = _job(store_dir(repo), str(transcript), "--final")  # SessionEnd names the main transcript only
    assert p.returncode == 0
    eps = _sessions(repo)
    assert len(eps) == 3, [e["title"] for e in eps]
    sub_ep = next(e for e in eps if e["data"].get("subagent"))
    assert sub_ep["data"]["session"] == SID and sub_ep["data"]["subagent"] == "agent-a1b2c3"
    assert sub_ep["data"]["by_user"] is False and sub_ep["salience"] <= 0.3
    assert _notes(repo) == []
    # The subagent's failure passed later in the main session: not an open thread.
    assert "Open threads" not in lmm("brief", "--repo", str(repo)).stdout
