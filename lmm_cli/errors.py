"""Domain errors. Each carries a one-line, fix-it message; the CLI edge prints it and exits 1.

Nothing here imports anything heavy: hooks and the drainer import this module.
"""

from __future__ import annotations

__all__ = [
    "LmmError",
    "NotARepository",
    "BareRepository",
    "NotInitialised",
    "StoreTooNew",
    "StoreLocked",
    "StoreCorrupt",
    "ConfigError",
    "BadInput",
]


class LmmError(Exception):
    """Base of every error a user can cause or fix. ``str(e)`` is the whole message."""

    exit_code = 1


class NotARepository(LmmError):
    def __init__(self, path: str) -> None:
        super().__init__(f"not a git repository: {path} (run inside a repository or pass --repo PATH)")


class BareRepository(LmmError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is a bare repository: lmm needs a working tree; "
            f"clone it (git clone {path} DIR) and run lmm there"
        )


class NotInitialised(LmmError):
    def __init__(self, root: str) -> None:
        super().__init__(f"lmm is not initialised in {root}; run `lmm init` there first")


class StoreTooNew(LmmError):
    def __init__(self, path: str, found: int, known: int) -> None:
        super().__init__(
            f"the store at {path} was written by a newer lmm (schema {found}, this lmm knows {known}); "
            "upgrade lmm (pip install -U lmm)"
        )


def _store(path: str | None) -> str:
    return f"the store at {path}" if path else "this repository's store"


class StoreLocked(LmmError):
    def __init__(self, path: str | None) -> None:
        super().__init__(
            f"{_store(path)} is locked by another process; wait for it to finish and try again"
        )


class StoreCorrupt(LmmError):
    def __init__(self, path: str | None, detail: str) -> None:
        super().__init__(
            f"{_store(path)} is unreadable ({detail}); run `lmm init --rebuild` to move it aside "
            "and rebuild from git history"
        )


class ConfigError(LmmError):
    pass


class BadInput(LmmError):
    pass
