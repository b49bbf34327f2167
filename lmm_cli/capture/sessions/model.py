"""What lmm keeps of an assistant session, whichever assistant wrote it.

A session is cut into turns: one turn is what the user asked and everything the assistant did until
the user spoke again — the files it changed and read, the commands it ran and whether they failed, and
its last words. The user's corrections ("no, use X", "don't …", "always …") are kept apart: they are
the most valuable thing a session says about a repository.

Readers (``claude``, ``codex``, ``aider``) turn each assistant's own format into these records. They
parse loosely: unknown record types are skipped, a truncated last line is left for the next read, and
bytes that are not UTF-8 are replaced. Nothing here is redacted yet: capture redacts before writing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...text import LMM_MARK  # what lmm injects: transcript capture must never take it for memory

__all__ = ["Command", "Turn", "Session", "corrections", "strip_injected", "LMM_MARK"]


@dataclass
class Command:
    command: str
    failed: bool = False
    error: str = ""  # the first lines of what a failed command printed
    ts: float = 0.0  # when it was run (0: not known; the turn's time stands in)


@dataclass
class Turn:
    id: str  # stable within the session: the record id of the user's prompt (or its position)
    ts: float
    prompt: str
    answer: str = ""
    edited: list[str] = field(default_factory=list)
    read: list[str] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    corrections: list[str] = field(default_factory=list)
    open: bool = False  # the session may still add to this turn (the last one, before the session ended)
    offset: int = 0  # where the turn's first record starts in its file: an unfinished turn is re-read from here
    by_user: bool = True  # False: a subagent's task, written by the main agent (no corrections then)

    def add_unique(self, bucket: list[str], path: str) -> None:
        if path and path not in bucket:
            bucket.append(path)


@dataclass
class Session:
    tool: str  # claude | codex | aider
    id: str
    cwd: str | None = None
    branch: str | None = None
    title: str = ""  # the assistant's own summary of the session, when it wrote one
    started: float = 0.0
    ended: float = 0.0
    turns: list[Turn] = field(default_factory=list)
    offset: int = 0  # where the session starts in its file (aider keeps every session in one file)


# A correction is an instruction about how to work, said by the user: it starts the sentence (after an
# optional "no,"), so "I don't know why" is not one and "No, use httpx" is.
_CORRECTION = re.compile(
    r"(?:^|(?<=[.!?\n]))\s*(?:(?:and|but|also|so)\s+)?((?:no[,.!]?\s+|nope[,.!]?\s+|actually[,]?\s+|wrong[,.!]?\s+)?"
    r"(?:don'?t|do not|never|always|stop|please don'?t|please always|use|prefer|instead|we (?:always|never|don'?t)"
    r"|that'?s (?:wrong|not)|not like that)\b[^.!?\n]{3,300}[.!?]?)",
    re.IGNORECASE)
_LEADING_NO = re.compile(r"^\s*(?:no|nope|wrong)\b", re.IGNORECASE)


def corrections(prompt: str) -> list[str]:
    """The sentences of ``prompt`` that tell the assistant how (not) to work.

    A plain request ("use the logger in foo.py to …") also starts with "use": only sentences that
    follow a "no"/"wrong", or that say always/never/don't/stop/prefer/instead, count."""
    out: list[str] = []
    for m in _CORRECTION.finditer(prompt):
        s = " ".join(m.group(1).split())
        head = s.lower()
        if head.startswith(("use ", "prefer ")) and not _LEADING_NO.match(prompt):
            continue
        if s and s not in out:
            out.append(s)
    return out


_INJECTED_BLOCK = re.compile(
    r"<(system-reminder|environment_context|user_instructions|local-command-stdout|local-command-stderr|"
    r"command-name|command-message|command-args)>.*?</\1>", re.DOTALL)


def strip_injected(text: str) -> str:
    """The user's own words: tool-injected context blocks and lmm's own injected text removed."""
    text = _INJECTED_BLOCK.sub("", text)
    if LMM_MARK in text:
        text = text.split(LMM_MARK, 1)[0]
    return text.strip()
