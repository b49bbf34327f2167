"""Shared fixtures: every test gets its own LMM_HOME, git config and repositories under tmp_path.

Tests drive lmm the way a user does: real `git` commands in real repositories, and `lmm` as a real
subprocess (``python -m lmm_cli``), so the hooks, the detached drainer and the exit codes are the
real ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def isolated_env(base: Path) -> dict[str, str]:
    """The environment that redirects all state under ``base``: lmm's store, git's global config,
    HOME (the home folder and its .gitconfig are made here)."""
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n"
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n"
        "[maintenance]\n\tauto = false\n[gc]\n\tauto = 0\n"
    )
    return {"HOME": str(home), "LMM_HOME": str(base / "lmm-home"), "GIT_CONFIG_GLOBAL": str(gitconfig),
            "GIT_CONFIG_NOSYSTEM": "1", "XDG_CONFIG_HOME": str(home / ".config"), "GIT_EDITOR": "true",
            # No background tunes outliving a test; tests/test_tune.py turns them on where it tests them.
            "LMM_AUTO_TUNE": "0",
            # Nor background training rounds (tests/model/test_rounds.py runs them where it tests them).
            "LMM_AUTO_TRAIN": "0",
            # `lmm init` embeds in the foreground, as the tests that use embeddings expect; the
            # background embedding is tested where it is turned on (tests/cli/test_fast_init.py).
            "LMM_AUTO_EMBED": "0"}


_GIT_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "EDITOR", "VISUAL")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Redirect all state into tmp_path: lmm's store, git's global config, HOME."""
    for var in _GIT_VARS:
        monkeypatch.delenv(var, raising=False)
    for k, v in isolated_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    return tmp_path


@contextmanager
def module_environment(base: Path) -> Iterator[None]:
    """``isolated`` for a module-scoped fixture (monkeypatch is function-scoped): set, then restore."""
    env = isolated_env(base)
    old = {k: os.environ.get(k) for k in (*env, *_GIT_VARS)}
    for var in _GIT_VARS:
        os.environ.pop(var, None)
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def git(repo: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> str:
    p = subprocess.run(["git", *args], cwd=repo, input=input, capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if check and p.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p.stdout


_BUILDS = ("init", "ingest", "tune")  # the commands that embed unless told not to


def lmm(*args: str, cwd: Path | None = None, input: str | None = None, check: bool = True,
        env: dict[str, str] | None = None, embed: bool = False) -> subprocess.CompletedProcess[str]:
    """``lmm ARGS`` as a subprocess. ``init``, ``ingest`` and ``tune`` run with ``--no-embed`` unless
    ``embed``: loading the encoder costs seconds, and only the tests about embeddings need it."""
    if args and args[0] in _BUILDS and not embed and "--no-embed" not in args and "--help" not in args:
        args = (*args, "--no-embed")
    p = subprocess.run([sys.executable, "-m", "lmm_cli", *args], cwd=cwd, input=input, capture_output=True,
                       text=True, env={**os.environ, **(env or {})})
    if check and p.returncode != 0:
        raise AssertionError(f"lmm {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def lmm_json(*args: str, cwd: Path | None = None, embed: bool = False) -> object:
    return json.loads(lmm(*args, "--json", cwd=cwd, embed=embed).stdout)


def commit_file(repo: Path, path: str, content: str, message: str, *, ts: int | None = None) -> str:
    """Writes and commits one file (authored and committed at epoch ``ts`` when given); its sha."""
    f = repo / path
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(content)
    git(repo, "add", "--", path)
    when = {} if ts is None else {"GIT_AUTHOR_DATE": f"@{ts} +0000", "GIT_COMMITTER_DATE": f"@{ts} +0000"}
    git(repo, "commit", "-q", "-m", message, env=when)
    return git(repo, "rev-parse", "HEAD").strip()


_TEMPLATES: dict[int, Path] = {}


@pytest.fixture(scope="session", autouse=True)
def _template_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Where ``make_repo`` keeps one built repository per commit count, copied for each test."""
    _TEMPLATES.clear()
    _TEMPLATES[-1] = tmp_path_factory.mktemp("templates")  # built lazily, under the first test's git config
    yield
    _TEMPLATES.clear()


def _build_repo(path: Path, commits: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    for i in range(commits):
        commit_file(path, f"src/mod{i}.py", f"def f{i}():\n    return {i}\n", f"Add mod{i}")
    return path


def make_repo(path: Path, commits: int = 3) -> Path:
    """A repository with ``commits`` commits (``src/mod<i>.py``), copied from a template built once per
    test session: the same history, made by real git, for a few file copies instead of git runs."""
    base = _TEMPLATES.get(-1)
    if base is None:  # used outside a test session (a benchmark importing conftest)
        return _build_repo(path, commits)
    template = _TEMPLATES.get(commits)
    if template is None:
        template = _TEMPLATES[commits] = _build_repo(base / f"repo-{commits}", commits)
    if path.exists() and any(path.iterdir()):
        raise AssertionError(f"make_repo: {path} is not empty")
    shutil.copytree(template, path, symlinks=True, dirs_exist_ok=True)
    return path


def store_dir(repo: Path) -> Path:
    return Path(lmm_json("status", "--repo", str(repo))["store"])  # type: ignore[index]


def wait_for_drain(repo: Path, timeout: float = 120.0) -> dict:
    """Wait until the hook-started background drainer has captured every queued event."""
    deadline = time.monotonic() + timeout
    while True:
        st = lmm_json("status", "--repo", str(repo))
        assert isinstance(st, dict)
        if st["queue"]["pending"] == 0 and not st["drainer"]["running"]:
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"drainer did not finish in {timeout}s: {st['queue']}, {st['drainer']}")
        time.sleep(0.2)


def wait_for_log(path: Path, text: str, count: int = 1, timeout: float = 30.0) -> str:
    """The log at ``path`` once ``text`` is in it ``count`` times (a detached job writes it); fails
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = path.read_text() if path.exists() else ""
        if got.count(text) >= count:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not {count} times in {path} after {timeout}s: {got[-2000:]}")
        time.sleep(0.1)


def shas_in_store(repo: Path, include_superseded: bool = True) -> set[str]:
    args = ["log", "--repo", str(repo), "-n", "100000", "--kind", "commit", "--kind", "merge"]
    if include_superseded:
        args.append("--all")
    return {e["source"] for e in lmm_json(*args)}  # type: ignore[union-attr,index]
