"""``lmm bench localize`` as a user runs it: lmm beside the baselines in one table, weights fitted
on the repository's own history saved only when there is enough history to fit them, and the
tuner itself on channel scores whose right answer is known."""

from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from lmm_cli.address.recall import DEFAULT_WEIGHTS
from lmm_cli.model.fusion import MIN_TUNE_QUERIES, fit, objective

from conftest import ROOT, commit_file, lmm, make_repo, store_dir


def saved_weights(repo: Path) -> dict[str, float] | None:
    db = sqlite3.connect(store_dir(repo) / "lmm.db")
    try:
        row = db.execute("SELECT value FROM state WHERE key = 'fusion_weights'").fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row else None


def test_bench_puts_lmm_beside_the_baselines_and_saves_weights_tuned_on_the_history(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from genrepo import generate

    repo = generate(tmp_path / "gen", commits=400, seed=5)
    lmm("init", "--repo", str(repo), "--no-hooks", "--no-embed")
    out = lmm("bench", "localize", "--repo", str(repo), "--holdout", "80", "--no-embed",
              "--baselines", "bm25,repomap", "--tune", "--json")
    rep = json.loads(out.stdout)
    names = [r["name"] for r in rep["rows"]]
    assert names == ["lmm", "BM25 contents", "RepoMap PageRank"]
    assert rep["queries"] >= MIN_TUNE_QUERIES and rep["tuned"] and rep["saved_weights"]
    lmm_row, bm25 = rep["rows"][0], rep["rows"][1]
    assert len(lmm_row["first_rank"]) == rep["queries"]
    assert lmm_row["mrr"] > bm25["mrr"] and lmm_row["hit5"] >= bm25["hit5"]
    assert saved_weights(repo) == {k: round(v, 4) for k, v in rep["weights"]["tuned_all"].items()}
    assert "weights fitted to this repository" in lmm("status", "--repo", str(repo)).stdout
    assert [r["name"] for r in rep["split"]["rows"]][:2] == ["lmm, default weights", "lmm, tuned on the early half"]


def test_bench_refuses_to_tune_on_a_handful_of_commits_but_prints_the_table(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "small", commits=3)
    for i in range(6):
        commit_file(repo, f"src/mod{i % 3}.py", f"def f{i % 3}():\n    return {i} * 2\n", f"Double the value in f{i % 3}")
    lmm("init", "--repo", str(repo), "--no-hooks", "--no-embed")
    p = lmm("bench", "localize", "--repo", str(repo), "--holdout", "5", "--no-embed", "--baselines", "bm25",
            "--tune", check=False)
    assert p.returncode == 1
    assert "| lmm |" in p.stdout and "read these figures as anecdotes" in p.stdout
    assert "the defaults are used" in p.stdout
    assert "5 held-out commits as queries" in p.stdout
    err = p.stderr.strip().splitlines()  # progress lines, then the error in one line
    assert err[-1].startswith("lmm: --tune:") and f"at least {MIN_TUNE_QUERIES}" in err[-1]
    assert saved_weights(repo) is None


# --------------------------------------------------------------------------- the tuner


@dataclass
class Q:
    text: str
    gold: set[str]


class Channels:
    """Per query: ``names`` knows the answer, ``lexical`` points at a decoy a little more strongly."""

    def __init__(self, n: int) -> None:
        self.weights = dict(DEFAULT_WEIGHTS)
        self.queries = [Q(f"q{i}", {f"gold{i}.py"}) for i in range(n)]
        self.table = {q.text: {"lexical": {f"decoy{i}.py": 1.0, f"gold{i}.py": 0.2},
                               "names": {f"gold{i}.py": 0.7, f"decoy{i}.py": 0.1}}
                      for i, q in enumerate(self.queries)}

    def channels(self, text: str) -> dict[str, dict[str, float]]:
        return self.table[text]


def test_tuning_moves_weight_to_the_channel_that_knows() -> None:
    s = Channels(40)
    before = objective(s, s.queries, s.weights)
    weights, score = fit(s, s.queries)
    assert before == 0.5 * (0.5 + 1.0)  # the gold file is second everywhere: MRR 0.5, Hit@5 1
    assert score == 1.0 and weights["names"] > weights["lexical"] * 0.8
    assert objective(s, s.queries, weights) == score


def test_tuning_leaves_the_weights_alone_on_too_few_queries() -> None:
    s = Channels(MIN_TUNE_QUERIES - 1)
    weights, _ = fit(s, s.queries)
    assert weights == DEFAULT_WEIGHTS


def test_bench_adapter_fits_the_fusion_at_the_cut_then_measures_the_round_against_it(tmp_path: Path) -> None:
    """`--adapter`: at the cut the replay store first fits its fusion weights as the background does
    after `lmm init`, then trains one adapter round; recall as it would run is the base under those
    weights, or the promoted version at the adapter weight its round fitted, query for query."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from genrepo import generate

    from lmm_cli.model.rounds import DENSE_SCALES

    # seed 3: the fit at the cut keeps weights and a learned ranker, and the round promotes its
    # candidate, so the ranker rows and the promoted branch are the ones exercised here
    repo = generate(tmp_path / "gen", commits=400, seed=3)
    lmm("init", "--repo", str(repo), "--no-hooks", "--no-embed")
    out = lmm("bench", "localize", "--repo", str(repo), "--holdout", "60", "--baselines", "bm25",
              "--adapter", "linear", "--json")
    rep = json.loads(out.stdout)
    ad = rep["adapter"]
    fusion, rnd = ad["fusion"], ad["round"]
    assert fusion["status"] in ("saved", "kept-defaults") and fusion["queries"] >= MIN_TUNE_QUERIES, fusion
    rows = {r["name"]: r for r in ad["rows"]}
    assert all(r["n"] == rep["queries"] for r in ad["rows"])
    if fusion["status"] == "saved":
        base_name = "lmm fused, base encoder, weights fitted at the cut"
        assert "lmm fused, base encoder, default weights" in rows and fusion["weights"] != DEFAULT_WEIGHTS
    else:
        base_name = "lmm fused, base encoder"
        assert fusion["weights"] == DEFAULT_WEIGHTS
    assert base_name in rows  # today's fusion: the fitted weights, linear
    # Where the fit kept a learned ranker, recall as it would run re-orders through it, and so does the round's judge.
    rk = ", learned ranker" if fusion["ranker_active"] else ""
    assert fusion["ranker_active"] == (fusion["ranker"]["status"] == "saved"), fusion
    if rk:
        assert rows[base_name + rk]["first_rank"] != rows[base_name]["first_rank"]
        assert rnd["scores"]["fused"]["ranked_by"].startswith("learned ranker v"), rnd["scores"]["fused"]
    base = rows[base_name + rk]
    (v,) = ad["versions"]
    assert v["form"] == "linear" and v["dense_scale"] in DENSE_SCALES and v["active"] == (rnd["status"] == "promoted")
    (live_name,) = [n for n in rows if n.startswith("lmm as it would run")]
    if rnd["status"] == "promoted":
        scale = v["dense_scale"]
        assert live_name == f"lmm as it would run (linear {v['name']} active, adapter weight ×{scale:g}{rk})"
        same = rows[f"lmm fused + linear adapter {v['name']}, adapter weight ×{scale:g}{rk}"]
    else:
        assert rnd["status"] == "refused" and live_name == f"lmm as it would run (base: none promoted{rk})", rnd
        same = base
    assert rows[live_name]["first_rank"] == same["first_rank"]
    # Each change is measured query by query on the same queries: the adapter's channel against
    # the code chunks under the base encoder, recall with that channel against recall without it,
    # and what the store would run against today's linear fusion. A paired mean gain is the
    # difference of the two rows' figures; its standard error says whether chance could give it.
    changes = {(c["before"], c["after"]): c for c in ad["changes"]}
    scaled = [] if v["dense_scale"] == 1 else [f", adapter weight ×{v['dense_scale']:g}"]
    expected = [("code chunks only, base encoder", f"adapter channel alone, linear {v['name']}"),
                *[(base_name + rk, f"lmm fused + linear adapter {v['name']}{w}{rk}")
                  for w in [", adapter weight ×1", *scaled]],
                (base_name, live_name)]
    assert sorted(changes) == sorted(expected)
    for before, after in expected:
        c, a, b = changes[(before, after)], rows[before], rows[after]
        assert c["queries"] == rep["queries"]
        for key in ("hit5", "mrr", "recall"):
            assert abs(c[key]["gain"] - (b[key] - a[key])) < 1e-9, (before, after, key)
            assert c[key]["se"] >= 0
    # the adapter ranks beside the dense channel, which it leaves as it was
    assert "dense channel, base encoder" in rows and not any(n.startswith("dense channel, linear") for n in rows)
    from types import SimpleNamespace

    from lmm_cli.bench.compare import _adapter_section

    shown = "\n".join(_adapter_section({**ad, "rows": [SimpleNamespace(**r) for r in ad["rows"]]}))
    c = changes[(base_name, live_name)]
    assert (f"| {live_name} vs {base_name} | {rep['queries']} | {100 * c['hit5']['gain']:+.1f} ± "
            f"{100 * c['hit5']['se']:.1f} | {100 * c['mrr']['gain']:+.1f} ± {100 * c['mrr']['se']:.1f} |") in shown
