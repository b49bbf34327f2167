"""Training pairs mined from a real store: commits point at the files they changed (through renames),
notes at the files they name, session prompts at the files edited, useful recalls at their files;
churn and secret files are never targets; weights follow salience; the probe bucket is stable."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from tiny_encoder import adapter_template, copy_template

from conftest import commit_file, git, lmm, lmm_json

np = pytest.importorskip("numpy")
pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture
def repo(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    template = adapter_template(tmp_path_factory.getbasetemp() / "adapter-template")
    return copy_template(template, tmp_path / "repo")


def _mine(repo: Path, **kw: Any) -> Any:
    from lmm_cli.address.dense import stored_encoder
    from lmm_cli.model.pairs import mine
    from lmm_cli.workspace import open_workspace

    ws = open_workspace(repo)
    db = ws.connect()
    try:
        base = stored_encoder(db, ws.config().models.encoder)
        assert base is not None
        return mine(db, base, **kw), ws
    finally:
        db.close()


def test_commit_pairs_point_at_the_best_chunk_of_each_changed_file(repo: Path) -> None:
    m, ws = _mine(repo)
    commits = [e for e in m.examples if e.kind == "commit"]
    assert len(commits) >= 80
    assert [e.ts for e in m.examples] == sorted((e.ts for e in m.examples), reverse=True)  # newest first
    db = ws.connect()
    try:
        current = {r[0] for r in db.execute("SELECT path FROM code_files")}
        for e in commits[:40]:
            eid = e.episode_id
            assert e.source == f"ep:{eid}"
            sha = db.execute("SELECT source FROM episodes WHERE id = ?", (eid,)).fetchone()[0]
            assert e.key == sha and e.text
            touched = {r[0] for r in db.execute("SELECT path FROM episode_files WHERE episode_id = ?", (eid,))}
            for path, row in zip(e.gold, e.targets):
                assert path in current
                assert m.doc_paths[row] == path
                # the target is the file's chunk nearest to the query under the base model
                rows = [i for i, p in enumerate(m.doc_paths) if p == path]
                assert row == rows[int(np.argmax(m.docs[rows] @ m.q[m.index()[e.source]]))]
            assert set(e.gold) <= current
            renamed = set(e.gold) - touched  # only through a later rename
            for p in renamed:
                assert db.execute("SELECT 1 FROM episode_files WHERE status = 'R' AND path = ?", (p,)).fetchone()
    finally:
        db.close()
    assert m.pairs() == sum(len(e.targets) for e in m.examples)
    capped, _ = _mine(repo, limit=50)
    assert capped.pairs() <= 50 and capped.examples[0].source == m.examples[0].source


def test_churn_and_secret_files_are_never_targets(repo: Path) -> None:
    for i in range(14):  # a changelog touched by every commit of a release train
        (repo / "CHANGELOG.md").write_text("".join(f"- change {j}\n" for j in range(i + 1)))
        git(repo, "add", "CHANGELOG.md")
        commit_file(repo, f"src/release{i}.py", f"def release_{i}():\n    return {i}\n", f"Release step {i} of the train")
    (repo / "config").mkdir(exist_ok=True)
    (repo / "config" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")
    git(repo, "add", "-f", "config/id_rsa")
    commit_file(repo, "src/gateway.py", "def pay():\n    return 1\n", "Add the key for the payment gateway")
    lmm("ingest", "--repo", str(repo), embed=True)
    m, _ = _mine(repo)
    gold = {p for e in m.examples for p in e.gold}
    assert "CHANGELOG.md" not in gold and "config/id_rsa" not in gold
    assert [e.gold for e in m.examples if e.text.startswith("Add the key")] == [["src/gateway.py"]]
    release = [e for e in m.examples if e.text.startswith("Release step")]
    assert len(release) == 14 and all(e.gold == [f"src/release{e.text.split()[2]}.py"] for e in release)


def test_notes_sessions_and_useful_recalls_become_pairs(repo: Path) -> None:
    from lmm_cli import core
    from lmm_cli.store.db import transaction
    from lmm_cli.store.episodes import Episode, FileChange, insert_episode
    from lmm_cli.workspace import open_workspace

    files = sorted(p for p in git(repo, "ls-files").split() if p.endswith(".py"))
    target = files[0]
    note = lmm_json("remember", "--repo", str(repo), f"the retry budget lives in {target}; never raise it above 3")
    ws = open_workspace(repo)
    db = ws.connect()
    try:
        with transaction(db):
            sid = insert_episode(db, Episode(
                kind="session", source="claude:s1:t1", ts=time.time(), title="make the upload retry idempotent",
                body="make the upload retry idempotent\n\nAnswer: done, see the diff",
                data={"by_user": True}, files=[FileChange(files[1], "E", None, None, None),
                                                FileChange(files[2], "V", None, None, None)]))
    finally:
        db.close()
    rec = core.recall(ws, "retry budget upload", budget=300, fast=True)
    core.feedback(ws, rec["recall_id"], useful=True)
    m, _ = _mine(repo)
    by = {e.source: e for e in m.examples}
    n = by[f"ep:{note['id']}"]  # type: ignore[index]
    assert n.kind == "note" and target in n.gold and n.text.startswith("the retry budget")
    s = by[f"ep:{sid}"]
    assert s.kind == "session" and s.gold == [files[1]] and s.text == "make the upload retry idempotent"
    f = by[f"recall:{rec['recall_id']}"]
    assert f.kind == "feedback" and f.gold and set(f.gold) <= {x["path"] for x in rec["files"][:3]}
    # a recall judged useless teaches nothing
    core.feedback(ws, rec["recall_id"], useful=False)
    m2, _ = _mine(repo)
    assert f"recall:{rec['recall_id']}" not in {e.source for e in m2.examples}


def test_weights_follow_salience_and_average_one(repo: Path) -> None:
    from lmm_cli.model.pairs import weights_for

    m, ws = _mine(repo)
    a, b = m.examples[0], m.examples[1]
    db = ws.connect()
    try:
        db.execute("UPDATE episodes SET salience = 1.0 WHERE id = ?", (a.episode_id,))
        db.execute("UPDATE episodes SET salience = 0.0 WHERE id = ?", (b.episode_id,))
        db.commit()
    finally:
        db.close()
    m, _ = _mine(repo)
    ts = m.trainset([0, 1, 2, 3])
    assert abs(float(ts.weight.mean()) - 1.0) < 1e-5
    wa = ts.weight[ts.source.index(a.source)]
    wb = ts.weight[ts.source.index(b.source)]
    assert wa / wb == pytest.approx(1.75 / 0.25, rel=1e-4)
    assert list(weights_for([0.5, 0.5])) == [1.0, 1.0]


def test_the_probe_bucket_is_stable_and_about_one_in_ten(repo: Path) -> None:
    from lmm_cli.model.pairs import is_probe

    shas = git(repo, "rev-list", "HEAD").split()
    first = [is_probe(s) for s in shas]
    assert first == [is_probe(s) for s in shas]
    assert 0.03 < sum(first) / len(first) < 0.2
    m, _ = _mine(repo)
    assert all(e.probe == (e.kind == "commit" and is_probe(e.key)) for e in m.examples)
    # the query vectors are cached under the base model's query id, not beside the documents
    from lmm_cli.workspace import open_workspace

    db = open_workspace(repo).connect()
    try:
        models = {r[0] for r in db.execute("SELECT DISTINCT model FROM vectors")}
    finally:
        db.close()
    assert any(x.endswith("#query") for x in models) and any(not x.endswith("#query") for x in models)
    json.dumps([e.source for e in m.examples])
