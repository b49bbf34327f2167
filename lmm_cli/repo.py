"""Find the git repository lmm works on, and run git in it with a clean environment.

Git exports GIT_DIR, GIT_INDEX_FILE and friends to hooks; a background drainer started from a hook
must not inherit them (GIT_INDEX_FILE can point at a lock file), so every git call goes through
``git_env()``.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import BareRepository, LmmError, NotARepository

__all__ = ["Repo", "discover", "git_env", "store_dir_for", "GitError"]

# Variables git sets for hooks that would redirect a child git to the wrong repository or index.
_GIT_SCOPED = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE",
    "GIT_EDITOR", "GIT_EXEC_PATH", "GIT_REFLOG_ACTION", "GIT_QUARANTINE_PATH",
)


class GitError(LmmError):
    pass


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_SCOPED}
    env["GIT_OPTIONAL_LOCKS"] = "0"  # never take index.lock behind the user's back
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    return env


def run_git(cwd: Path, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
    try:
        p = subprocess.run(
            ["git", *args], cwd=cwd, env=git_env(), input=input,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None
    if check and p.returncode != 0:
        msg = p.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {msg[-1] if msg else 'exit ' + str(p.returncode)}")
    return p.stdout


@dataclass(frozen=True)
class Repo:
    root: Path  # top of the work tree lmm was pointed at
    common_dir: Path  # the git dir shared by all worktrees
    hooks_dir: Path  # where git really looks for hooks (core.hooksPath respected)
    shallow: bool

    def git(self, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
        return run_git(self.root, *args, input=input, check=check)

    def head(self) -> str | None:
        out = self.git("rev-parse", "-q", "--verify", "HEAD^{commit}", check=False).strip()
        return out.decode() if out else None


def discover(path: Path | str | None = None) -> Repo:
    """The repository enclosing ``path`` (default: the current directory)."""
    start = Path(path) if path is not None else Path.cwd()
    if not start.exists():
        raise NotARepository(f"{start} (no such directory)")
    if start.is_file():
        start = start.parent
    probe = subprocess.run(
        ["git", "rev-parse", "--is-bare-repository", "--is-inside-work-tree"],
        cwd=start, env=git_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    if probe.returncode != 0:
        raise NotARepository(str(start))
    bare, inside = probe.stdout.decode().split()[:2]
    if bare == "true":
        raise BareRepository(str(start.resolve()))
    if inside != "true":  # inside .git itself
        raise NotARepository(f"{start} (inside a .git directory, not a work tree)")
    out = run_git(
        start, "rev-parse", "--show-toplevel", "--git-common-dir", "--git-path", "hooks",
        "--is-shallow-repository",
    ).decode("utf-8", "surrogateescape").splitlines()
    top, common, hooks, shallow = out[:4]
    root = Path(top)
    return Repo(
        root=root,
        common_dir=(start / common).resolve(),
        hooks_dir=(start / hooks).resolve(),
        shallow=shallow == "true",
    )


def store_dir_for(repo: Repo) -> Path:
    """``<git common dir>/lmm``, or a per-repository folder under ``$LMM_HOME`` when it is set."""
    home = os.environ.get("LMM_HOME")
    if not home:
        return repo.common_dir / "lmm"
    key = hashlib.sha256(str(repo.common_dir).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    # Named after the main repository, not the worktree, so every worktree finds the same folder.
    main = repo.common_dir.parent if repo.common_dir.name == ".git" else repo.common_dir
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", main.name)[:40] or "repo"
    return Path(home).expanduser().resolve() / "repos" / f"{name}-{key}"
