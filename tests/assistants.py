"""The real assistant CLIs the tests drive: Claude Code and Codex, installed from npm once.

They are installed into ``$LMM_TEST_CLIENTS`` (default ``~/.cache/lmm-tests/clients``, the home of the
user running the tests, read before the tests redirect HOME) with ``npm install --prefix``, at the
versions below, and reused by every later run; ``.ci/run`` installs them before the test suite. The
tests that need them are skipped only when npm itself is missing; a failed install fails them.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Clients", "clients", "assistant_env", "PACKAGES", "CLIENTS_DIR"]

PACKAGES = {"@anthropic-ai/claude-code": "2.1.197", "@openai/codex": "0.171.0"}
_REAL_HOME = Path(os.environ.get("HOME") or Path.home())
CLIENTS_DIR = Path(os.environ.get("LMM_TEST_CLIENTS") or _REAL_HOME / ".cache" / "lmm-tests" / "clients")
_REAL_PATH = os.environ.get("PATH", "")


@dataclass(frozen=True)
class Clients:
    claude: Path
    codex: Path


def _installed() -> bool:
    for name, version in PACKAGES.items():
        try:
            meta = json.loads((CLIENTS_DIR / "node_modules" / name / "package.json").read_text())
        except (OSError, ValueError):
            return False
        if meta.get("version") != version:
            return False
    return all((CLIENTS_DIR / "node_modules" / ".bin" / b).exists() for b in ("claude", "codex"))


_CACHE: list[Clients] = []


def clients() -> Clients:
    """The installed CLIs (installing them first if needed; one install at a time across processes)."""
    if _CACHE:
        return _CACHE[0]
    npm = shutil.which("npm", path=_REAL_PATH)
    if npm is None and not _installed():
        pytest.skip("npm is not installed: the tests that drive the real Claude Code and Codex CLIs need node and npm")
    CLIENTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(CLIENTS_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            assert npm is not None
            env = {**os.environ, "HOME": str(_REAL_HOME), "PATH": _REAL_PATH}
            p = subprocess.run([npm, "install", "--prefix", str(CLIENTS_DIR), "--no-audit", "--no-fund",
                                *(f"{n}@{v}" for n, v in PACKAGES.items())],
                               capture_output=True, text=True, env=env, timeout=1200)
            if p.returncode != 0 or not _installed():
                pytest.fail(f"npm install of {', '.join(PACKAGES)} into {CLIENTS_DIR} failed:\n{p.stdout[-2000:]}\n"
                            f"{p.stderr[-3000:]}")
    bin_dir = CLIENTS_DIR / "node_modules" / ".bin"
    _CACHE.append(Clients(claude=bin_dir / "claude", codex=bin_dir / "codex"))
    return _CACHE[0]


def assistant_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment an assistant CLI runs in here: HOME in the test's folder, this lmm first on
    PATH (its hooks and MCP server run `lmm`), nothing sent anywhere."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ,
           "HOME": str(home),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), _REAL_PATH]),
           "IS_SANDBOX": "1",  # Claude Code run as root (CI containers)
           "ANTHROPIC_API_KEY": "dummy",
           "DISABLE_AUTOUPDATER": "1",
           "DISABLE_TELEMETRY": "1",
           "DISABLE_ERROR_REPORTING": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "CODEX_HOME": str(home / ".codex"),
           **extra}
    env.pop("CLAUDE_PROJECT_DIR", None)
    env.pop("CLAUDECODE", None)
    return env
