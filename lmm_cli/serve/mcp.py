"""lmm as an MCP server over stdio (`lmm mcp`): what Claude Code, Codex and Cursor start.

Tools: ``recall`` (read-only), ``remember``, ``forget``, ``feedback``, ``status`` (read-only); one
resource, ``lmm://brief``, the session brief. Every tool calls the same core operation the CLI calls.
The repository is the ``--repo`` argument, else ``$CLAUDE_PROJECT_DIR``, else the working directory;
it is looked up at each call, so a server started before `lmm init` works once the store exists.

The server keeps the encoder and recall's lookups warm between calls (``core.Memory``), and reloads
them when another process changes the store. A bad argument or a user-fixable problem is an MCP
tool error with lmm's one-line message; a bug is an error too, logged to stderr: stdout belongs to
the protocol, and nothing a tool does can stop the server.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal

from ..core import Memory
from ..errors import LmmError

__all__ = ["build_server", "serve", "repository"]

log = logging.getLogger("lmm.mcp")

INSTRUCTIONS = (
    "lmm is this repository's long-term memory: its git history, past assistant sessions and notes, "
    "with every line citing its evidence. Call `recall` before working on a part of the code you have "
    "not seen in this session; call `remember` when the user states a decision, convention or "
    "correction worth keeping; call `feedback` after using a recall, to say whether it helped."
)


def repository(repo: str | None = None) -> Path:
    """The repository the server serves: an explicit path, else Claude Code's project dir, else cwd."""
    return Path(repo or os.environ.get("CLAUDE_PROJECT_DIR") or os.getcwd())


def build_server(repo: str | None = None) -> Any:
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ToolAnnotations

    from .. import __version__

    memory = Memory(repository(repo))
    app = MCPServer("lmm", version=__version__, instructions=INSTRUCTIONS)

    def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LmmError as e:
            raise ToolError(str(e)) from None
        except Exception as e:  # a bug: the tool fails, the server goes on
            log.exception("lmm %s failed", getattr(fn, "__name__", "tool"))
            raise ToolError(f"lmm failed: {type(e).__name__}: {e}") from None

    @app.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    def recall(query: str, budget: int = 800, k: int = 8) -> dict[str, Any]:
        """What this repository's memory knows about a task: the files to look at (and why), the
        commits that changed them and the reasons given, what tends to break there, notes and past
        sessions — a short markdown brief where every line cites its evidence (short sha, path:line,
        note or session date). Call it before starting work on a part of the code, with the task in
        a few words ("retry logic in the upload client", "why was redis dropped"). "No memory of
        that" is a real answer. `budget` is the most tokens the brief may use; `k` the files ranked.
        The result has a `recall_id`: pass it to `feedback` once you know whether it helped."""
        out: dict[str, Any] = call(memory.recall, query, budget=budget, k=k)
        return out

    @app.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                          open_world_hint=False))
    def remember(text: str, files: list[str] | None = None,
                 kind: Literal["note", "decision", "convention", "correction", "warning"] = "note") -> dict[str, Any]:
        """Keep a fact about this repository for later sessions: a decision and its reason, a
        convention, a user's correction ("always use httpx, never requests"), a warning about a
        fragile area. One or two plain sentences; name the files it is about in `files` (paths from
        the repository root) or in the text. Secrets are redacted before anything is stored. Saying
        the same thing twice stores it once."""
        res: dict[str, Any] = call(memory.remember, text, files=files or [], kind=kind)
        return res

    @app.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                          open_world_hint=False))
    def forget(query_or_id: str) -> dict[str, Any]:
        """Delete memories for good: a note, session or other episode by its id (as `recall` and
        `status` show them, e.g. "note:3f2a…" or "42"), or every note and session whose text
        matches the words given. Commits are not forgotten (git has them); use this when the user
        asks lmm to forget something, or a note is wrong. Returns what was removed."""
        res: dict[str, Any] = call(memory.forget, query_or_id)
        return res

    @app.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True,
                                          open_world_hint=False))
    def feedback(recall_id: str, useful: bool, note: str | None = None) -> dict[str, Any]:
        """Say whether a `recall` helped (its `recall_id`, `useful` true or false, and optionally a
        few words: which file was the right one, what was missing). lmm learns from it which
        evidence to rank higher in this repository."""
        res: dict[str, Any] = call(memory.feedback, recall_id, useful=useful, note=note)
        return res

    @app.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False))
    def status() -> dict[str, Any]:
        """What lmm remembers of this repository: counts of commits, notes and sessions, when it last
        captured something, whether its git hooks are installed, and how recall is tuned."""
        res: dict[str, Any] = call(memory.status)
        return res

    @app.resource("lmm://brief", name="session-brief", mime_type="text/markdown",
                  description="The repository's session brief: commands, conventions, corrections, "
                              "fragile files and unfinished work, each line cited.")
    def brief() -> str:
        text: str = call(memory.session_brief)
        return text

    return app


def serve(repo: str | None = None) -> None:
    """Serve MCP over stdio until the client closes the pipe. Logs go to stderr only."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="lmm mcp: %(message)s")
    build_server(repo).run()
