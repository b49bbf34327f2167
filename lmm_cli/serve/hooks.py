"""`lmm hook EVENT`: what Claude Code, Codex CLI and Cursor run at the points of a session.

The assistant writes a JSON object on stdin (``session_id``, ``transcript_path``, ``cwd``,
``hook_event_name``, and per event ``source`` or ``prompt``; Cursor sends ``workspace_roots``
and ``file_path``). The handlers call the core:

- ``session-start`` (startup, resume, clear, compact): the session brief (``core.session_context``).
- ``user-prompt-submit``: a recall for the prompt, only when the prompt is about something the memory
  knows well enough (``core.prompt_context``); silence otherwise ("thanks", "run the tests").
- ``pre-compact``, ``session-end``, ``stop``: start the capture of the transcript, detached, and
  return at once (``serve.capture_hook``, which ``lmm hook`` reaches without importing this module).
- ``after-file-edit`` (Cursor): the edited file joins the store's activity signal (``store.activity``),
  which recall's working-set channel reads, as it does what ``lmm watch`` sees in the working tree.

Context goes out as ``{"hookSpecificOutput": {"hookEventName": …, "additionalContext": …}}``, which
Claude Code and Codex both read, and starts with ``LMM_MARK`` so that transcript capture never takes
lmm's own words for memory. A hook always exits 0 and never prints an error where the model would
read it: a missing store, a broken repository, bad JSON, a bug or running out of time
(``DEADLINE``) all end in silence, with one line in the store's ``logs/hooks.log`` when there is a
store to write it in. Each run logs its event, what it did and its wall time (without any text of
the session).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..store.brief_cache import SESSION_BUDGET as BRIEF_BUDGET
from .capture_hook import CAPTURE_EVENTS
from .capture_hook import NAMES as CAPTURE_NAMES
from .capture_hook import start as start_capture

__all__ = ["main", "Payload", "EVENTS", "DEADLINE", "BRIEF_BUDGET", "PROMPT_BUDGET"]

PROMPT_BUDGET = 600  # tokens of a prompt's recall
# Seconds a handler may take before it gives up in silence: under the timeouts lmm's hook entries set
# (30 s for SessionStart, 15 s for UserPromptSubmit), so the assistant never has to kill it.
DEADLINE = {"session-start": 20, "user-prompt-submit": 10}

# Every name an event arrives under (Claude Code and Codex: SessionStart; Cursor: afterFileEdit;
# the command line: session-start) → the one lmm uses.
EVENTS = {
    "sessionstart": "session-start",
    "userpromptsubmit": "user-prompt-submit",
    "afterfileedit": "after-file-edit",
    **CAPTURE_NAMES,  # pre-compact, session-end, stop: serve.capture_hook starts the capture job
}
_HOOK_EVENT_NAME = {"session-start": "SessionStart", "user-prompt-submit": "UserPromptSubmit"}


class _OutOfTime(BaseException):
    """Raised by the deadline's alarm; a BaseException, so that no ``except Exception`` on the way
    takes it for an ordinary error and carries on."""


@dataclass
class Payload:
    """The hook's input, whichever assistant sent it; every field optional."""

    event: str
    cwd: str | None = None
    session_id: str | None = None
    transcript_path: str | None = None
    source: str | None = None
    prompt: str | None = None
    file_path: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, event: str | None, data: Any) -> Payload:
        d = data if isinstance(data, dict) else {}

        def text(key: str) -> str | None:
            v = d.get(key)
            return v if isinstance(v, str) and v else None

        name = event or text("hook_event_name") or ""
        roots = d.get("workspace_roots")
        cwd = text("cwd") or (roots[0] if isinstance(roots, list) and roots and isinstance(roots[0], str) else None)
        return cls(event=EVENTS.get(name.replace("-", "").replace("_", "").lower(), name), cwd=cwd,
                   session_id=text("session_id") or text("conversation_id"), transcript_path=text("transcript_path"),
                   source=text("source"), prompt=text("prompt"), file_path=text("file_path"), raw=d)


def _workspace(p: Payload) -> Any:
    """This session's repository and store; None when there is no initialised store to serve."""
    from ..workspace import first_workspace

    return first_workspace((p.cwd, os.environ.get("CLAUDE_PROJECT_DIR"), os.getcwd()))


def _context(event: str, text: str) -> str:
    from ..text import LMM_MARK

    return json.dumps({"hookSpecificOutput": {"hookEventName": _HOOK_EVENT_NAME[event],
                                              "additionalContext": f"{LMM_MARK}\n{text.strip()}\n"}})


def _session_start(ws: Any, p: Payload, note: list[str]) -> str | None:
    from ..store.brief_cache import fetch, session_name

    db = ws.connect()  # the brief every capture made ahead, when still true: no import of the core
    try:
        brief = fetch(db, ws.repo.root, ws.repo.common_dir, name=session_name(BRIEF_BUDGET))
        kept = brief is not None
        if brief is None:
            from ..core import make_session_context

            brief = make_session_context(ws, db, BRIEF_BUDGET)
    finally:
        db.close()
    note.append(f"source={p.source or '-'} chars={len(brief)} brief={'kept' if kept else 'made'}")
    if not brief:
        return None
    tail = ("The `lmm` MCP server's `recall` tool answers questions about this repository's history "
            "with cited files and commits; `remember` keeps a decision or correction.")
    return _context("session-start", f"{brief.rstrip()}\n\n{tail}")


def _user_prompt(ws: Any, p: Payload, note: list[str]) -> str | None:
    from ..core import prompt_context

    if not p.prompt or not p.prompt.strip():
        note.append("no prompt")
        return None
    out = prompt_context(ws, p.prompt, budget=PROMPT_BUDGET)
    note.append(f"inject={int(out['inject'])} specificity={out['specificity']} dense={out.get('dense')} "
                f"recall_id={out.get('recall_id')}")
    if not out["inject"]:
        return None
    head = (f"lmm recalled this for the prompt (recall_id {out['recall_id']}; the `feedback` tool takes it):"
            if out.get("recall_id") else "lmm recalled this for the prompt:")
    return _context("user-prompt-submit", f"{head}\n{out['brief'].strip()}")


def _after_file_edit(ws: Any, p: Payload, note: list[str]) -> None:
    if not p.file_path:
        return None
    path = Path(p.file_path)
    try:
        rel = path.resolve().relative_to(ws.repo.root.resolve()).as_posix() if path.is_absolute() else path.as_posix()
    except ValueError:
        note.append("outside the repository")
        return None
    from ..core import record_activity

    note.append(f"activity +{len(record_activity(ws, [rel], via='cursor'))}")
    return None


HANDLERS = {
    "session-start": _session_start,
    "user-prompt-submit": _user_prompt,
    "after-file-edit": _after_file_edit,
}


def _log(ws: Any, msg: str) -> None:
    if ws is not None:
        from ..store.logs import append

        append(ws.dir, "hooks", msg)


def _alarm(seconds: int | None) -> None:
    if seconds is None or not hasattr(signal, "SIGALRM"):
        return

    def out_of_time(signum: int, frame: Any) -> None:
        raise _OutOfTime()
    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(seconds)


def main(event: str | None = None, stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run one hook; always 0. Only the handler's context reaches stdout."""
    t0 = time.perf_counter()
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    os.environ.setdefault("LMM_LOCK_TIMEOUT", "2")  # a capture holding the store must not hold up the session
    ws = None
    name = event or "?"
    note: list[str] = []
    errors = io.StringIO()
    out = None
    try:
        with contextlib.redirect_stdout(errors), contextlib.redirect_stderr(errors):  # nothing stray reaches the model
            try:
                data = json.loads(stdin.read() or "{}")
            except ValueError:
                data = {}
                note.append("unreadable payload")
            p = Payload.read(event, data)
            name = p.event
            if p.event in CAPTURE_EVENTS:  # the job it starts finds the store and logs
                start_capture(p.event, data, t0)
                return 0
            handler = HANDLERS.get(p.event)
            if handler is not None:
                _alarm(DEADLINE.get(p.event))
                ws = _workspace(p)
                if ws is None:
                    return 0
                out = handler(ws, p, note)
            else:
                note.append("unknown event")
    except _OutOfTime:
        note.append("out of time: nothing said")
        out = None
    except BaseException as e:  # noqa: BLE001 - a hook never fails the session; the log says why
        if isinstance(e, KeyboardInterrupt | SystemExit):
            note.append(type(e).__name__)
        else:
            note.append(f"error {type(e).__name__}: {str(e)[:300]} | "
                        + traceback.format_exc(limit=4).replace("\n", " | ")[-1500:])
        out = None
    finally:
        if hasattr(signal, "SIGALRM"):
            signal.alarm(0)
    if out:
        try:
            stdout.write(out + "\n")
            stdout.flush()
        except OSError:
            pass
    stray = errors.getvalue().strip()
    if stray:
        note.append(f"stray output {stray[:300]!r}")
    _log(ws, f"{name} {' '.join(note)} ms={1000 * (time.perf_counter() - t0):.0f}")
    return 0
