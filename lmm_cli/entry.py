"""The ``lmm`` command's entry point (and ``python -m lmm_cli``'s).

An assistant hook runs before every prompt and at every session's start and end, so ``lmm hook
EVENT`` goes straight to its handler: importing the CLI (typer, click, rich) costs ~100 ms, which a
hook would pay each time for nothing. The hooks that only start a transcript's capture go to
``serve.capture_hook``, which imports next to nothing. Everything else is the CLI."""

from __future__ import annotations

import sys


def run() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "hook" and not sys.argv[2].startswith("-"):
        from .serve.capture_hook import capture_event
        from .serve.capture_hook import main as capture_main

        capture = capture_event(sys.argv[2])
        if capture:  # the session is ending: hand over, return
            sys.exit(capture_main(capture))
        from .serve.hooks import main as hook_main

        sys.exit(hook_main(sys.argv[2]))
    from .cli import app

    app()
