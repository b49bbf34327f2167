"""`lmm hook session-end | pre-compact | stop`: start the transcript's capture and return.

These hooks run as a session ends, where Claude Code gives all SessionEnd hooks together about
1.5 s and Codex clamps one to 3 s. Their whole job is to hand the transcript to a detached
``python -m lmm_cli.jobs.sessions --hook …``, so this module imports nothing but the standard
library's smallest parts (the full hook handler's imports cost ~60 ms, opening the workspace and
asking git where the repository is ~100 ms more). The job finds the repository and its store from
the places handed to it, captures, and writes the hook's line in the store's ``logs/hooks.log``
(with this process's wall time until the job was started). No store there: the job ends without a
word. This process always exits 0 and prints nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import IO

__all__ = ["main", "start", "capture_event", "CAPTURE_EVENTS", "NAMES"]

# Event → whether the session is over (its last turn is then written too).
CAPTURE_EVENTS = {"session-end": True, "pre-compact": False, "stop": False}
# Every name these events arrive under (SessionEnd, session-end, session_end…), as serve.hooks
# folds them (lower case, no - or _) → the name lmm uses.
NAMES = {"sessionend": "session-end", "precompact": "pre-compact", "stop": "stop"}


def capture_event(name: str) -> str | None:
    """The capture event ``name`` is (any spelling), or None for every other hook."""
    return NAMES.get(name.replace("-", "").replace("_", "").lower())


def _text(d: dict[str, object], key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) and v and "\0" not in v else None


def job_args(event: str, data: object, started: float) -> list[str]:
    """The job's command line for this hook's payload: where to look for the repository (the
    payload's working directory, ``CLAUDE_PROJECT_DIR``, this process's working directory), the
    transcript when the payload names one, and ``--final`` at the session's end."""
    d = data if isinstance(data, dict) else {}
    roots = d.get("workspace_roots")
    where = [_text(d, "cwd") or (roots[0] if isinstance(roots, list) and roots and isinstance(roots[0], str) else None),
             os.environ.get("CLAUDE_PROJECT_DIR") or None]
    try:
        where.append(os.getcwd())
    except OSError:  # the working directory was removed
        pass
    args = [sys.executable, "-m", "lmm_cli.jobs.sessions", "--hook", event,
            "--hook-ms", f"{1000 * (time.perf_counter() - started):.1f}"]
    for w in dict.fromkeys(w for w in where if w and "\0" not in w):
        args += ["--where", w]
    if CAPTURE_EVENTS.get(event):
        args.append("--final")
    transcript = _text(d, "transcript_path")
    return args + ["--", transcript] if transcript else args


def start(event: str, data: object, started: float) -> None:
    """Start the capture job for this payload, detached; nothing raised, nothing printed."""
    try:
        subprocess.Popen(job_args(event, data, started), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    except BaseException:  # noqa: BLE001 - a hook never fails the session, and says nothing
        pass


def main(event: str, stdin: IO[str] | None = None) -> int:
    started = time.perf_counter()
    try:
        data = json.loads((sys.stdin if stdin is None else stdin).read() or "{}")
    except (ValueError, OSError):
        data = {}
    start(event, data, started)
    return 0
