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

from conftest import commit_file, git, lmm, lmm_json, make_repo

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
        text = brief.contents[0].text
        assert "What lmm remembers" in text and "src/upload/retry.py" in text


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
        for i in range(15):  # the server runs calls on worker threads: the warm connection must follow
            again = await c.call_tool("recall", {"query": f"upload retry {i}", "budget": 400})
            assert not again.is_error, again.content
        r = await c.call_tool("recall", {"query": "x", "budget": 1})
        assert r.is_error
        assert _data(await c.call_tool("status", {}))["repo"] == str(repo)
    log = lmm_json("log", "--repo", str(repo), "-n", "10")
    assert isinstance(log, list)


def _rss_bytes() -> int:
    """This process's resident set size (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def test_soak_500_calls_no_crash_errors_stay_errors_memory_bounded(repo: Path) -> None:
    """500 tool calls in a row through one in-process client, as a long session makes them: recalls,
    status, notes kept, and bad arguments; the server never falls over, every bad call is a tool error,
    every good one answers, and memory does not grow without bound."""
    import gc
    import tracemalloc

    from mcp import Client

    from lmm_cli.serve.mcp import build_server

    bad = [("recall", {"query": "x", "budget": 3}), ("recall", {"query": "   "}), ("recall", {"query": "x", "k": 0}),
           ("recall", {"budget": "many"}), ("remember", {"text": "x", "kind": "gossip"}),
           ("feedback", {"recall_id": "99999", "useful": False}), ("forget", {}), ("no_such_tool", {})]
    queries = ["upload retry counting", "how many upload retries", "CDN drops the first try", "retry_upload",
               "what changed in src/upload", "billing invoices"]

    async with Client(build_server(str(repo))) as c:
        for q in queries:  # warm up: indexes loaded, caches filled, before the baseline
            _data(await c.call_tool("recall", {"query": q}))
        _data(await c.call_tool("status", {}))
        gc.collect()
        rss0 = _rss_bytes()
        tracemalloc.start()
        snap0 = tracemalloc.get_traced_memory()[0]
        counts = {"recall": 0, "status": 0, "remember": 0, "bad": 0}
        for i in range(500):
            kind = ("recall", "recall", "status", "remember", "bad")[i % 5]
            if kind == "bad":
                tool, args = bad[(i // 5) % len(bad)]
                try:
                    r = await c.call_tool(tool, args)
                except Exception:  # an unknown tool may be refused by the client itself
                    assert tool == "no_such_tool"
                else:
                    assert r.is_error, (tool, args)
            elif kind == "recall":
                rec = _data(await c.call_tool("recall", {"query": queries[i % len(queries)], "budget": 400}))
                assert "brief" in rec
            elif kind == "status":
                assert _data(await c.call_tool("status", {}))["by_kind"]["commit"] == 4
            else:
                note = _data(await c.call_tool("remember", {"text": f"Soak note {i}: keep retries at three",
                                                            "files": ["src/upload/retry.py"]}))
                assert note["new"]
            counts[kind] += 1
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - snap0
        tracemalloc.stop()
        grown = _rss_bytes() - rss0
        assert sum(counts.values()) == 500 and counts["bad"] == 100
        assert traced < 50 * 2**20, f"python heap grew {traced / 2**20:.1f} MiB over 500 calls"
        assert grown < 50 * 2**20, f"RSS grew {grown / 2**20:.1f} MiB over 500 calls"
        st = _data(await c.call_tool("status", {}))  # still serving, and every note was kept
        assert st["by_kind"]["commit"] == 4 and st["by_kind"].get("note") == counts["remember"], st["by_kind"]


def test_the_warm_memory_answers_from_any_thread(repo: Path) -> None:
    """The SDK runs each tool call on a worker thread, not always the same one."""
    import threading

    from lmm_cli.core import Memory

    memory = Memory(repo)
    results: list[object] = []

    def call() -> None:
        try:
            results.append(memory.recall("upload retry counting", budget=300)["files"][0]["path"])
        except Exception as e:  # noqa: BLE001 - recorded for the assertion
            results.append(e)

    for _ in range(3):
        t = threading.Thread(target=call)
        t.start()
        t.join()
    memory.close()
    assert results == ["src/upload/retry.py"] * 3, results


def test_the_warm_memory_answers_from_what_was_captured_since_its_last_answer(repo: Path) -> None:
    """The server keeps what does not depend on the query (a file's fixes, its co-changes) between
    recalls; a commit captured by another process meanwhile must show in the next answer."""
    from lmm_cli.core import Memory

    memory = Memory(repo)
    try:
        first = memory.recall("upload retry counting", budget=600)
        assert "1 fix" in first["brief"] and "2 fixes" not in first["brief"], first["brief"]
        commit_file(repo, "src/upload/retry.py", "def retry_upload(n):\n    return max(n, 3)\n",
                    "Fix upload retry counting for a zero count")
        commit_file(repo, "src/upload/backoff.py", "def backoff(n):\n    return 2 ** n\n",
                    "Add upload backoff")
        git(repo, "add", "-A")
        (repo / "src/upload/retry.py").write_text("def retry_upload(n):\n    return max(n, 4)\n")
        (repo / "src/upload/backoff.py").write_text("def backoff(n):\n    return 3 ** n\n")
        git(repo, "commit", "-qam", "Tune upload retries and backoff together")
        lmm("ingest", "--repo", str(repo))  # another process captures them
        second = memory.recall("upload retry counting", budget=600)
        assert "2 fixes" in second["brief"], second["brief"]
        assert any("Fix upload retry counting for a zero count" in c["subject"] for c in second["commits"])
        again = memory.recall("upload retry counting", budget=600)  # from what it kept: the same answer
        assert again["brief"] == second["brief"] and again["files"] == second["files"]
    finally:
        memory.close()
