"""Claude Code: lmm's hooks and MCP server, as project settings or as a plugin.

Project (``lmm integrate claude``): the hooks go into ``.claude/settings.json`` and the MCP server
into ``.mcp.json``, beside what is there (``merge.JsonChange``); both files may be committed, so
every command is ``lmm`` found on PATH, never a path of this machine, and a hook does nothing where
lmm is not installed (a teammate without lmm sees no hook errors).

Plugin (``lmm integrate claude --plugin DIR``): a plugin that is also its own local marketplace:
``.claude-plugin/plugin.json``, ``hooks/hooks.json``, ``.mcp.json`` and
``.claude-plugin/marketplace.json``, installed with ``/plugin marketplace add DIR`` then
``/plugin install lmm@lmm``.

The hooks (``lmm hook EVENT``, handled by ``serve.hooks``): SessionStart prints the session brief,
UserPromptSubmit a recall when the prompt is about something lmm knows, PreCompact and SessionEnd
start the capture of the transcript, detached.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .merge import FileChange, JsonChange

__all__ = ["EVENTS", "hook_command", "hooks_config", "mcp_server", "project_changes", "plugin_changes",
           "PLUGIN_MARK"]

# Event → (matcher, `lmm hook` argument, timeout in seconds). SessionEnd hooks share a budget of about
# 1.5 s: the handler only starts the capture and returns.
EVENTS: dict[str, tuple[str | None, str, int]] = {
    "SessionStart": ("startup|resume|clear|compact", "session-start", 30),
    "UserPromptSubmit": (None, "user-prompt-submit", 15),
    "PreCompact": (None, "pre-compact", 10),
    "SessionEnd": (None, "session-end", 5),
}
PLUGIN_MARK = "lmm-plugin"  # in the plugin's own files: what tells lmm a file there is its own
DESCRIPTION = ("lmm: this repository's long-term memory (git history, past sessions, notes) for Claude Code: "
               "a cited session brief at start, a targeted recall when a prompt is about something it knows, "
               "the recall/remember tools over MCP, and the transcript captured at the end.")


def hook_command(arg: str) -> str:
    """The shell command a hook runs: ``lmm hook ARG`` when lmm is on PATH, nothing otherwise."""
    return f"command -v lmm >/dev/null 2>&1 && lmm hook {arg} || true"


def hooks_config(events: dict[str, tuple[str | None, str, int]] = EVENTS) -> dict[str, list[dict[str, Any]]]:
    """``{EVENT: [matcher group]}``: one group per event, holding lmm's hook alone."""
    out: dict[str, list[dict[str, Any]]] = {}
    for event, (matcher, arg, timeout) in events.items():
        group: dict[str, Any] = {"matcher": matcher} if matcher else {}
        group["hooks"] = [{"type": "command", "command": hook_command(arg), "timeout": timeout}]
        out[event] = [group]
    return out


def mcp_server(command: str = "lmm") -> dict[str, Any]:
    return {"type": "stdio", "command": command, "args": ["mcp"]}


def project_changes(root: Path) -> list[Any]:
    hooks = hooks_config()
    return [
        JsonChange(root / ".claude" / "settings.json",
                   items=[(["hooks", event], groups[0]) for event, groups in hooks.items()]),
        JsonChange(root / ".mcp.json", members=[(["mcpServers"], "lmm", mcp_server())]),
    ]


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lmm")
    except PackageNotFoundError:
        return "0.0.0"


def plugin_changes(folder: Path) -> list[Any]:
    """The plugin's files, each lmm's own. ``${CLAUDE_PLUGIN_ROOT}`` is not needed: every command is
    lmm's, found on PATH."""
    __version__ = _version()
    author = {"name": "lmm"}
    plugin = {"name": "lmm", "version": __version__, "description": DESCRIPTION, "author": author,
              "keywords": ["memory", "git", "mcp", PLUGIN_MARK]}
    marketplace = {"name": "lmm", "owner": author,
                   "metadata": {"description": f"The lmm plugin, made by `lmm integrate claude --plugin` ({PLUGIN_MARK})."},
                   "plugins": [{"name": "lmm", "source": "./", "description": DESCRIPTION, "version": __version__}]}
    hooks = {"description": f"lmm's session brief, prompt recall and transcript capture ({PLUGIN_MARK})",
             "hooks": hooks_config()}
    # Only `mcpServers` is read from a plugin's .mcp.json; the marker rides in the server's env.
    mcp = {"mcpServers": {"lmm": {"command": "lmm", "args": ["mcp"], "env": {"LMM_VIA": PLUGIN_MARK}}}}
    return [
        FileChange(folder / ".claude-plugin" / "plugin.json", _json(plugin), PLUGIN_MARK),
        FileChange(folder / ".claude-plugin" / "marketplace.json", _json(marketplace), PLUGIN_MARK),
        FileChange(folder / "hooks" / "hooks.json", _json(hooks), PLUGIN_MARK),
        FileChange(folder / ".mcp.json", _json(mcp), PLUGIN_MARK),
    ]
