"""Recall's fusion weights fitted to the repository's own history: in the background after
``lmm init`` and after enough new commits, by hand with ``lmm tune``; kept only when the fit
generalises to later commits."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    ROOT,
    git,
    lmm,
    lmm_json,
    make_repo,
    module_environment,
    store_dir,
    wait_for_drain,
)

ON = {"LMM_AUTO_TUNE": "1"}


def state(repo: Path, key: str) -> Any:
    db = sqlite3.connect(store_dir(repo) / "lmm.db")
    try:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row else None


def wait_for_tune(repo: Path, done: Any = lambda t: t is not None, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = lmm_json("status", "--repo", str(repo))
        f = st["fusion"]  # type: ignore[index]
        if not f["tuning_now"] and done(f["last_tune"]):
            return st  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"no tune finished in {timeout}s: {f}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A generated 400-commit history, initialised with auto-tuning on: what init printed and the
    status once the background tune finished."""
    base = tmp_path_factory.mktemp("tune")
    with module_environment(base):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from genrepo import generate

        repo = generate(base / "gen", commits=400, seed=5)
        init = lmm("init", "--repo", str(repo), "--no-hooks", "--no-embed", env=ON)
        yield {"repo": repo, "init": init.stdout, "status": wait_for_tune(repo)}


@pytest.fixture(autouse=True)
def isolated() -> None:  # the module fixture owns the environment
    return None


def test_init_fits_the_weights_in_the_background_and_recall_uses_them(gen: dict[str, Any]) -> None:
    repo = gen["repo"]
    assert "fitting recall to this repository's history in the background" in gen["init"]
    t = gen["status"]["fusion"]["last_tune"]
    assert t["status"] == "saved" and t["queries"] >= 30 and t["embed"] is False
    # the rule that kept it: on the later half, the early fit did at least as well as the defaults
    d, u = t["late"]["default"], t["late"]["tuned"]
    assert u["mrr"] + u["hit5"] >= d["mrr"] + d["hit5"]
    assert gen["status"]["fusion"]["weights"] == "tuned"
    assert state(repo, "fusion_weights") == {k: round(v, 4) for k, v in t["weights"].items()}
    log = (store_dir(repo) / "logs" / "tune.log").read_text()
    assert " start" in log and " end saved" in log
    assert len(git(repo, "worktree", "list").splitlines()) == 1  # the time-travel worktree is gone
    text = lmm("status", "--repo", str(repo)).stdout
    assert "weights fitted to this repository" in text and f"on {t['queries']} held-out commits" in text


def test_lmm_tune_by_hand_is_repeatable_and_one_runs_at_a_time(gen: dict[str, Any]) -> None:
    from lmm_cli.model.fusion import LOCK_NAME
    from lmm_cli.store.lock import CaptureLock

    repo = gen["repo"]
    first = lmm_json("tune", "--repo", str(repo), "--holdout", "120", "--no-embed")
    again = lmm_json("tune", "--repo", str(repo), "--holdout", "120", "--no-embed")
    assert first["holdout"] == 120 and first["cut"] == again["cut"]  # type: ignore[index]
    assert first["status"] == again["status"] and first["weights"] == again["weights"]  # type: ignore[index]
    assert first["late"] == again["late"]  # type: ignore[index]
    lock = CaptureLock(store_dir(repo), LOCK_NAME)
    assert lock.acquire()
    try:
        p = lmm("tune", "--repo", str(repo), "--no-embed", check=False)
    finally:
        lock.release()
    assert p.returncode == 1 and "a tune is already running" in p.stderr


def test_a_fit_that_loses_on_later_commits_is_not_kept(gen: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from lmm_cli.address.recall import CHANNELS, save_weights
    from lmm_cli.model import fusion
    from lmm_cli.workspace import open_workspace

    ws = open_workspace(gen["repo"])
    db = ws.connect()
    try:
        save_weights(db, {c: 1.0 for c in CHANNELS})  # an older fit, which a failed check must not leave behind
        db.commit()
    finally:
        db.close()
    # A tuner gone wrong: it ranks by recency alone.
    monkeypatch.setattr(fusion, "fit", lambda s, qs: ({**{c: 0.0 for c in CHANNELS}, "names": 0.01, "recency": 3.0}, 0.0))
    out = fusion.tune_store(ws, holdout=120, embed=False)
    assert out["status"] == "kept-defaults"
    assert out["late"]["tuned"]["mrr"] < out["late"]["default"]["mrr"]
    assert state(gen["repo"], "fusion_weights") is None
    assert "did not beat them on later commits" in lmm("status", "--repo", str(gen["repo"])).stdout


def test_enough_new_commits_start_a_new_tune_from_the_hooks(gen: dict[str, Any]) -> None:
    repo = gen["repo"]
    store = store_dir(repo)
    (store / "config.toml").write_text("[recall]\nretune_after = 3\n")
    lmm("hooks", "install", "--repo", str(repo))
    before = lmm_json("status", "--repo", str(repo))["fusion"]["last_tune"]  # type: ignore[index]

    def commit(i: int) -> None:
        (repo / "notes").mkdir(exist_ok=True)
        (repo / "notes" / f"n{i}.md").write_text(f"note {i}\n")
        git(repo, "add", "notes")
        git(repo, "commit", "-q", "-m", f"Add note {i}", env=ON)  # the hook's drainer inherits ON

    commit(0)
    commit(1)
    st = wait_for_drain(repo)
    assert st["fusion"]["last_tune"] == before and not st["fusion"]["tuning_now"]  # 2 new commits: not yet
    commit(2)
    after = wait_for_tune(repo, lambda t: t is not None and t["at"] > before["at"])["fusion"]["last_tune"]
    assert after["commits"] == before["commits"] + 3
    assert "tune-started" in (store / "logs" / "drain.log").read_text()


def test_a_short_history_is_not_tuned_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import isolated_env

    env = isolated_env(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    repo = make_repo(tmp_path / "small", commits=12)
    lmm("init", "--repo", str(repo), "--no-hooks", "--no-embed", env={**env, **ON})
    assert state_in(repo, env, "fusion_tuning") is None  # too few commits: no background tune at all
    p = lmm("tune", "--repo", str(repo), "--no-embed", check=False, env=env)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("lmm: not tuned: ")
    assert "history too short to tune" in lmm("status", "--repo", str(repo), env=env).stdout
    assert state_in(repo, env, "fusion_weights") is None


def state_in(repo: Path, env: dict[str, str], key: str) -> Any:
    st = json.loads(lmm("status", "--repo", str(repo), "--json", env=env).stdout)
    db = sqlite3.connect(Path(st["store"]) / "lmm.db")
    try:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row else None
