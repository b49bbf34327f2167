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
    "StoreUnwritable",
    "StoreFull",
    "HooksError",
    "ConfigError",
    "BadInput",
    "BadArgument",
    "HistoryTooShort",
    "from_os_error",
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
            f"{_store(path)} is locked by another process; wait for it to finish and try again "
            "(LMM_LOCK_TIMEOUT sets how many seconds lmm waits)"
        )


class StoreCorrupt(LmmError):
    def __init__(self, path: str | None, detail: str) -> None:
        super().__init__(
            f"{_store(path)} is corrupt and unreadable ({detail}); run `lmm init --rebuild`: it rebuilds from git history, "
            "carries over your notes and rewrite links, and keeps the damaged file beside the new one"
        )


class StoreUnwritable(LmmError):
    """The store's folder cannot be created or written (a read-only disk or folder, LMM_HOME at a file)."""

    def __init__(self, path: str, detail: str) -> None:
        import os

        if os.path.isdir(path):  # the store is there: it is the store (or its disk) that is read-only
            hint = "make it writable and try again (reading it needs that too: SQLite writes its WAL beside it)"
        elif _lmm_home_involved(path):
            hint = "point LMM_HOME at a writable folder, or unset it"
        else:
            hint = "make that folder writable (or set LMM_HOME to a writable folder) and try again"
        super().__init__(f"cannot write the store at {path} ({detail}); {hint}")


class StoreFull(LmmError):
    def __init__(self, path: str | None) -> None:
        super().__init__(
            f"no space left for {_store(path)}; free some disk space, then run `lmm ingest` to continue "
            "(what was captured before is kept)"
        )


def _lmm_home_involved(path: str) -> bool:
    import os

    home = os.environ.get("LMM_HOME")
    return home is not None and home != "" and path.startswith(os.path.abspath(os.path.expanduser(home)))


class HooksError(LmmError):
    """Something in the git hooks folder stops lmm from installing or removing its hooks."""


class ConfigError(LmmError):
    pass


class BadInput(LmmError):
    pass


class BadArgument(BadInput):
    """A value a command (or an MCP tool) was given is out of range or unreadable: a usage error."""

    exit_code = 2


class HistoryTooShort(BadInput):
    """The repository's history has too few commits for what was asked (replay, fitting)."""


def from_os_error(e: OSError) -> LmmError | None:
    """The domain error for a file-system failure a user can fix (a full disk, a read-only folder);
    None for the rest, which are bugs and keep their traceback."""
    import errno

    where = e.filename if isinstance(e.filename, str) else None
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StoreFull(where)
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR):
        return StoreUnwritable(where or "this repository's store", e.strerror or str(e))
    return None
