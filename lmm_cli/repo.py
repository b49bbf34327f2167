"""Find the git repository lmm works on, and run git in it with a clean environment.

Git exports GIT_DIR, GIT_INDEX_FILE and friends to hooks; a background drainer (or a fit it starts)
must not inherit them (GIT_INDEX_FILE can point at a lock file, GIT_DIR at another repository), so
every git call in lmm goes through ``run_git`` or ``popen_git`` here, which run it with
``git_env()``. A test keeps it so.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BareRepository, LmmError, NotARepository

__all__ = ["Repo", "discover", "git_env", "run_git", "popen_git", "store_dir_for", "GitError",
           "ObjectChecker", "object_checker", "keep_object_checker", "drop_object_checker"]

# Variables git sets for hooks that would redirect a child git to the wrong repository or index.
_GIT_SCOPED = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE",
    "GIT_EDITOR", "GIT_EXEC_PATH", "GIT_REFLOG_ACTION", "GIT_QUARANTINE_PATH",
)


class GitError(LmmError):
    pass


# lmm never talks to a remote. In a partial clone git fetches a missing object from the promisor
# remote on its own (`git log -p` needing an old blob); GIT_NO_LAZY_FETCH only exists from git 2.44,
# so every transport is refused instead: such a fetch fails at once, before any connection. The
# per-protocol keys are set too, because `protocol.<name>.allow` in a user's config wins over
# `protocol.allow`.
_NO_TRANSPORT = ("protocol.allow", "protocol.file.allow", "protocol.git.allow", "protocol.ssh.allow",
                 "protocol.http.allow", "protocol.https.allow", "protocol.ext.allow")


def git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_SCOPED}
    env["GIT_OPTIONAL_LOCKS"] = "0"  # never take index.lock behind the user's back
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"
    # GIT_CONFIG_COUNT/KEY_n/VALUE_n (git ≥ 2.31) reach the child git a lazy fetch would start, and
    # come after every config file; a count the user set already is extended, not replaced.
    try:
        n = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
    except ValueError:
        n = 0
    for key in _NO_TRANSPORT:
        env[f"GIT_CONFIG_KEY_{n}"] = key
        env[f"GIT_CONFIG_VALUE_{n}"] = "never"
        n += 1
    env["GIT_CONFIG_COUNT"] = str(n)
    return env


def _command(args: tuple[str, ...]) -> str:
    """The git subcommand in ``args`` (past ``-c key=value`` and ``-C dir``), for messages."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in ("-c", "-C") else 1
    return args[i] if i < len(args) else "git"


def run_git(cwd: Path, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
    """Run git in ``cwd`` without the hook variables; its stdout. ``check``: a non-zero exit raises
    ``GitError`` with git's last line of stderr."""
    try:
        p = subprocess.run(
            ["git", *args], cwd=cwd, env=git_env(), input=input, capture_output=True,
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None
    if check and p.returncode != 0:
        msg = p.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {_command(args)} failed: {msg[-1] if msg else 'exit ' + str(p.returncode)}")
    return p.stdout


def popen_git(cwd: Path | None, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start git streaming (``subprocess.Popen`` keywords pass through), without the hook variables."""
    try:
        return subprocess.Popen(["git", *args], cwd=cwd, env=git_env(), **kwargs)
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None


class ObjectChecker:
    """Asks one long-lived ``git cat-file --batch-check`` what objects are, so that a warm caller
    (the MCP server) does not start a git for each recall's question "does git still have these
    commits?" (5 ms a time).

    Git looks a loose object up on disk at each question, so a pruned loose object is seen at once;
    packs it reads at its start. So the process is started again whenever the pack folder changes
    (a gc, a repack, a fetch), and after ``MAX_AGE`` seconds in any case. ``lines`` answers None when
    the process cannot: the caller then asks a git of its own, as before."""

    MAX_AGE = 120.0
    TIMEOUT = 10.0

    def __init__(self, root: Path, pack_dir: Path) -> None:
        self.root = root
        self.pack_dir = pack_dir
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stamp: int | None = None
        self._started = 0.0
        self._buf = b""

    def _pack_stamp(self) -> int | None:
        try:
            return self.pack_dir.stat().st_mtime_ns
        except OSError:
            return None

    def _start(self) -> subprocess.Popen[bytes]:
        self._stop()
        self._stamp = self._pack_stamp()
        self._proc = popen_git(self.root, "cat-file", "--batch-check", stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._started = time.monotonic()
        self._buf = b""
        return self._proc

    def _stop(self) -> None:
        p, self._proc = self._proc, None
        if p is None:
            return
        try:
            if p.stdin:
                p.stdin.close()
            p.wait(timeout=1)
        except (OSError, subprocess.TimeoutExpired):
            p.kill()
            p.wait()
        finally:
            if p.stdout:
                p.stdout.close()

    def _read_lines(self, p: subprocess.Popen[bytes], n: int) -> list[bytes] | None:
        assert p.stdout is not None
        fd = p.stdout.fileno()
        deadline = time.monotonic() + self.TIMEOUT
        while self._buf.count(b"\n") < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n", n)
        return lines

    def lines(self, names: list[str]) -> list[str] | None:
        """git's answer for each of ``names`` (object ids; no newlines), one line each, in order:
        ``<id> <type> <size>`` or ``<id> missing``. None when git could not be asked."""
        if not names:
            return []
        with self._lock:
            for _ in range(2):  # a process that died (or was told about a gc) is started once more
                p = self._proc
                try:
                    if (p is None or p.poll() is not None or self._pack_stamp() != self._stamp
                            or time.monotonic() - self._started > self.MAX_AGE):
                        p = self._start()
                    assert p.stdin is not None
                    out: list[bytes] = []
                    for i in range(0, len(names), 256):  # never more in the pipes than they hold
                        batch = names[i:i + 256]
                        p.stdin.write(("\n".join(batch) + "\n").encode())
                        p.stdin.flush()
                        got = self._read_lines(p, len(batch))
                        if got is None:
                            raise OSError("git cat-file did not answer")
                        out += got
                    return [ln.decode("utf-8", "replace") for ln in out]
                except (OSError, ValueError, GitError):
                    self._stop()
            return None

    def close(self) -> None:
        with self._lock:
            self._stop()


_CHECKERS: dict[Path, ObjectChecker] = {}
_CHECKERS_LOCK = threading.Lock()


def keep_object_checker(root: Path, common_dir: Path) -> ObjectChecker:
    """Keep an :class:`ObjectChecker` for ``root`` for this process (a long-lived caller does this):
    ``object_checker(root)`` then finds it. A short-lived command asks a git of its own instead."""
    with _CHECKERS_LOCK:
        chk = _CHECKERS.get(root)
        if chk is None:
            chk = _CHECKERS[root] = ObjectChecker(root, common_dir / "objects" / "pack")
        return chk


def object_checker(root: Path) -> ObjectChecker | None:
    return _CHECKERS.get(root)


def drop_object_checker(root: Path) -> None:
    with _CHECKERS_LOCK:
        chk = _CHECKERS.pop(root, None)
    if chk is not None:
        chk.close()


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
    try:
        probe = run_git(start, "rev-parse", "--is-bare-repository", "--is-inside-work-tree")
    except GitError as e:
        if "not installed" in str(e):
            raise
        raise NotARepository(str(start)) from None
    bare, inside = probe.decode().split()[:2]
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


def store_dir_for(repo: Repo, home: str | None = None) -> Path:
    """``<git common dir>/lmm``, or a per-repository folder under ``$LMM_HOME`` when it is set
    (``home``: that folder, instead of the environment's)."""
    home = os.environ.get("LMM_HOME") if home is None else home
    if not home:
        return repo.common_dir / "lmm"
    key = hashlib.sha256(str(repo.common_dir).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    # Named after the main repository, not the worktree, so every worktree finds the same folder.
    main = repo.common_dir.parent if repo.common_dir.name == ".git" else repo.common_dir
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", main.name)[:40] or "repo"
    return Path(home).expanduser().resolve() / "repos" / f"{name}-{key}"
