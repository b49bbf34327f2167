"""Training rounds on a small real repository (a tiny encoder built in the test): a round lowers the
held-out loss and is promoted; the next one continues from it with a replay of older pairs; a
regressing candidate is saved but not promoted; held-out queries are never trained on; a round is
due only when it should be; a store with too little history records why nothing was trained."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from tiny_encoder import adapter_template, copy_template, use_encoder

from conftest import commit_file, lmm, make_repo

np = pytest.importorskip("numpy")
pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return adapter_template(tmp_path_factory.getbasetemp() / "adapter-template")


@pytest.fixture
def ws(template: dict[str, Path], tmp_path: Path) -> Any:
    from lmm_cli.workspace import open_workspace

    return open_workspace(copy_template(template, tmp_path / "repo"))


def _state(ws: Any) -> dict[str, Any]:
    db = ws.connect()
    try:
        return json.loads(db.execute("SELECT value FROM state WHERE key = 'adapters.last_round'").fetchone()[0])
    finally:
        db.close()


def test_a_round_lowers_held_out_loss_and_is_promoted(ws: Any) -> None:
    from lmm_cli.address.dense import stored_encoder
    from lmm_cli.model.adapters import active_version, list_versions, load_query_encoder
    from lmm_cli.model.pairs import is_probe
    from lmm_cli.model.rounds import round_dir, run_round

    said: list[str] = []
    out = run_round(ws, say=said.append)
    assert out["status"] == "promoted", out
    sc = out["scores"]
    assert sc["loss"]["linear"] < sc["loss"]["base"]  # held-out loss of the recent slice falls
    assert sc["recent"]["linear"]["hit5"] >= sc["recent"]["base"]["hit5"]
    assert out["counts"]["recent"] >= 10 and out["counts"]["older"] >= 3
    assert any("training linear" in m for m in said)
    v = active_version(ws.dir)
    assert v is not None and v.name == out["active"] == "v0001" and v.form == "linear" and v.parent is None
    assert v.scores["recent"]["candidate"] == sc["recent"]["linear"] and v.extra["promoted"] is True
    assert [x.name for x in list_versions(ws.dir)] == ["v0001"]
    assert _state(ws)["status"] == "promoted"
    assert not round_dir(ws.dir).exists()  # a finished round leaves no plan behind
    # held-out queries were not trained on: neither the recent slice nor any probe commit
    db = ws.connect()
    try:
        shas = dict(db.execute("SELECT 'ep:' || id, source FROM episodes WHERE kind = 'commit'").fetchall())
        base = stored_encoder(db, ws.config().models.encoder)
    finally:
        db.close()
    assert not any(is_probe(shas[s]) for s in v.seen if s in shas)
    assert v.window["queries"] == len(v.seen) and v.pairs == out["counts"]["train"]["linear"]
    # recall now asks through it
    enc = load_query_encoder(ws.dir, base)
    assert getattr(enc, "adapter_version", None) == "v0001"
    q = enc.encode(["retry the upload when the token expired"])
    assert q.shape == (1, base.dim) and abs(float(np.linalg.norm(q)) - 1) < 1e-5
    assert not np.allclose(q, base.encode(["retry the upload when the token expired"]))


def test_the_next_round_continues_from_the_active_version_with_a_replay(ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmm_cli.model.adapters import list_versions
    from lmm_cli.model.rounds import run_round

    first = run_round(ws)
    assert first["status"] == "promoted"
    for i in range(6):
        commit_file(ws.repo.root, f"src/billing/ledger{i}.py", f"def post_ledger_entry_{i}(amount):\n    return amount\n",
                    f"Post ledger entries for invoice batch {i}")
    lmm("ingest", "--repo", str(ws.repo.root), embed=True)
    second = run_round(ws)
    assert second["status"] in ("promoted", "refused")
    assert second["incumbent"] == "v0001"
    assert second["counts"]["new"]["linear"] > 0 and second["counts"]["replay"]["linear"] > 0
    v1, v2 = list_versions(ws.dir)
    assert v2.parent == "v0001" and set(v1.seen) <= set(v2.seen)  # it knows every pair its weights descend from
    assert v2.scores["recent"]["incumbent"] == second["scores"]["recent"]["incumbent"]
    # The replay sample is drawn from the history, not the clock: planned again on nothing new, a
    # round trains on the same pairs (no drawing replays until a candidate happens to pass).
    from lmm_cli.address.dense import stored_encoder
    from lmm_cli.model import rounds
    from lmm_cli.model.pairs import mine

    db = ws.connect()
    try:
        base = stored_encoder(db, ws.config().models.encoder)
        mined, newest = mine(db, base), rounds._max_episode(db)
    finally:
        db.close()
    plans = []
    for clock in (1_800_000_000.0, 1_800_086_400.0):
        monkeypatch.setattr(rounds.time, "time", lambda c=clock: c)
        plans.append(rounds._make_plan(ws, mined, ["linear"], base.id, newest))
    assert plans[0]["created"] != plans[1]["created"] and plans[0]["replay"]["linear"] > 0
    assert plans[0]["train"] == plans[1]["train"]


def test_a_regressing_candidate_is_saved_but_not_promoted(ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmm_cli import core
    from lmm_cli.model import promote, trainer
    from lmm_cli.model.adapters import active_version, list_versions
    from lmm_cli.model.rounds import run_round

    assert run_round(ws)["status"] == "promoted"
    real = trainer.train_linear

    def inverted(ts: Any, docs: Any, cfg: Any, **kw: Any) -> Any:
        """A hand-made bad candidate: trained as usual, then its map turned around (q' = -q), so it
        ranks every query's files last."""
        res = real(ts, docs, cfg, **kw)
        res.tensors["W"] = -2 * np.eye(docs.shape[1], dtype=np.float32)
        return res

    monkeypatch.setattr(trainer, "train_linear", inverted)
    bad = run_round(ws, foreground=True)
    sc = bad["scores"]["recent"]
    assert promote.score(sc["linear"]) < promote.score(sc["incumbent"])
    assert bad["status"] == "refused" and "worse" in bad["reason"]
    assert active_version(ws.dir).name == "v0001"  # type: ignore[union-attr]
    v2 = list_versions(ws.dir)[-1]
    assert v2.name == "v0002" and not v2.active and v2.extra["promoted"] is False and "worse" in v2.extra["verdict"]
    listed = core.adapters(ws)
    assert listed["active"] == "v0001"
    assert [(v["name"], v["promoted"]) for v in listed["versions"]] == [("v0001", True), ("v0002", False)]


def test_a_round_is_due_only_when_it_should_be(ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmm_cli.model.rounds import round_dir, round_due, run_round

    monkeypatch.setenv("LMM_AUTO_TRAIN", "1")
    cfg = ws.config_path.read_text()
    ws.config_path.write_text(cfg.replace("[train]\n", "[train]\nmin_new_salient = 5\nidle_minutes = 0\n"))
    db = ws.connect()
    try:
        assert round_due(ws, db)  # a first round: enough salient history
        monkeypatch.setenv("LMM_AUTO_TRAIN", "0")
        assert not round_due(ws, db)
        monkeypatch.setenv("LMM_AUTO_TRAIN", "1")
        run_round(ws)
        assert not round_due(ws, db)  # nothing new since
        round_dir(ws.dir).mkdir(parents=True)
        (round_dir(ws.dir) / "plan.json").write_text("{}")
        assert round_due(ws, db)  # a killed round to finish
    finally:
        db.close()


def test_too_little_history_records_why_nothing_was_trained(template: dict[str, Path], tmp_path: Path) -> None:
    from lmm_cli.model.adapters import list_versions
    from lmm_cli.model.rounds import run_round
    from lmm_cli.workspace import open_workspace

    repo = make_repo(tmp_path / "small", commits=5)
    out = json.loads(lmm("init", "--repo", str(repo), "--no-hooks", "--no-embed", "--json").stdout)
    ws = open_workspace(repo)
    assert run_round(ws)["status"] == "no-embeddings"
    use_encoder(Path(out["store"]), template["model"])
    lmm("ingest", "--repo", str(repo), embed=True, env={"LMM_AUTO_EMBED": "0"})
    res = run_round(ws)
    assert res["status"] == "too-short" and "at least" in res["reason"]
    assert list_versions(ws.dir) == [] and _state(ws)["status"] == "too-short"
    assert os.environ.get("LMM_AUTO_TRAIN") == "0"  # the suite never trains in the background


def test_a_capture_starts_a_background_round_when_one_is_due(ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from lmm_cli import core
    from lmm_cli.model.adapters import active_version
    from lmm_cli.model.rounds import training_running

    monkeypatch.setenv("LMM_AUTO_TRAIN", "1")
    ws.config_path.write_text(ws.config_path.read_text().replace("[train]\n", "[train]\nmin_new_salient = 5\n"))
    db = ws.connect()
    try:
        core.after_capture(ws, db, new_commits=0)  # what the hook-woken drainer runs after each capture
    finally:
        db.close()
    deadline = time.monotonic() + 300
    while True:
        db = ws.connect()
        try:
            row = db.execute("SELECT value FROM state WHERE key = 'adapters.last_round'").fetchone()
        finally:
            db.close()
        if row is not None and not training_running(ws.dir):
            break
        assert time.monotonic() < deadline, "no background round finished"
        time.sleep(0.5)
    assert json.loads(row[0])["status"] == "promoted"
    assert active_version(ws.dir) is not None
    log = (ws.dir / "logs" / "train.log").read_text()
    assert " start" in log and "end promoted" in log


def _judge_by_recall(ws: Any) -> None:
    """The store's default: candidates judged by the whole recall too."""
    ws.config_path.write_text(ws.config_path.read_text().replace('judge = "dense"', 'judge = "recall"'))
    assert ws.config().train.judge == "recall"


def test_a_candidate_that_lowers_the_whole_recall_is_refused_even_when_dense_alone_looks_fine(
        ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmm_cli import core
    from lmm_cli.model import promote, rounds, trainer
    from lmm_cli.model.adapters import active_version, list_versions

    _judge_by_recall(ws)
    real_train, real_score = trainer.train_linear, rounds._Scorer.score

    def inverted(ts: Any, docs: Any, cfg: Any, **kw: Any) -> Any:
        res = real_train(ts, docs, cfg, **kw)
        res.tensors["W"] = -2 * np.eye(docs.shape[1], dtype=np.float32)  # q' = -q: every file ranked last
        return res

    def blind(self: Any, adapter: Any) -> Any:
        return real_score(self, None)  # the dense check sees the base model whatever it is shown: a tie

    monkeypatch.setattr(trainer, "train_linear", inverted)
    monkeypatch.setattr(rounds._Scorer, "score", blind)
    out = rounds.run_round(ws, foreground=True)
    fused = out["scores"]["fused"]
    assert out["status"] == "refused", (out["reason"], fused)
    assert out["reason"].startswith("not clearly better in the whole recall on later history"), out["reason"]
    assert fused["gain"] < 0
    assert promote.score(fused["candidate"]) < promote.score(fused["incumbent"]) == promote.score(fused["base"])
    assert fused["candidate"]["n"] >= rounds.FUSED_MIN
    assert active_version(ws.dir) is None  # the base model stays in use
    (v,) = list_versions(ws.dir)
    assert v.extra["promoted"] is False and "whole recall" in v.extra["verdict"] and v.scores["fused"] == fused
    train = lmm("train", "--repo", str(ws.repo.root))  # the CLI shows both tables
    assert "whole recall, as it stood before the recent" in train.stdout
    assert core.adapters(ws)["active"] is None


def test_where_the_dense_channel_carries_recall_the_whole_recall_judge_keeps_a_good_candidate(ws: Any) -> None:
    from lmm_cli.address.recall import CHANNELS, save_weights
    from lmm_cli.model import promote
    from lmm_cli.model.rounds import FUSED_MIN, run_round
    from lmm_cli.store.db import transaction

    _judge_by_recall(ws)
    db = ws.connect()
    try:
        with transaction(db):  # a repository whose fusion leans on the dense channel alone
            save_weights(db, {c: 1.0 if c == "dense" else 0.0 for c in CHANNELS})
    finally:
        db.close()
    out = run_round(ws)
    fused = out["scores"]["fused"]
    assert out["status"] == "promoted", (out["reason"], fused)
    assert "clearly better in the whole recall" in out["reason"] and fused["gain"] >= fused["se"] > 0
    assert promote.score(fused["candidate"]) >= promote.score(fused["base"])
    assert fused["candidate"]["n"] >= FUSED_MIN


def test_where_the_whole_recall_refuses_the_best_dense_form_the_next_one_is_asked(
        ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both forms trained; they tie in the dense check, so linear (listed first) is asked of the whole
    recall first. Where the whole recall finds linear worse and LoRA better, LoRA is asked too, and it
    is the one made active; each version keeps its own verdict and whole-recall figures."""
    from lmm_cli.embed.adapter import LinearAdapter, LoraAdapter
    from lmm_cli.model import rounds
    from lmm_cli.model.adapters import active_version, list_versions

    _judge_by_recall(ws)
    real_score, real_fused = rounds._Scorer.score, rounds._FusedJudge._score

    def blind(self: Any, adapter: Any) -> Any:
        return real_score(self, None)  # the dense check sees the base model whatever it is shown: a tie

    def fused(self: Any, adapter: Any, scale: float) -> Any:  # the whole recall: linear hurts every query, LoRA helps each
        figures, per = real_fused(self, None, scale)
        if isinstance(adapter, LinearAdapter):
            return figures, [0.0 for _ in per]
        if isinstance(adapter, LoraAdapter):
            return figures, [1.0 for _ in per]
        return figures, [0.5 for _ in per]

    monkeypatch.setattr(rounds._Scorer, "score", blind)
    monkeypatch.setattr(rounds._FusedJudge, "_score", fused)
    out = rounds.run_round(ws, forms=["linear", "lora"], foreground=True)
    assert out["status"] == "promoted" and out["best"] == "lora", out["reason"]
    assert out["reason"].startswith("at least as good on later history") and "clearly better in the whole recall" in out["reason"]
    by_form = {v.form: v for v in list_versions(ws.dir)}
    assert by_form["linear"].extra["promoted"] is False and by_form["lora"].extra["promoted"] is True
    assert by_form["linear"].extra["verdict"].startswith("not clearly better in the whole recall")
    assert by_form["linear"].scores["fused"]["gain"] == -0.5 and by_form["lora"].scores["fused"]["gain"] == 0.5
    active = active_version(ws.dir)
    assert active is not None and active.form == "lora"


def test_the_whole_recall_judge_ranks_as_recall_runs_through_the_stores_learned_ranker(
        template: dict[str, Path], tmp_path: Path) -> None:
    """Where the fusion fit kept a learned ranker, recall re-orders its top files through it, so the
    round's whole-recall judge must too: two copies of one store, one with a ranker gone wrong."""
    import lightgbm as lgb

    from lmm_cli.address.rerank import FEATURES
    from lmm_cli.model import promote, ranker
    from lmm_cli.model.rounds import FUSED_MIN, run_round
    from lmm_cli.workspace import open_workspace

    plain = open_workspace(copy_template(template, tmp_path / "plain"))
    ranked = open_workspace(copy_template(template, tmp_path / "ranked"))
    for w in (plain, ranked):
        _judge_by_recall(w)
    # A ranker gone wrong: it puts the linear fusion's deeper candidates first.
    rng = np.random.default_rng(0)
    X = rng.random((400, len(FEATURES)))
    y = (X[:, FEATURES.index("fused_rr")] < 0.2).astype(float)
    booster = lgb.train({"objective": "lambdarank", "num_leaves": 3, "min_data_in_leaf": 5, "verbose": -1,
                         "num_threads": 1, "seed": 0}, lgb.Dataset(X, y, group=[20] * 20), num_boost_round=10)
    ranker.save(ranked.dir, ranker.Fitted(booster.model_to_string(), booster.num_trees(), 20, 400, 0.0), {"embed": True})
    a = run_round(plain, foreground=True)["scores"]["fused"]
    b = run_round(ranked, foreground=True)["scores"]["fused"]
    assert a["ranked_by"] == "linear fusion" and b["ranked_by"] == "learned ranker v0001", (a, b)
    assert a["as_of"] == b["as_of"] and b["base"]["n"] == a["base"]["n"] >= FUSED_MIN
    assert promote.score(b["base"]) < promote.score(a["base"])  # the same base encoder, judged through the ranker
    train = lmm("train", "--repo", str(ranked.repo.root)).stdout  # the user is told what the judge ranked by
    assert "re-ordered by its learned ranker v0001" in train, train


def test_the_whole_recall_judge_wants_a_gain_chance_would_not_give() -> None:
    """The werkzeug case (stop 14): a candidate that moves a few queries up and a few down, +0.004 a
    query on 150, lost on the commits after it. A tie, a wash or a loss keeps the version in use; a
    gain many queries share is taken."""
    from lmm_cli.model.promote import clear_gain, per_query

    firsts = [1, 3, 0, 2, 7, 1, 0, 4, 12, 1] * 15  # 150 queries: the rank of each one's first right file
    inc = [per_query(f) for f in firsts]
    assert clear_gain(inc, list(inc), "in the whole recall").promote is False  # a tie
    wash = list(inc)
    for i, f in ((1, 1), (3, 1), (7, 2), (11, 1), (0, 2), (5, 4), (13, 3)):  # four up, three down
        wash[i] = per_query(f)
    v = clear_gain(inc, wash, "in the whole recall")
    assert 0 < sum(wash) - sum(inc) and v.promote is False, v.reason
    assert v.reason.startswith("not clearly better in the whole recall (+0.00") and "per query over 150" in v.reason
    clear = [per_query(1) if f in (2, 3) else per_query(f) for f in firsts]  # 30 queries up, none down
    v = clear_gain(inc, clear, "in the whole recall")
    assert v.promote is True and v.reason.startswith("clearly better in the whole recall (+0.0")
    assert clear_gain(clear, inc, "in the whole recall").promote is False  # the same, backwards: a loss


def test_the_active_versions_adapter_weight_is_the_one_recall_fuses_with(ws: Any) -> None:
    """A version's round fits how much its channel is worth in the fusion (``dense_scale``, a
    multiple of the dense weight); while it is active, recall weighs the adapter's channel by it,
    so the order of files changes, and the dense channel keeps the store's weight. Rollback to the
    base leaves no adapter channel, and a damaged value counts as 1."""
    from lmm_cli import core
    from lmm_cli.address.dense import stored_encoder
    from lmm_cli.address.recall import ADAPTED, Recaller, load_weights
    from lmm_cli.model import adapters as A
    from lmm_cli.model.trainer import TrainResult

    db = ws.connect()
    try:
        base = stored_encoder(db, ws.config().models.encoder)
        assert base is not None
        W = np.zeros((base.dim, base.dim), np.float32)
        meta = {"base_model": base.id, "config": {"form": "linear"}}
        scaled = A.save_version(ws.dir, TrainResult(form="linear", tensors={"W": W}), {**meta, "dense_scale": 3.0})
        damaged = A.save_version(ws.dir, TrainResult(form="linear", tensors={"W": W}), {**meta, "dense_scale": "nan"})
        stored = load_weights(db)
        a, b = sorted(r[0] for r in db.execute("SELECT path FROM code_files LIMIT 2"))
        # a by its words, b by the adapter: b's adapter score is worth half of a's lexical one at
        # the store's dense weight, and one and a half times it at three times that
        ch = {"lexical": {a: 1.0}, ADAPTED: {b: stored["lexical"] / (2 * stored["dense"])}}

        def first() -> tuple[str, float, float]:
            rec = Recaller(db, ws.repo.root, encoder=core.query_encoder(ws, base), ranker=None)
            w = rec.fusion_weights
            return rec.order(ch)[0][0][0], w[ADAPTED], w["dense"]

        assert first() == (a, stored["dense"], stored["dense"])  # no adapter: its channel is empty in recall
        A.activate(ws.dir, scaled.name)
        assert first() == (b, 3.0 * stored["dense"], stored["dense"])
        listed = {v["name"]: v for v in json.loads(lmm("adapters", "--repo", str(ws.repo.root), "--json").stdout)["versions"]}
        assert listed[scaled.name]["dense_scale"] == 3.0 and listed[damaged.name]["dense_scale"] == 1.0
        A.activate(ws.dir, damaged.name)
        assert first() == (a, stored["dense"], stored["dense"])
        lmm("adapters", "rollback", "base", "--repo", str(ws.repo.root))
        assert first() == (a, stored["dense"], stored["dense"])
    finally:
        db.close()


def test_an_active_adapter_ranks_beside_the_dense_channel_and_recall_says_so(ws: Any) -> None:
    """The adapter's channel is code met by the adapted task vector; the dense channel (code and
    past commits met by the base vector) is what it was without the adapter. A file the adapter
    leads the task to is found, and the brief says the adapter found it."""
    from lmm_cli import core
    from lmm_cli.address.dense import stored_encoder
    from lmm_cli.address.recall import ADAPTED, Recaller
    from lmm_cli.model import adapters as A
    from lmm_cli.model.pairs import _chunk_docs
    from lmm_cli.model.trainer import TrainResult

    db = ws.connect()
    try:
        base = stored_encoder(db, ws.config().models.encoder)
        assert base is not None
        docs, paths = _chunk_docs(db, base.id)
        task = "rename the helper that formats dates"
        q = base.encode([task])[0]
        # q + qW = (q·u) v: every task whose vector leans on u is led to the chunk v (the least
        # like this task under the base model), so the adapter's channel ranks its file first.
        far = int(np.argmin(docs @ q))
        u, v = q / np.linalg.norm(q), docs[far]
        W = (np.outer(u, v) - np.eye(base.dim)).astype(np.float32)
        version = A.save_version(ws.dir, TrainResult(form="linear", tensors={"W": W}),
                                 {"base_model": base.id, "config": {"form": "linear"}, "dense_scale": 3.0})
        plain = Recaller(db, ws.repo.root, encoder=base, ranker=None)
        before, _ = plain.channel_scores(task)
        assert ADAPTED not in before
        A.activate(ws.dir, version.name)
        rec = Recaller(db, ws.repo.root, encoder=core.query_encoder(ws, base), ranker=None)
        after, _ = rec.channel_scores(task)
        assert after["dense"] == before["dense"]  # the base model's channel, untouched
        # the round's judge asks again with the other channels of the base model's call: the same
        again, _ = rec.channel_scores(task, reuse=before)
        assert again == after
        led = max(after[ADAPTED], key=lambda p: after[ADAPTED][p])
        assert led == paths[far] and after[ADAPTED][led] == 1.0
        found = {f.path: f for f in rec.recall(task).files}
        assert led in found and found[led].channels.get(ADAPTED, 0) > 0
        assert any(w.startswith("this repository's adapter leads the task here") for w in found[led].why), found[led].why
        # the brief gives a reason that names evidence where there is one, the adapter's where not
        from lmm_cli.brief.recall_brief import recall_brief

        line = next(ln for ln in recall_brief(db, ws.repo.root, rec.recall(task))[0].splitlines() if f"`{led}` — " in ln)
        other = [w for w in found[led].why if not w.startswith("this repository's adapter")]
        assert (other[0] if other else "this repository's adapter leads the task here") in line, (line, found[led].why)
    finally:
        db.close()


class _StubJudge:
    """A whole-recall judge whose per-query scores are given for each (adapter, dense scale)."""

    def __init__(self, table: dict[tuple[Any, float], list[float]]) -> None:
        from lmm_cli.model import rounds

        self.table = table
        self.idx = list(range(len(next(iter(table.values())))))
        self.as_of = 0.0
        self.usable = True
        self.ranked_by = "linear fusion"
        self._real = rounds._FusedJudge
        self._scored: dict[Any, Any] = {}

    def score(self, adapter: Any, scale: float = 1.0) -> tuple[dict[str, float], list[float]]:
        # a scale the table does not name scores as ×1; the base model as the version in use does
        per = self.table.get((adapter, scale)) or self.table.get((adapter, 1.0)) or self.table[("inc", 1.0)]
        return {"mrr": sum(per) / len(per), "hit5": sum(per) / len(per), "n": len(per)}, list(per)

    def _best_scale(self, adapter: Any, rows: Any) -> float:
        return self._real._best_scale(self, adapter, rows)  # type: ignore[arg-type]

    def cross_fit(self, adapter: Any) -> Any:
        return self._real.cross_fit(self, adapter)  # type: ignore[arg-type]


def test_the_dense_weight_a_candidate_is_judged_at_was_fitted_on_other_queries() -> None:
    """The judge fits each candidate's dense weight on half the recent queries and scores the other
    half with it, and the other way round: a weight that only fits the queries it was chosen on
    (here even queries want ×3, odd ones ×0.5) gains nothing and is refused; a weight every query
    agrees on is taken, recorded, and named in the verdict. The candidate must clearly beat the
    version in use both as that runs now and where that is given a weight fitted the same way (else
    the gain is the weight's, not the adapter's)."""
    from lmm_cli.model import promote, rounds

    dense_ok = promote.Verdict(True, "at least as good on later history")
    n = 40
    even = [i % 2 == 0 for i in range(n)]
    inc = [0.5] * n
    overfit = {("inc", 1.0): inc, ("cand", 1.0): [0.5] * n,
               ("cand", 3.0): [1.0 if e else 0.0 for e in even], ("cand", 0.5): [0.0 if e else 1.0 for e in even]}
    v, figures, scale = rounds._judge_fused(_StubJudge(overfit), "inc", "cand", dense_ok)  # type: ignore[arg-type]
    # in sample ×3 or ×0.5 gains +0.5 on its half; each half's weight lands on the other half: −0.5
    assert v.promote is False and figures["gain"] < 0, (v.reason, figures)
    agreed = {("inc", 1.0): inc, ("cand", 1.0): [0.5] * n, ("cand", 3.0): [0.75] * n}
    v, figures, scale = rounds._judge_fused(_StubJudge(agreed), "inc", "cand", dense_ok)  # type: ignore[arg-type]
    assert v.promote is True and scale == 3.0 and figures["dense_scale"] == 3.0, (v.reason, figures)
    assert "at adapter weight ×3" in v.reason and figures["gain"] == 0.25 and figures["adapter_gain"] == 0.25
    # The version in use runs at ×2 (its own round's weight): 0.9 a query. A candidate at 0.85 is
    # not better than that, though it beats the version in use re-fitted on halves (0.75).
    running = {("inc", 1.0): inc, ("inc", 2.0): [1.0 if e else 0.8 for e in even],
               ("inc", 1.5): [0.7 if e else 1.0 for e in even], ("cand", 1.0): [0.5] * n, ("cand", 3.0): [0.85] * n}
    v, figures, _ = rounds._judge_fused(_StubJudge(running), "inc", "cand", dense_ok,  # type: ignore[arg-type]
                                        incumbent_scale=2.0)
    assert figures["adapter_gain"] >= figures["adapter_se"] > 0 and figures["incumbent_fitted_scale"] == 2.0
    assert v.promote is False and figures["gain"] < 0, (v.reason, figures)
    # The version in use runs at ×1 (0.5) but would score 0.8 at ×3; the candidate at ×3 scores 0.7:
    # clearly better than what runs, only for the weight: refused.
    weight_only = {("inc", 1.0): inc, ("inc", 3.0): [0.8] * n, ("cand", 1.0): [0.5] * n, ("cand", 3.0): [0.7] * n}
    v, figures, _ = rounds._judge_fused(_StubJudge(weight_only), "inc", "cand", dense_ok)  # type: ignore[arg-type]
    assert figures["gain"] >= figures["se"] and figures["adapter_gain"] < 0, figures
    assert v.promote is False and v.reason.startswith("better in the whole recall only for its weight"), v.reason
    # The same, where the adapter's own part is a little above the re-fitted version in use, within
    # what chance gives: nothing shows the gain is the adapter's, so it is refused as well.
    within = {("inc", 1.0): inc, ("inc", 3.0): [0.75 if e else 0.65 for e in even],
              ("cand", 1.0): [0.5] * n, ("cand", 3.0): [0.62 if e else 0.8 for e in even]}
    v, figures, _ = rounds._judge_fused(_StubJudge(within), "inc", "cand", dense_ok)  # type: ignore[arg-type]
    assert figures["gain"] >= figures["se"] and 0 < figures["adapter_gain"] < figures["adapter_se"], figures
    assert v.promote is False and v.reason.startswith("better in the whole recall only for its weight"), v.reason


def test_the_base_model_puts_aside_a_version_in_use_only_when_clearly_better() -> None:
    """The base model challenges what would be in use after a round: by twice the promotion margin
    (a version that earned its place is not dropped for a few queries up and a few down), with the
    version in use at its own dense weight and a candidate at the weight fitted on other queries."""
    from lmm_cli.model import rounds

    n = 40
    even = [i % 2 == 0 for i in range(n)]
    # the base ahead by 0.06 a query, ± 0.04: more than one standard error, less than two
    near = {(None, 1.0): [0.8 if e else 0.5 for e in even], ("inc", 2.0): [0.5 if e else 0.68 for e in even]}
    v, figures = rounds._back_to_base(_StubJudge(near), "inc", 2.0)  # type: ignore[arg-type]
    assert figures["se"] < figures["gain"] < rounds.BACK_TO_BASE_SE * figures["se"], figures
    assert v.promote is False
    clear = {(None, 1.0): [0.8 if e else 0.5 for e in even], ("inc", 2.0): [0.5 if e else 0.45 for e in even]}
    v, figures = rounds._back_to_base(_StubJudge(clear), "inc", 2.0)  # type: ignore[arg-type]
    assert figures["gain"] > rounds.BACK_TO_BASE_SE * figures["se"] and v.promote is True, figures
    assert figures["in_use"]["mrr"] == pytest.approx(0.475) and figures["base"]["mrr"] == pytest.approx(0.65)
    # a candidate: scored at the weight each half of the queries fitted for the other, here ×3 for
    # both, where it is level with the base; at ×1 it would look clearly worse
    cand = {(None, 1.0): [0.7] * n, ("cand", 1.0): [0.3] * n, ("cand", 3.0): [0.7] * n}
    v, figures = rounds._back_to_base(_StubJudge(cand), "cand", None)  # type: ignore[arg-type]
    assert v.promote is False and figures["gain"] == 0 and figures["in_use"]["mrr"] == pytest.approx(0.7), figures


def test_a_round_puts_aside_a_version_in_use_that_the_whole_recall_does_clearly_worse_with(
        ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A version in use that has stopped paying (here one that sends every task to the same file) is asked
    against the base model in each round; the base, level in the dense check and clearly better in
    the whole recall, becomes active again; `lmm adapters` and `lmm status` say so, and rollback
    restores it. A base model worse on the older slice does not come back."""
    from lmm_cli import core
    from lmm_cli.address.dense import stored_encoder
    from lmm_cli.model import adapters as A
    from lmm_cli.model import rounds, trainer
    from lmm_cli.model.pairs import mine
    from lmm_cli.model.rounds import run_round
    from lmm_cli.model.trainer import TrainResult

    _judge_by_recall(ws)
    db = ws.connect()
    try:
        base = stored_encoder(db, ws.config().models.encoder)
        assert base is not None
        m = mine(db, base)
    finally:
        db.close()
    # A version that sends every task to one chunk: q + qW = (q·u) v, with u the tasks' mean
    # direction (q·u > 0 for each) and v that chunk's vector; at ten times the store's dense
    # weight, as its round had fitted it, that chunk's file comes first whatever is asked.
    u, v = m.q.mean(axis=0), m.docs[0]
    assert (m.q @ u > 0).all()
    still = (np.outer(u, v) - np.eye(base.dim)).astype(np.float32)
    bad = A.save_version(ws.dir, TrainResult(form="linear", tensors={"W": still}),
                         {"base_model": base.id, "config": {"form": "linear"}, "promoted": True, "seen": [],
                          "dense_scale": 10.0})
    A.activate(ws.dir, bad.name)
    real = trainer.train_linear

    def stuck(ts: Any, docs: Any, cfg: Any, **kw: Any) -> Any:
        """A round that learns nothing: its candidate is the version in use again."""
        res = real(ts, docs, cfg, **kw)
        res.tensors["W"] = still.copy()
        return res

    real_score = rounds._Scorer.score

    def blind(self: Any, adapter: Any) -> Any:
        return real_score(self, None)  # the dense check sees the base model whatever it is shown: a tie

    monkeypatch.setattr(trainer, "train_linear", stuck)
    monkeypatch.setattr(rounds._Scorer, "score", blind)
    # `lmm train` itself, in this process so the stand-ins above hold: what the user is told.
    from typer.testing import CliRunner

    from lmm_cli.cli import app

    shown = CliRunner().invoke(app, ["train", "--repo", str(ws.repo.root)])
    assert shown.exit_code == 0, shown.output
    out = core.adapters(ws)["last_round"]
    back = out["scores"].get("back_to_base")
    assert back, (out["reason"], out["scores"].get("fused"))
    assert out["status"] == "refused" and out["back_to_base"] == bad.name, (out["reason"], back)
    assert out["active"] is None and A.active_version(ws.dir) is None
    assert back["gain"] >= 2 * back["se"] > 0 and back["base"]["hit5"] > back["in_use"]["hit5"], back
    assert f"back to the base model, {bad.name} put aside" in shown.stderr, shown.stderr
    assert (f"base model {back['base']['hit5']:.3f} Hit@5 / {back['base']['mrr']:.3f} MRR against {bad.name} in use "
            f"{back['in_use']['hit5']:.3f} / {back['in_use']['mrr']:.3f}, in the whole recall") in shown.stdout, shown.stdout
    assert (f"the candidate is {out['reason']}; back to the base model ({bad.name} put aside, `lmm adapters rollback` "
            f"restores it): {back['reason']}") in shown.stdout, shown.stdout
    listed = lmm("adapters", "--repo", str(ws.repo.root)).stdout
    assert f"active: the base model (no adapter); the last round put {bad.name} aside: the base model is clearly" \
        in listed, listed
    assert json.loads(lmm("adapters", "--repo", str(ws.repo.root), "--json").stdout)["last_round"]["back_to_base"] \
        == bad.name
    assert f"back to the base model from {bad.name}" in lmm("status", "--repo", str(ws.repo.root)).stdout
    assert core.adapters_rollback(ws)["active"] == bad.name  # nothing lost: it comes back on request
    # Going back must not forget either: where the base model is worse on the older slice than the
    # version in use, the version stays, however the whole recall on recent history compares.

    def forgetful(self: Any, adapter: Any) -> Any:
        got = real_score(self, None)
        if adapter is None:
            got = rounds._Scored(got.recent, {k: v / 2 for k, v in (got.older or {}).items()}, got.loss)
        return got

    monkeypatch.setattr(rounds._Scorer, "score", forgetful)
    again = run_round(ws, foreground=True)  # the version in use is not what the last round left: a round
    assert again["status"] == "refused" and "back_to_base" not in again, again["reason"]
    assert A.active_version(ws.dir).name == bad.name  # type: ignore[union-attr]
