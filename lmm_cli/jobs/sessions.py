"""Capture assistant sessions in the background: ``python -m lmm_cli.jobs.sessions STORE_DIR [TRANSCRIPT ...] [--final]``,
or, as the capture hooks start it (``serve.capture_hook``), ``--hook EVENT … [-- TRANSCRIPT]``.

Started detached by the assistants' hooks (Claude Code's SessionEnd and PreCompact give the
transcript's path; ``--final`` says the session is over, so its last turn is written too). With no
transcript named, every transcript of the repository is captured (``core.capture_sessions``). Waits a
few seconds for the capture lock when a drainer holds it, logs to ``logs/sessions.log`` (counts and
errors, never captured text) and exits 0 whatever happens.

Claude Code writes its transcript asynchronously: at SessionEnd the last turn may not be on disk yet,
so with ``--final`` the named transcripts are first given a moment to stop growing.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from ..errors import LmmError, StoreLocked
from ..workspace import workspace_from_store
from ._run import detach, log, start

__all__ = ["main", "LOCK_WAIT"]

LOCK_WAIT = 20.0  # seconds to wait for a drainer or an ingest holding the capture lock
SETTLE = 0.5      # a named transcript counts as written once its size holds still this long…
SETTLE_MAX = 3.0  # …or after this long


def _settle(paths: list[str]) -> None:
    """Wait until the files stop growing (at most ``SETTLE_MAX`` seconds)."""
    def sizes() -> list[int]:
        out = []
        for p in paths:
            try:
                out.append(os.stat(p).st_size)
            except OSError:
                out.append(-1)
        return out

    deadline = time.monotonic() + SETTLE_MAX
    last = sizes()
    while time.monotonic() < deadline:
        time.sleep(SETTLE)
        now = sizes()
        if now == last:
            return
        last = now


def _from_hook(argv: list[str]) -> int:
    """``--hook EVENT --hook-ms MS [--where DIR]… [--final] [-- TRANSCRIPT]``, as
    ``serve.capture_hook`` starts it: find the store from the places given (the first that is a
    folder, in a repository lmm keeps), write the hook's line in its ``logs/hooks.log``, capture."""
    import argparse

    from ..workspace import first_workspace

    ap = argparse.ArgumentParser(prog="python -m lmm_cli.jobs.sessions")
    ap.add_argument("--hook", required=True)
    ap.add_argument("--hook-ms", default="?")
    ap.add_argument("--where", action="append", default=[])
    ap.add_argument("--final", action="store_true")
    ap.add_argument("transcripts", nargs="*")
    a = ap.parse_args(argv)
    detach(10)
    try:
        ws = first_workspace(a.where)
    except (OSError, LmmError):
        ws = None
    if ws is None:
        return 0  # not a repository lmm keeps: nothing to do, nothing to say
    log(ws.dir, "hooks", f"{a.hook} capture pid={os.getpid()} final={int(a.final)}"
                         f" transcript={'yes' if a.transcripts else 'no'} ms={a.hook_ms}")
    return _capture(ws.dir, a.transcripts, a.final)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--hook"]:
        return _from_hook(argv)
    store = start(argv, nice=10)
    if store is None:
        return 0
    return _capture(store, [a for a in argv[1:] if a != "--final"], "--final" in argv[1:])


def _capture(store: Path, transcripts: list[str], final: bool) -> int:
    try:
        from ..core import capture_sessions

        if final and transcripts:
            _settle(transcripts)
        ws = workspace_from_store(store)
        out = capture_sessions(ws, transcripts=transcripts or None, final=final, wait=LOCK_WAIT)
        log(store, "sessions", f"captured files={out['files']} read={out['read']} sessions={out['sessions']}"
                               f" turns={out['turns']} corrections={out['corrections']} skipped={out['skipped']}"
                               f" pending={out['pending']} final={int(final)} seconds={out['seconds']}")
    except StoreLocked:
        log(store, "sessions", f"busy: the capture lock was held for {LOCK_WAIT:.0f}s; the next capture reads on")
    except (OSError, ValueError, KeyError, LmmError) as e:  # the repository is gone or moved meanwhile
        log(store, "sessions", f"error {type(e).__name__}: {str(e)[:200]}")
    except Exception:  # noqa: BLE001 - a background job never fails; the log says why
        log(store, "sessions", f"crash {traceback.format_exc(limit=3)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
