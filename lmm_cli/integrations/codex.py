"""Codex CLI: the MCP server in the user's config, hooks in the repository, a section of AGENTS.md.

- ``$CODEX_HOME/config.toml`` (``~/.codex`` by default) gets a ``[mcp_servers.lmm]`` table, between
  marker comments. It is the user's own file, never committed, so the command is the absolute path
  of this lmm (Codex may start without lmm's virtual environment on PATH), and ``LMM_HOME`` is
  passed through to it (``env_vars``: Codex gives a server only a few variables of its own). The
  server finds the repository from the directory Codex runs in. A ``[mcp_servers.lmm]`` the user
  wrote is left alone.
- ``<repo>/.codex/hooks.json`` (same JSON shape as Claude Code's; Codex runs project hooks once the
  project is trusted and its hooks reviewed): the session brief at SessionStart, a recall at
  UserPromptSubmit, and the transcript capture at PreCompact and Stop (the end of each turn: what is
  finished so far) and at SessionEnd (the session's last turn too). Left out when the config turns
  hooks off (``[features] hooks = false``, or the older ``codex_hooks = false``).
- ``AGENTS.md`` gets a short marked section that names lmm's tools and when to call them: naming
  specific tools is what makes agents use them; a generated overview does not help.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

from ..errors import BadInput
from .claude import hooks_config
from .merge import BlockChange, JsonChange, read_text

__all__ = ["codex_home", "mcp_command", "hooks_enabled", "changes", "AGENTS_BEGIN", "AGENTS_END", "TOML_BEGIN",
           "TOML_END", "AGENTS_SECTION"]

EVENTS: dict[str, tuple[str | None, str, int]] = {
    "SessionStart": ("startup|resume|clear", "session-start", 30),
    "UserPromptSubmit": (None, "user-prompt-submit", 15),
    "PreCompact": (None, "pre-compact", 10),
    "Stop": (None, "stop", 10),
    "SessionEnd": (None, "session-end", 3),  # Codex clamps a SessionEnd hook to 3 s (and says so)
}
TOML_BEGIN = "# >>> lmm >>> added by `lmm integrate codex`; `lmm integrate codex --remove` takes it out"
TOML_END = "# <<< lmm <<<"
AGENTS_BEGIN = "<!-- lmm:agents:begin (added by `lmm integrate codex`; `--remove` takes it out) -->"
AGENTS_END = "<!-- lmm:agents:end -->"
AGENTS_SECTION = """\
## Memory (lmm)

This repository has a long-term memory served by the `lmm` MCP server: its git history, past
assistant sessions and notes, each answer citing its evidence.

- Before changing a part of the code you have not read in this session, call `recall` with the task
  in a few words (or run `lmm recall "<task>"`): it names the files to look at, the commits that
  changed them and why, and what tends to break there.
- When the user states a decision, a convention or a correction worth keeping, call `remember`.
- After using a recall, call `feedback` with its `recall_id` and whether it helped."""


def codex_home() -> Path:
    return Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex")


def mcp_command() -> str:
    """This lmm's script, absolute (user-level config only); ``lmm`` when it cannot be found."""
    here = Path(sys.executable).parent / "lmm"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("lmm") or "lmm"


def _toml(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}


def hooks_enabled(root: Path) -> bool:
    """False when the user's or the project's Codex config turns hooks off."""
    for cfg in (codex_home() / "config.toml", root / ".codex" / "config.toml"):
        features = _toml(read_text(cfg)).get("features") or {}
        if isinstance(features, dict) and (features.get("hooks") is False or features.get("codex_hooks") is False):
            return False
    return True


def _check_toml(where: Path) -> Any:
    def validate(text: str) -> None:
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise BadInput(f"cannot add lmm to {where}: it is not valid TOML ({e}); fix it and run again") from None
    return validate


def _has_own_entry(text: str) -> str | None:
    servers = _toml(text).get("mcp_servers")
    if isinstance(servers, dict) and "lmm" in servers:
        return "it has its own [mcp_servers.lmm]"
    return None


def changes(root: Path) -> list[Any]:
    config = codex_home() / "config.toml"
    # Codex starts a server with a small set of environment variables: LMM_HOME (where the stores
    # are, when the user moved them) is passed on by name.
    body = f'[mcp_servers.lmm]\ncommand = "{_toml_str(mcp_command())}"\nargs = ["mcp"]\nenv_vars = ["LMM_HOME"]'
    out: list[Any] = [BlockChange(config, TOML_BEGIN, TOML_END, body, refuse=_has_own_entry,
                                  validate=_check_toml(config))]
    if hooks_enabled(root):
        hooks = hooks_config(EVENTS)
        out.append(JsonChange(root / ".codex" / "hooks.json",
                              items=[(["hooks", event], groups[0]) for event, groups in hooks.items()]))
    out.append(BlockChange(root / "AGENTS.md", AGENTS_BEGIN, AGENTS_END, AGENTS_SECTION))
    return out


def _toml_str(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')
