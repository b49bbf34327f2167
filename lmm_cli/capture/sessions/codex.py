"""Codex CLI rollouts: ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<uuid>.jsonl`` (``~/.codex``).

Each line is ``{"timestamp", "type", "payload"}``. ``session_meta`` names the session, its working
directory and git branch; ``response_item`` carries the conversation: ``message`` (role ``user`` or
``assistant``), ``function_call`` (a shell command, or ``apply_patch``), ``function_call_output``,
``custom_tool_call``; everything else is skipped. The first user messages wrapped in
``<environment_context>`` or ``<user_instructions>`` are injected context, not the user's words;
so is the user-role message in which Codex hands the model the AGENTS.md files (``# AGENTS.md
instructions for <dir>`` then ``<INSTRUCTIONS>…</INSTRUCTIONS>``), which holds lmm's own section.
Hook output (lmm's brief and recalls) arrives as developer messages, which are never read.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .jsonl import parse_ts, records
from .model import Command, Session, Turn, corrections, strip_injected

__all__ = ["home", "transcripts", "read", "first_cwd"]

_PATCH_FILE = re.compile(r"^\*\*\* (?:Update|Add|Delete) File: (.+?)\s*$", re.MULTILINE)
_MOVE_TO = re.compile(r"^\*\*\* Move to: (.+?)\s*$", re.MULTILINE)
SHELL_CALLS = {"shell", "exec_command", "local_shell", "container.exec", "shell_command"}
_AGENTS_MD = re.compile(r"^\s*# AGENTS\.md instructions for [^\n]*\n+\s*<INSTRUCTIONS>.*?(?:</INSTRUCTIONS>|\Z)", re.DOTALL)


def home() -> Path:
    return Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex").expanduser()


def transcripts(base: Path | None = None) -> Iterator[Path]:
    root = (base or home()) / "sessions"
    if root.is_dir():
        yield from sorted(root.glob("**/rollout-*.jsonl"))


def first_cwd(path: Path, limit: int = 20) -> str | None:
    for i, (_, rec) in enumerate(records(path)):
        payload = rec.get("payload")
        if rec.get("type") in ("session_meta", "turn_context") and isinstance(payload, dict):
            cwd = payload.get("cwd")
            if isinstance(cwd, str) and cwd:
                return cwd
        if i >= limit:
            break
    return None


def _command(args: Any) -> str:
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return args.strip()
    if not isinstance(args, dict):
        return ""
    cmd = args.get("command") or args.get("cmd")
    if isinstance(cmd, list):
        parts = [str(c) for c in cmd]
        if len(parts) >= 3 and parts[0] in ("bash", "sh", "zsh", "/bin/bash", "/bin/sh") and parts[1] in ("-lc", "-c"):
            return parts[2].strip()
        return " ".join(parts).strip()
    return str(cmd).strip() if cmd else ""


def _failed(output: Any) -> tuple[bool, str]:
    """(failed, what it printed) from a function_call_output payload's ``output``."""
    text, code = "", None
    if isinstance(output, str):
        try:
            data = json.loads(output)
        except ValueError:
            data = None
        if isinstance(data, dict):
            text = str(data.get("output") or "")
            meta = data.get("metadata")
            if isinstance(meta, dict):
                code = meta.get("exit_code")
        else:
            text = output
            m = re.search(r"(?:Exit code|exit_code|Process exited with code)[:=]?\s*(-?\d+)", output)
            code = int(m.group(1)) if m else None
    elif isinstance(output, dict):
        text = str(output.get("output") or output.get("content") or "")
        code = output.get("exit_code")
    failed = isinstance(code, int) and code != 0
    return failed, "\n".join(text.strip().splitlines()[:5])[:500]


def read(path: Path, offset: int = 0) -> Session:
    session = Session(tool="codex", id=path.stem)
    turn: Turn | None = None
    pending: dict[str, Command] = {}
    for off, rec in records(path, offset):
        payload = rec.get("payload")
        ts = parse_ts(rec.get("timestamp"))
        if ts:
            session.started = session.started or ts
            session.ended = max(session.ended, ts)
        if not isinstance(payload, dict):
            continue
        kind = rec.get("type")
        if kind == "session_meta":
            session.id = str(payload.get("id") or session.id)
            session.cwd = payload.get("cwd") if isinstance(payload.get("cwd"), str) else session.cwd
            git = payload.get("git")
            if isinstance(git, dict) and isinstance(git.get("branch"), str):
                session.branch = git["branch"]
            continue
        if kind != "response_item":
            continue
        ptype = payload.get("type")
        if ptype == "message":
            content = payload.get("content")
            texts = [c.get("text", "") for c in content if isinstance(c, dict) and isinstance(c.get("text"), str)] \
                if isinstance(content, list) else []
            text = "\n".join(texts)
            if payload.get("role") == "user":
                words = strip_injected(_AGENTS_MD.sub("", text))
                if not words:
                    continue
                turn = Turn(id=f"o{off}", ts=ts, prompt=words, offset=off, corrections=corrections(words))
                session.turns.append(turn)
            elif payload.get("role") == "assistant" and text.strip():
                if turn is None:
                    turn = Turn(id=f"o{off}", ts=ts, prompt="", offset=off, by_user=False)
                    session.turns.append(turn)
                turn.answer = text.strip()
        elif ptype in ("function_call", "custom_tool_call", "local_shell_call"):
            if turn is None:
                turn = Turn(id=f"o{off}", ts=ts, prompt="", offset=off, by_user=False)
                session.turns.append(turn)
            name = str(payload.get("name") or "")
            args = payload.get("arguments", payload.get("input", payload.get("action")))
            patch = args if isinstance(args, str) and "*** Begin Patch" in args else ""
            cmd = "" if patch else _command(args)
            if "apply_patch" in name or "*** Begin Patch" in cmd:
                patch = patch or cmd
                for m in _PATCH_FILE.finditer(patch):
                    turn.add_unique(turn.edited, m.group(1))
                for m in _MOVE_TO.finditer(patch):
                    turn.add_unique(turn.edited, m.group(1))
                continue
            if name in SHELL_CALLS or ptype == "local_shell_call" or cmd:
                command = Command(cmd[:1000], ts=ts)
                if command.command:
                    turn.commands.append(command)
                    pending[str(payload.get("call_id") or payload.get("id"))] = command
        elif ptype in ("function_call_output", "custom_tool_call_output"):
            done = pending.pop(str(payload.get("call_id")), None)
            if done is not None:
                done.failed, err = _failed(payload.get("output"))
                if done.failed:
                    done.error = err
    if session.turns:
        session.turns[-1].open = True
    return session
