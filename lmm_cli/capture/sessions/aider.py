"""aider's chat history: ``.aider.chat.history.md`` at the repository root, appended across sessions.

``# aider chat started at YYYY-MM-DD HH:MM:SS`` opens a session; lines starting ``#### `` are the
user's; lines starting ``> `` are aider's tool output (``> Applied edit to PATH`` names a changed
file, ``> Running CMD`` a command); everything else is the assistant's reply.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from .model import Command, Session, Turn, corrections, strip_injected

__all__ = ["HISTORY", "read"]

HISTORY = ".aider.chat.history.md"
_START = re.compile(r"^# aider chat started at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s*$")
_APPLIED = re.compile(r"^> Applied edit to (.+?)\s*$")
_RUNNING = re.compile(r"^> Running (.+?)\s*$")


def read(path: Path, offset: int = 0) -> list[Session]:
    """The sessions in the history file from ``offset`` (the start of a session, or 0) on."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
    sessions: list[Session] = []
    session: Session | None = None
    turn: Turn | None = None
    answer: list[str] = []
    in_prompt = False
    pos = offset

    def close_turn() -> None:
        if turn is not None:
            text = "\n".join(answer).strip()
            if text:
                turn.answer = text
            turn.corrections = corrections(turn.prompt)
        answer.clear()

    for raw in data[:end].splitlines(keepends=True):
        off = pos
        pos += len(raw)
        line = raw.decode("utf-8", "replace").rstrip("\n").rstrip("\r")
        m = _START.match(line)
        if m:
            close_turn()
            ts = datetime.fromisoformat(m.group(1)).timestamp()
            session = Session(tool="aider", id=f"aider-{m.group(1).replace(' ', 'T')}", started=ts, ended=ts,
                              offset=off)
            sessions.append(session)
            turn, in_prompt = None, False
            continue
        if session is None:
            continue
        if line.startswith("#### "):
            words = strip_injected(line[5:])
            if in_prompt and turn is not None:  # a prompt of several lines
                turn.prompt = (turn.prompt + "\n" + words).strip()
                continue
            close_turn()
            turn = Turn(id=f"o{off}", ts=session.started, prompt=words, offset=off)
            session.turns.append(turn)
            in_prompt = True
            continue
        in_prompt = False
        if turn is None:
            continue
        if line.startswith("> "):
            a = _APPLIED.match(line)
            r = _RUNNING.match(line)
            if a:
                turn.add_unique(turn.edited, a.group(1))
            elif r:
                turn.commands.append(Command(r.group(1)[:1000], ts=session.started))
            continue
        answer.append(line)
    close_turn()
    if sessions and sessions[-1].turns:  # only the newest session may still be going on
        sessions[-1].turns[-1].open = True
    return sessions
