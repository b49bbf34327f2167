"""Shared helpers for the lmm benchmarks (stdlib only). Not a benchmark itself."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

BENCH_IDENTITY = {
    "GIT_AUTHOR_NAME": "lmm bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "lmm bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def lmm_command(explicit: str | None = None) -> list[str]:
    """How to run lmm: ``--lmm`` if given, else ``lmm`` from PATH, else ``python -m lmm_cli``."""
    if explicit:
        return explicit.split()
    exe = shutil.which("lmm")
    if exe:
        return [exe]
    return [sys.executable, "-m", "lmm_cli"]


def bench_env(lmm_home: Path, git_config: Path) -> dict[str, str]:
    """The environment every git and lmm process of a benchmark runs with.

    ``LMM_HOME`` points at a temporary directory so the user's real lmm stores are never
    touched; the user's global and system git configuration is ignored (an empty global
    config file is used instead) so that personal hooks, aliases or signing settings do
    not skew the timings; a fixed identity is set so commits work without any config.
    """
    env = dict(os.environ)
    env.update(BENCH_IDENTITY)
    env["LMM_HOME"] = str(lmm_home)
    env["GIT_CONFIG_GLOBAL"] = str(git_config)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    # A background tune or training round after init would compete for the CPU with what is being timed.
    env["LMM_AUTO_TUNE"] = "0"
    env["LMM_AUTO_TRAIN"] = "0"
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    # When lmm is not installed, let `python -m lmm_cli` (and the hooks) find the package
    # of this checkout.
    if importlib.util.find_spec("lmm_cli") is None and (ROOT / "lmm_cli").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH", "")) if x)
    return env


def make_tempdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def git(args: Sequence[str], cwd: Path | None, env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, **kw)


def clone(src: Path, dst: Path, env: dict[str, str]) -> None:
    """A full, independent copy of ``src`` (never modifies it), with every branch of the
    source as a local branch, as in the source repository."""
    git(["clone", "--no-hardlinks", "--quiet", str(src), str(dst)], None, env)
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname:strip=3)", "refs/remotes/origin"],
                          cwd=dst, env=env, check=True, capture_output=True, text=True).stdout.split()
    current = subprocess.run(["git", "symbolic-ref", "-q", "--short", "HEAD"], cwd=dst, env=env,
                             capture_output=True, text=True).stdout.strip()
    lines = [f"create refs/heads/{r} refs/remotes/origin/{r}\n" for r in refs if r not in ("HEAD", current)]
    if lines:
        git(["update-ref", "--stdin"], dst, env, input="".join(lines), text=True)


def resolve_repo(path: str) -> Path:
    p = Path(path).expanduser().resolve()
    r = subprocess.run(["git", "-C", str(p), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"not a git repository: {p}")
    return Path(r.stdout.strip())


def generated_repo(commits: int, seed: int, where: Path) -> Path:
    sys.path.insert(0, str(HERE))
    from genrepo import generate  # noqa: E402

    out = where / f"generated-{commits}"
    generate(out, commits, seed)
    return out


def lmm_status(lmm: list[str], repo: Path, env: dict[str, str]) -> dict[str, Any]:
    r = subprocess.run([*lmm, "status", "--json", "--repo", str(repo)], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"lmm status failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout)


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(xs)
    if not s:
        return math.nan
    k = max(1, math.ceil(q / 100 * len(s)))
    return s[k - 1]


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if not n:
        return math.nan
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells[1:]]
    return "\n".join(out)
