"""Cursor: the MCP server, a rule that tells the agent when to use it, and hooks.

- ``.cursor/mcp.json``: ``mcpServers.lmm`` beside the user's servers.
- ``.cursor/rules/lmm.mdc``: YAML front matter (``alwaysApply: true``) and a few lines naming lmm's
  tools. Context reaches Cursor's agent through rules and MCP: its hooks cannot add to a prompt.
- ``.cursor/hooks.json`` (``{"version": 1, "hooks": {EVENT: [{"command": …}]}}``): ``afterFileEdit``
  records the files the agent edits in the store's working set, ``stop`` starts a capture of the
  conversation's transcript when Cursor gives one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .claude import hook_command
from .codex import AGENTS_SECTION
from .merge import FileChange, JsonChange

__all__ = ["changes", "RULE", "RULE_MARK", "EVENTS"]

RULE_MARK = "<!-- lmm -->"
EVENTS = {"afterFileEdit": "after-file-edit", "stop": "stop"}

RULE = f"""\
---
description: lmm, this repository's long-term memory (MCP server `lmm`)
globs:
alwaysApply: true
---
{RULE_MARK}
{AGENTS_SECTION.split(chr(10), 2)[2]}
"""


def changes(root: Path) -> list[Any]:
    cursor = root / ".cursor"
    return [
        JsonChange(cursor / "mcp.json", members=[(["mcpServers"], "lmm", {"command": "lmm", "args": ["mcp"]})]),
        FileChange(cursor / "rules" / "lmm.mdc", RULE, RULE_MARK),
        JsonChange(cursor / "hooks.json", members=[([], "version", 1)],
                   items=[(["hooks", event], {"command": hook_command(arg)}) for event, arg in EVENTS.items()]),
    ]
