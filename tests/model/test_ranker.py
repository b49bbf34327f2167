"""The ranker learns too: a LightGBM lambdarank model over the channels' features, fitted on the
replay that fits the fusion weights, kept only where it beats the linear fusion on later commits,
used by recall when saved — and never in the way when it is missing, unreadable or lost."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, lmm, lmm_json, module_environment

HOLDOUT = 200


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A generated 400-commit history, initialised, and one fit (weights and ranker) run on it."""
    from lmm_cli.model import fusion
    from lmm_cli.model.replay import held_out
    from lmm_cli.workspace import open_workspace

    base = tmp_path_factory.mktemp("ranker")
    with module_environment(base):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from genrepo import generate

        repo = generate(base / "gen", commits=400, seed=5)
        lmm("init", "--repo", str(repo), "--no-hooks", "--no-embed")
        ws = open_workspace(repo)
        outcome = fusion.tune_store(ws, holdout=HOLDOUT, embed=False)
        texts = [q.text for q in held_out(repo, HOLDOUT)[1]]
        yield {"repo": repo, "ws": ws, "outcome": outcome, "texts": texts}


@pytest.fixture(autouse=True)
def isolated() -> None:  # the module fixture owns the environment
    return None


def state(ws: Any, key: str) -> Any:
    db = sqlite3.connect(ws.dir / "lmm.db")
    try:
        row = db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row else None


def rankings(ws: Any, texts: list[str], **kw: Any) -> tuple[list[list[str]], Any]:
    from lmm_cli.address.recall import Recaller

    db = ws.connect()
    try:
        r = Recaller(db, ws.repo.root, **kw)
        return [r.rank_files(t) for t in texts], r.learned_ranker()
    finally:
        db.close()


def recall_json(repo: Path, query: str) -> dict[str, Any]:
    out = lmm_json("recall", "--repo", str(repo), "--fast", query)
    assert isinstance(out, dict)
    return out


def test_the_forest_gives_what_lightgbm_gives() -> None:
    import lightgbm as lgb
    import numpy as np

    from lmm_cli.address.rerank import Forest

    rng = np.random.default_rng(3)
    X = rng.random((600, 5))
    X[:, 3] = X[:, 3] > 0.7
    X[rng.random(600) < 0.1, 4] = np.nan  # a feature with missing values: NaN-aware splits
    y = ((X[:, 0] + X[:, 1] > 1.1) | (X[:, 3] > 0)).astype(float)
    booster = lgb.train({"objective": "lambdarank", "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1,
                         "num_threads": 1, "seed": 0}, lgb.Dataset(X, y, group=[60] * 10), num_boost_round=20)
    T = rng.random((300, 5))
    T[rng.random(300) < 0.2, 4] = np.nan
    T[:5] = X[:5]  # values exactly on thresholds come from the training data
    forest = Forest.from_text(booster.model_to_string())
    assert np.allclose(forest.predict(T), booster.predict(T), rtol=0, atol=1e-12)


def test_the_fit_keeps_a_ranker_that_beats_the_linear_fusion_on_later_commits(gen: dict[str, Any]) -> None:
    from lmm_cli.address.rerank import FEATURE_VERSION, FEATURES
    from lmm_cli.model.promote import score

    ws, out = gen["ws"], gen["outcome"]
    rk = out["ranker"]
    assert rk["status"] == "saved" and rk["version"] == "v0001", rk
    late = rk["late"]
    assert late["queries"] >= 30 and score(late["ranker"]) >= score(late["linear"])
    recorded = state(ws, "ranker_tuning")
    assert recorded["status"] == "saved" and recorded["late"] == late and recorded["embed"] is False
    folder = ws.dir / "ranker"
    assert (folder / "ACTIVE").read_text().strip() == "v0001"
    meta = json.loads((folder / "v0001" / "meta.json").read_text())
    assert meta["features"] == list(FEATURES) and meta["feature_version"] == FEATURE_VERSION
    assert meta["late"] == late and meta["embed"] is False and meta["trees"] > 0
    assert (folder / "v0001" / "model.txt").read_text().startswith("tree\n")
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
    text = lmm("status", "--repo", str(gen["repo"])).stdout
    line = next(ln for ln in text.splitlines() if ln.startswith("ranker "))
    assert "learned ranker v0001" in line and f"Hit@5 {late['linear']['hit5']:.3f} → {late['ranker']['hit5']:.3f}" in line


def test_recall_uses_the_saved_ranker_and_says_so(gen: dict[str, Any]) -> None:
    import lightgbm as lgb
    import numpy as np

    from lmm_cli.address.recall import Recaller
    from lmm_cli.address.rerank import feature_rows, file_stats, load_ranker

    ws, texts = gen["ws"], gen["texts"][-40:]
    linear, none = rankings(ws, texts, ranker=None)
    learned, used = rankings(ws, texts)
    assert none is None and used is not None and used.label == "learned ranker v0001"
    assert sum(a != b for a, b in zip(linear, learned)) >= 5  # it re-orders, not just re-scores

    out = recall_json(gen["repo"], texts[-1])
    assert out["ranked_by"] == "learned ranker v0001"
    assert out["files"] and all(f["why"] and f["channels"] for f in out["files"])  # reasons still name channels

    # Saved and loaded, the trees score exactly as LightGBM's own model does.
    loaded = load_ranker(ws.dir)
    assert loaded is not None
    booster = lgb.Booster(model_str=(ws.dir / "ranker" / "v0001" / "model.txt").read_text())
    db = ws.connect()
    try:
        r = Recaller(db, ws.repo.root, ranker=None)
        ch, _ = r.channel_scores(texts[0])
        X = np.array(feature_rows(r.order(ch)[0][:100], ch, file_stats(db, r.current_path)))
    finally:
        db.close()
    assert np.allclose(loaded.forest.predict(X), booster.predict(X), rtol=0, atol=1e-12)


def test_a_recall_as_of_a_past_time_gives_the_ranker_the_file_history_of_that_time(gen: dict[str, Any]) -> None:
    """The round's judge asks recall as it stood before its recent commits: the learned ranker's
    history features (commit counts, recency, age) must not count those commits either."""
    from lmm_cli.address.recall import Recaller
    from lmm_cli.address.rerank import file_stats

    ws = gen["ws"]
    db = ws.connect()
    try:
        ts = sorted(t for (t,) in db.execute("SELECT ts FROM episodes WHERE kind = 'commit'"))
        as_of = ts[len(ts) // 2]
        now, then = file_stats(db, Recaller(db, ws.repo.root).current_path), None
        past = Recaller(db, ws.repo.root, as_of=as_of)
        ch, _ = past.channel_scores(gen["texts"][0])
        past.order(ch)  # recall as of then computes its ranker's statistics as of then
        then = past._stats
    finally:
        db.close()
    assert then is not None and then.newest < as_of <= now.newest
    assert sum(then.commits.values()) < sum(now.commits.values())
    assert all(then.commits.get(p, 0) <= n for p, n in now.commits.items())


def test_lightgbm_is_not_imported_to_recall_or_for_help(gen: dict[str, Any]) -> None:
    code = ("import sys; from pathlib import Path; from lmm_cli import core; from lmm_cli.workspace import open_workspace;"
            "out = core.recall(open_workspace(Path(sys.argv[1])), sys.argv[2], budget=400, fast=True);"
            "print(out['ranked_by'], 'lightgbm' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code, str(gen["repo"]), gen["texts"][-1]], capture_output=True,
                       text=True, env=os.environ.copy(), cwd=ROOT, check=True)
    assert p.stdout.split() == ["learned", "ranker", "v0001", "False"]
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "lmm_cli", "--help"], capture_output=True, text=True,
                       env=os.environ.copy(), cwd=ROOT, check=True)
    assert "lightgbm" not in p.stderr and "rerank" not in p.stderr


@pytest.mark.parametrize("damage", ["model", "meta", "version", "active"])
def test_an_unreadable_ranker_falls_back_to_the_linear_fusion(gen: dict[str, Any], damage: str) -> None:
    ws, texts = gen["ws"], gen["texts"][-12:]
    folder = ws.dir / "ranker"
    files = {p: p.read_bytes() for p in [folder / "ACTIVE", folder / "v0001" / "model.txt", folder / "v0001" / "meta.json"]}
    try:
        if damage == "model":
            (folder / "v0001" / "model.txt").write_text("tree\nversion=v4\nTree=0\nnum_leaves=3\nsplit_feature=9999\n")
        elif damage == "meta":
            (folder / "v0001" / "meta.json").write_text("{not json")
        elif damage == "version":  # fitted on other features: an older or newer lmm
            meta = json.loads(files[folder / "v0001" / "meta.json"])
            (folder / "v0001" / "meta.json").write_text(json.dumps({**meta, "feature_version": 999}))
        else:
            (folder / "ACTIVE").write_text("v0042\n")
        linear, _ = rankings(ws, texts, ranker=None)
        got, used = rankings(ws, texts)
        assert used is None and got == linear
        out = recall_json(gen["repo"], texts[-1])
        assert out["ranked_by"] == "fusion" and [f["path"] for f in out["files"]] == linear[-1]
        assert not any(ln.startswith("ranker ") for ln in lmm("status", "--repo", str(gen["repo"])).stdout.splitlines())
    finally:
        for p, data in files.items():
            p.write_bytes(data)
    assert rankings(ws, texts[:1])[1] is not None


def test_a_ranker_that_loses_on_later_commits_is_not_kept(gen: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from lmm_cli.address.rerank import load_ranker
    from lmm_cli.model import fusion, ranker
    from lmm_cli.model.promote import score

    ws = gen["ws"]
    assert load_ranker(ws.dir) is not None  # the ranker kept before, which a lost fit must not leave behind
    real = ranker.training_set

    def inverted(system: Any, queries: Any, weights: Any) -> Any:  # a fit taught the opposite of the answers
        X, y, groups = real(system, queries, weights)
        return X, 1.0 - y, groups

    monkeypatch.setattr(ranker, "training_set", inverted)
    monkeypatch.setattr(fusion, "fit", lambda s, qs: (dict(s.weights), 0.0))  # the weights' fit is not under test
    out = fusion.tune_store(ws, holdout=HOLDOUT, embed=False)
    rk = out["ranker"]
    assert rk["status"] == "kept-linear"
    assert score(rk["late"]["ranker"]) < score(rk["late"]["linear"])
    assert state(ws, "ranker_tuning")["status"] == "kept-linear"
    assert (ws.dir / "ranker" / "ACTIVE").read_text().strip() == "none"
    assert load_ranker(ws.dir) is None
    out = recall_json(gen["repo"], gen["texts"][-1])
    assert out["ranked_by"] == "fusion"
    assert not any(ln.startswith("ranker ") for ln in lmm("status", "--repo", str(gen["repo"])).stdout.splitlines())
