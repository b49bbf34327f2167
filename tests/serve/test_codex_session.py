"""Whole Codex CLI sessions, offline, in a repository `lmm integrate codex` set up.

The real `codex exec` (pinned in ``tests/assistants.py``) runs against a stand-in for the OpenAI
Responses API on loopback (``tests/standin.py``): a provider in the test's ``$CODEX_HOME/config.toml``
with ``base_url`` at the stand-in, ``wire_api = "responses"`` and a dummy key in ``env_key``. The
stand-in keeps every request body, which is what reached the model:

- lmm's AGENTS.md section (Codex sends it as a user-role message);
- the session brief of the SessionStart hook and the recall of the UserPromptSubmit hook (developer
  messages), once the project is trusted and its hooks are: Codex 0.171 runs a project's hooks only
  after their exact definitions were reviewed (``/hooks``, a hash kept in the user's config), and
  ``--dangerously-bypass-hook-trust`` stands in for that review here. Without it, in the same trusted
  project, no hook runs and nothing of lmm's reaches the model but AGENTS.md;
- lmm's MCP tools: Codex started ``lmm mcp``; it defers MCP tools behind its ``tool_search`` tool, so
  the scripted model searches, finds the ``mcp__lmm`` namespace with lmm's five tools, and calls
  ``recall``, whose answer comes back in the next request. Codex does not wait for a server that is
  not marked ``required``: a search made before ``lmm mcp`` answered (it takes seconds to start on a
  busy machine) finds nothing, so the model first runs a shell command that takes a few seconds.

After the session, SessionEnd's detached capture stores it: the user's prompt and the command the
model ran, never lmm's own text (the AGENTS.md section, the brief, the recall).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from assistants import Clients, assistant_env, clients
from standin import standin

from conftest import commit_file, lmm, make_repo, store_dir, wait_for_log

MARK = "<!-- lmm -->"
PROMPT = "Why does the upload retry count twice? Look into it."
ANSWER = "The retry count lives in src/upload/retry.py: three tries."
LMM_TOOLS = {"recall", "remember", "forget", "feedback", "status"}


@pytest.fixture(scope="session")
def assistant_clients() -> Clients:
    """The real Codex CLI, installed from npm once (``tests/assistants.py``)."""
    return clients()


def _config(home: Path, url: str, repo: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        'model = "gpt-5.5"\n'
        'model_provider = "standin"\n'
        "\n[model_providers.standin]\n"
        'name = "stand-in on loopback"\n'
        f'base_url = "{url}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "STANDIN_API_KEY"\n'
        "\n[features]\nhooks = true\n"
        f'\n[projects."{repo}"]\ntrust_level = "trusted"\n')


def _exec(c: Clients, repo: Path, env: dict[str, str], prompt: str, *flags: str) -> subprocess.CompletedProcess[str]:
    # danger-full-access: the scripted command runs without Codex's bubblewrap sandbox, which a
    # container may not allow; the sandbox is not what is tested here.
    p = subprocess.run([str(c.codex), "exec", "--skip-git-repo-check", "-s", "danger-full-access", *flags, prompt],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-4000:]
    return p


def _inputs(body: dict[str, Any], role: str | None = None) -> list[str]:
    """The texts of a request's input messages (of ``role``)."""
    out = []
    for item in body.get("input") or []:
        if item.get("type") == "message" and (role is None or item.get("role") == role):
            out.append("\n".join(c.get("text", "") for c in item.get("content") or [] if isinstance(c, dict)))
    return out


def _json(env: dict[str, str], *args: str) -> Any:
    return json.loads(lmm(*args, "--json", env=env).stdout)


def _items(bodies: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [i for b in bodies for i in b.get("input") or [] if i.get("type") == kind]


def test_a_codex_session_meets_its_memory(tmp_path: Path, assistant_clients: Clients) -> None:
    c = assistant_clients
    repo = make_repo(tmp_path / "r", commits=8)
    commit_file(repo, "src/upload/retry.py", "def retry_upload(n):\n    return n * 2\n", "Retry uploads twice before giving up")
    commit_file(repo, "src/upload/retry.py", "def retry_upload(n):\n    # the CDN drops the first try\n    return n * 3\n",
                "Fix upload retry counting: three tries, the CDN drops the first")
    lmm("init", "--repo", str(repo), "--no-hooks")
    env = assistant_env(tmp_path / "home", STANDIN_API_KEY="dummy")
    codex_home = Path(env["CODEX_HOME"])

    script: list[dict[str, Any]] = [
        {"text": "Hello."},  # the first session: hooks not reviewed
        {"tool": "exec_command", "input": {"cmd": "sleep 4; cat src/upload/retry.py"}},  # lmm mcp starts meanwhile
        {"search": "recall repository memory history"},
        {"tool": "recall", "namespace": "mcp__lmm", "input": {"query": "upload retry count"}},
        {"text": ANSWER},
    ]
    with standin(script) as api:
        _config(codex_home, api.url, repo)
        out = lmm("integrate", "codex", "--repo", str(repo), env=env)
        assert ".codex/hooks.json" in out.stdout or "hooks.json" in out.stdout
        hooks = json.loads((repo / ".codex" / "hooks.json").read_text())["hooks"]
        assert {"SessionStart", "UserPromptSubmit", "Stop", "SessionEnd"} <= set(hooks)

        # 1. A trusted project whose hooks were never reviewed: Codex runs none of them.
        untrusted = _exec(c, repo, env, "Say hello.")
        n_untrusted = len(api.responses_requests())
        hooks_log = store_dir(repo) / "logs" / "hooks.log"
        assert not hooks_log.exists() or "session-start" not in hooks_log.read_text()
        # 2. Hooks trusted for this run.
        trusted = _exec(c, repo, env, PROMPT, "--dangerously-bypass-hook-trust")
        bodies = api.responses_requests()
    assert "Hello." in untrusted.stdout and ANSWER in trusted.stdout, trusted.stdout + trusted.stderr

    first = bodies[0]
    assert not any(MARK in t for t in _inputs(first)), "a hook ran without being reviewed"
    # AGENTS.md reaches the model even so: it is not a hook.
    assert any("## Memory (lmm)" in t and "`recall`" in t for t in _inputs(first, "user"))

    session = bodies[n_untrusted:]
    opening = session[0]
    # (a) lmm's AGENTS.md section reached the model.
    assert any("## Memory (lmm)" in t for t in _inputs(opening, "user"))
    # (b) SessionStart's brief and UserPromptSubmit's recall reached it, as developer messages.
    dev = _inputs(opening, "developer")
    brief = next((t for t in dev if t.startswith(MARK) and "What lmm remembers of r" in t), None)
    assert brief is not None, dev
    recalled = next((t for t in dev if t.startswith(MARK) and "lmm recalled this for the prompt" in t), None)
    assert recalled is not None and "src/upload/retry.py" in recalled and "three tries" in recalled, dev
    log = hooks_log.read_text()
    assert log.count("session-start source=startup") == 1 and "user-prompt-submit inject=1" in log, log

    # (c) Codex started lmm's MCP server: its tool search finds the mcp__lmm namespace and lmm's tools…
    found = _items(session, "tool_search_output")
    assert found, [i.get("type") for b in session for i in b.get("input") or []]
    spaces = {t["name"]: t for t in found[-1]["tools"] if t.get("type") == "namespace"}
    assert "mcp__lmm" in spaces, found[-1]
    assert {t["name"] for t in spaces["mcp__lmm"]["tools"]} == LMM_TOOLS
    # …and a call of `recall` through it is answered by lmm.
    calls = {i["call_id"]: i for i in _items(session, "function_call")}
    outputs = {i["call_id"]: i for i in _items(session, "function_call_output")}
    recall_call = next(cid for cid, i in calls.items() if i.get("name") == "recall")
    answer = json.dumps(outputs[recall_call]["output"])
    assert "src/upload/retry.py" in answer and "recall_id" in answer, answer[:2000]
    shell_call = next(cid for cid, i in calls.items() if i.get("name") == "exec_command")
    assert "the CDN drops the first try" in json.dumps(outputs[shell_call]["output"])

    # (d) The session is captured after it ends: its prompt, the command run, none of lmm's own text.
    deadline = time.monotonic() + 60
    while True:
        turns = _json(env, "log", "--repo", str(repo), "--kind", "session", "-n", "50")
        if any("upload retry" in t["title"] for t in turns):
            break
        assert time.monotonic() < deadline, (hooks_log.read_text(), (store_dir(repo) / "logs").iterdir())
        time.sleep(0.5)
    wait_for_log(hooks_log, "session-end capture pid=")
    wait_for_log(hooks_log, "stop capture pid=")
    # The untrusted session ran no hook. `lmm ingest --sessions` leaves its last turn open (the session
    # may go on: `codex exec resume`) until its rollout has been still for an hour; then it backfills it.
    sid = re.search(r"session id: (\S+)", untrusted.stdout + untrusted.stderr)
    assert sid, untrusted.stdout
    rollout = next(codex_home.glob(f"sessions/**/rollout-*{sid.group(1)}.jsonl"))
    ingest = _json(env, "ingest", "--sessions", "--repo", str(repo))
    assert (ingest["sessions"]["turns"], ingest["sessions"]["pending"]) == (0, 1), ingest
    old = time.time() - 2 * 3600
    os.utime(rollout, (old, old))
    ingest = _json(env, "ingest", "--sessions", "--repo", str(repo))
    assert ingest["sessions"]["turns"] == 1, ingest
    again = _json(env, "ingest", "--sessions", "--repo", str(repo))
    assert again["sessions"]["turns"] == 0, again
    turns = _json(env, "log", "--repo", str(repo), "--kind", "session", "-n", "50")
    assert sorted(t["title"] for t in turns) == sorted([PROMPT, "Say hello."]), turns
    db = sqlite3.connect(store_dir(repo) / "lmm.db")
    try:
        stored = db.execute("SELECT title, body, data FROM episodes WHERE kind = 'session'").fetchall()
        notes = db.execute("SELECT title || ' ' || body FROM episodes WHERE kind = 'note'").fetchall()
    finally:
        db.close()
    text = json.dumps([stored, notes])
    assert MARK not in text and "Memory (lmm)" not in text and "AGENTS.md" not in text
    assert "What lmm remembers" not in text and "lmm recalled this" not in text
    title, body, data = next(row for row in stored if row[0] == PROMPT)
    assert ANSWER in body
    assert [c["command"] for c in json.loads(data)["commands"]] == ["sleep 4; cat src/upload/retry.py"]
