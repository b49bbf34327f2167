"""One whole Claude Code session, offline, in a repository `lmm integrate claude` set up.

The real `claude` runs against a stand-in for the Messages API on loopback (``tests/standin.py``),
which keeps every request body: what reached the model. The session brief of SessionStart and the
recall of a prompt about the code are in it; "thanks", in the same session, adds nothing; SessionEnd
starts the capture, and the session lands in the store.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from assistants import Clients, assistant_env, clients
from standin import standin

from conftest import commit_file, lmm, lmm_json, make_repo, store_dir, wait_for_log

MARK = "<!-- lmm -->"
RELEVANT = "Why does the upload retry count twice? Look into it."
RECALLED = "lmm recalled this for the prompt"


@pytest.fixture(scope="session")
def assistant_clients() -> Clients:
    """The real Claude Code CLI, installed from npm once (``tests/assistants.py``)."""
    return clients()


def _claude(c: Clients, repo: Path, env: dict[str, str], *args: str) -> dict:
    p = subprocess.run([str(c.claude), "-p", *args, "--output-format", "json"],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["is_error"] is False, out
    return out


def test_a_claude_code_session_meets_its_memory(tmp_path: Path, assistant_clients: Clients) -> None:
    c = assistant_clients
    repo = make_repo(tmp_path / "r", commits=12)
    commit_file(repo, "src/upload/retry.py", "def retry_upload(n):\n    return n * 2\n", "Retry uploads twice before giving up")
    commit_file(repo, "src/upload/retry.py", "def retry_upload(n):\n    # the CDN drops the first try\n    return n * 3\n",
                "Fix upload retry counting: three tries, the CDN drops the first")
    commit_file(repo, "Makefile", "test:\n\tpytest -q\n", "Add a make target for the tests")
    lmm("init", "--repo", str(repo), "--no-hooks")
    lmm("integrate", "claude", "--repo", str(repo))
    env = assistant_env(tmp_path / "home")

    with standin([{"text": "The retry count lives in src/upload/retry.py."}, {"text": "You're welcome."}]) as api:
        env["ANTHROPIC_BASE_URL"] = api.url
        first = _claude(c, repo, env, RELEVANT)
        n_first = len(api.main_requests())
        second = _claude(c, repo, env, "thanks", "--resume", first["session_id"])
        bodies = api.main_requests()

    assert first["result"] == "The retry count lives in src/upload/retry.py." and second["result"] == "You're welcome."
    body = json.dumps(bodies[n_first - 1])  # the model's request for the first prompt

    # (a) The session brief of SessionStart reached the model, marked as lmm's.
    assert f"SessionStart hook additional context: {MARK}" in body
    assert "What lmm remembers of r" in body and "## Conventions" in body

    # (b) The prompt about the code brought its recall along…
    assert f"UserPromptSubmit hook additional context: {MARK}" in body and RECALLED in body
    assert "src/upload/retry.py" in body and "three tries" in body
    # …and "thanks" brought nothing: its request holds only the first prompt's recall (history).
    last = json.dumps(bodies[-1])
    assert last.count(RECALLED) == 1 and '"thanks"' in last
    tail = last[last.rindex('"thanks"'):]
    assert "UserPromptSubmit hook additional context" not in tail

    # (c) SessionEnd started the capture, and the session was captured.
    log = wait_for_log(store_dir(repo) / "logs" / "hooks.log", "session-end capture pid=", count=2)
    assert log.count("session-start source=startup") == 1 and log.count("session-start source=resume") == 1
    assert "user-prompt-submit inject=1" in log and "user-prompt-submit inject=0" in log
    assert log.count("session-end capture pid=") == 2
    deadline = time.monotonic() + 60
    while not lmm_json("status", "--repo", str(repo))["by_kind"].get("session"):  # type: ignore[index]
        assert time.monotonic() < deadline, (store_dir(repo) / "logs" / "sessions.log").read_text()
        time.sleep(0.5)
    turns = [e for e in lmm_json("log", "--repo", str(repo), "--kind", "session", "-n", "50")]  # type: ignore[union-attr]
    text = json.dumps(turns)
    assert "upload retry" in text and MARK not in text  # the user's words, never lmm's own echo


def test_a_resumed_continued_and_forked_claude_session_is_stored_once(tmp_path: Path,
                                                                      assistant_clients: Clients) -> None:
    """`--resume ID` and `--continue` append to the session's transcript; `--resume ID --fork-session`
    starts a new transcript holding copies of the old records (same uuids, a new session id). Each turn
    the user typed is stored once, whichever transcript it was read from and however often."""
    c = assistant_clients
    repo = make_repo(tmp_path / "r", commits=6)
    lmm("init", "--repo", str(repo), "--no-hooks")
    lmm("integrate", "claude", "--repo", str(repo))
    env = assistant_env(tmp_path / "home")
    prompts = ["Fix the retry loop in src/mod1.py", "Now make it three tries.", "And the tests for it?",
               "Try another way: a backoff instead."]
    with standin([{"text": f"Answer {i}."} for i in range(4)]) as api:
        env["ANTHROPIC_BASE_URL"] = api.url
        first = _claude(c, repo, env, prompts[0])
        resumed = _claude(c, repo, env, prompts[1], "--resume", first["session_id"])
        continued = _claude(c, repo, env, prompts[2], "--continue")
        forked = _claude(c, repo, env, prompts[3], "--resume", first["session_id"], "--fork-session")
    assert first["session_id"] == resumed["session_id"] == continued["session_id"] != forked["session_id"]
    projects = tmp_path / "home" / ".claude" / "projects"
    transcripts = sorted(projects.glob("*/*.jsonl"))
    assert {p.stem for p in transcripts} == {first["session_id"], forked["session_id"]}
    fork_text = (projects / transcripts[0].parent.name / f"{forked['session_id']}.jsonl").read_text()
    assert all(p in fork_text for p in prompts)  # the fork copied the whole conversation

    def titles() -> list[str]:
        return [e["title"] for e in lmm_json("log", "--repo", str(repo), "--kind", "session", "-n", "50")]  # type: ignore[union-attr, index]

    deadline = time.monotonic() + 60
    while set(titles()) != set(prompts):  # four SessionEnd captures, detached
        assert time.monotonic() < deadline, (titles(), (store_dir(repo) / "logs" / "sessions.log").read_text())
        time.sleep(0.5)
    out = lmm_json("ingest", "--repo", str(repo), "--sessions")
    assert out["sessions"]["turns"] == 0, out  # type: ignore[index]
    assert sorted(titles()) == sorted(prompts)
    sessions = {e["data"]["session"] for e in lmm_json("log", "--repo", str(repo), "--kind", "session", "-n", "50")}  # type: ignore[union-attr, index]
    assert forked["session_id"] in sessions  # the fork's own new turn is the fork's
