"""The MCP server as assistants meet it: through the SDK's in-memory client, and as `lmm mcp` in a
real subprocess spoken to over stdio. Every tool works on a real repository; bad arguments are tool
errors and the server keeps serving."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import commit_file, lmm, lmm_json, make_repo

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = make_repo(tmp_path / "r", commits=2)
    commit_file(r, "src/upload/retry.py", "def retry_upload(n):\n    return n * 2\n",
                "Retry uploads twice before giving up")
    commit_file(r, "src/upload/retry.py", "def retry_upload(n):\n    return n * 3\n",
                "Fix upload retry counting: three tries, the CDN drops the first")
    lmm("init", "--repo", str(r), "--no-hooks")
    return r


def _data(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content or json.loads(result.content[0].text)


async def test_every_tool_in_process(repo: Path) -> None:
    from mcp import Client

    from lmm_cli.serve.mcp import build_server

    async with Client(build_server(str(repo))) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) == {"recall", "remember", "forget", "feedback", "status"}
        assert tools["recall"].annotations.read_only_hint and tools["status"].annotations.read_only_hint
        assert tools["forget"].annotations.destructive_hint
        assert "before" in tools["recall"].description  # tells a model when to call it

        rec = _data(await c.call_tool("recall", {"query": "upload retry counting"}))
        assert rec["files"][0]["path"] == "src/upload/retry.py"
        assert "src/upload/retry.py" in rec["brief"] and rec["recall_id"]

        fb = _data(await c.call_tool("feedback", {"recall_id": str(rec["recall_id"]), "useful": True,
                                                  "note": "the retry file was it"}))
        assert fb["useful"] is True

        note = _data(await c.call_tool("remember", {"text": "Never retry uploads more than three times",
                                                    "files": ["src/upload/retry.py"], "kind": "decision"}))
        assert note["new"] and note["files"] == ["src/upload/retry.py"]
        again = _data(await c.call_tool("recall", {"query": "how many upload retries"}))
        assert any("three times" in n["text"] for n in again["notes"])  # the warm server sees the new note

        gone = _data(await c.call_tool("forget", {"query_or_id": "retry uploads three times"}))
        assert [r["kind"] for r in gone["removed"]] == ["note"]
        after = _data(await c.call_tool("recall", {"query": "how many upload retries"}))
        assert not any("three times" in n["text"] for n in after["notes"])

        st = _data(await c.call_tool("status", {}))
        assert st["by_kind"]["commit"] == 4

        brief = await c.read_resource("lmm://brief")
        assert "Repository brief" in brief.contents[0].text


async def test_bad_arguments_are_tool_errors_and_the_server_goes_on(repo: Path) -> None:
    from mcp import Client

    from lmm_cli.serve.mcp import build_server

    async with Client(build_server(str(repo))) as c:
        for args in ({"query": "x", "budget": 3}, {"query": "   "}, {"query": "x", "k": 0}, {"budget": "many"}):
            r = await c.call_tool("recall", args)
            assert r.is_error, args
        r = await c.call_tool("feedback", {"recall_id": "99999", "useful": False})
        assert r.is_error and "no recall 99999" in r.content[0].text
        r = await c.call_tool("remember", {"text": "x", "kind": "gossip"})
        assert r.is_error
        assert _data(await c.call_tool("status", {}))["episodes"] == 4  # still serving


async def test_before_init_the_tools_say_so_then_work(tmp_path: Path) -> None:
    from mcp import Client

    from lmm_cli.serve.mcp import build_server

    r = make_repo(tmp_path / "late", commits=2)
    async with Client(build_server(str(r))) as c:
        res = await c.call_tool("status", {})
        assert res.is_error and "lmm init" in res.content[0].text
        lmm("init", "--repo", str(r), "--no-hooks")
        assert _data(await c.call_tool("status", {}))["episodes"] == 2


async def test_lmm_mcp_over_stdio_with_the_real_client(repo: Path) -> None:
    """`lmm mcp` as a child process, as Claude Code starts it: the repository from CLAUDE_PROJECT_DIR."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    env = {k: os.environ[k] for k in ("HOME", "LMM_HOME", "PATH", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM",
                                      "LMM_AUTO_TUNE") if k in os.environ}
    env["CLAUDE_PROJECT_DIR"] = str(repo)
    params = StdioServerParameters(command=sys.executable, args=["-m", "lmm_cli", "mcp"], env=env,
                                   cwd=str(Path("/")))
    async with Client(params) as c:
        rec = _data(await c.call_tool("recall", {"query": "upload retry counting", "budget": 400}))
        assert rec["files"][0]["path"] == "src/upload/retry.py"
        r = await c.call_tool("recall", {"query": "x", "budget": 1})
        assert r.is_error
        assert _data(await c.call_tool("status", {}))["repo"] == str(repo)
    log = lmm_json("log", "--repo", str(repo), "-n", "10")
    assert isinstance(log, list)
