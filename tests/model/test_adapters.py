"""Adapter versions on disk and the adapted query encoder: what a saved version gives back is what
was trained, bit for bit; rollback gives back the previous version's answers exactly; nothing on
disk a kill or a bad file leaves behind breaks recall (the base answers instead); a LoRA version runs
on the numpy fast path with the answers peft gives; loading adapters imports no torch."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

np = pytest.importorskip("numpy")
pytest.importorskip("safetensors")
pytest.importorskip("tokenizers")

from lmm_cli.embed.adapter import AdaptedEncoder, LinearAdapter, load_adapter, load_linear, save_linear  # noqa: E402
from lmm_cli.embed.encoder import load_encoder  # noqa: E402
from lmm_cli.model import adapters as A  # noqa: E402
from lmm_cli.model.trainer import TrainResult  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

WORDS = ("token refresh parser config cache index query store commit branch merge revert fix bug test "
         "docs lexer graph vector chunk encoder adapter round version rollback memory hook daemon watch "
         "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega").split()
TEXTS = [
    "fix the token refresh in the parser",
    "revert the cache index change",
    "a memory of the repository for coding assistants",
    "",
    "adapter round version rollback " * 12,
]


def build_tiny(path: Path, *, seed: int = 0, texts: list[str] | None = None) -> Path:
    """A random BERT (hidden 32, 2 layers, 2 heads) with a WordPiece tokenizer trained on the fly,
    saved as a classic sentence-transformers folder (mean pooling, normalisation)."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    corpus = list(texts or []) + [" ".join(WORDS)] + TEXTS
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece()
    hf_tok = transformers.BertTokenizerFast(tokenizer_object=tok, model_max_length=48)
    config = transformers.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(seed)
    model = transformers.BertModel(config).eval()
    path.mkdir(parents=True)
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 40, "do_lower_case": False}))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="module")
def base(tiny_dir: Path):
    enc = load_encoder(str(tiny_dir))
    assert enc.backend == "numpy"
    return enc


def _linear(d: int, seed: int) -> TrainResult:
    rng = np.random.default_rng(seed)
    W = (rng.normal(size=(d, d)) * 0.3).astype(np.float32)
    return TrainResult(form="linear", tensors={"W": W}, sources=[f"ep:{seed}-{i}" for i in range(3)])


def _meta(base, **kw):
    return {"base_model": base.id, "window": {"episodes": [1, 9]}, "config": {"form": "linear"}, **kw}


def _cos(a, b):
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# -- linear versions -----------------------------------------------------------------------------


def test_linear_version_round_trip_is_bit_for_bit(tmp_path, base) -> None:
    r = _linear(base.dim, 1)
    v = A.save_version(tmp_path, r, _meta(base, scores={"recent": {"incumbent": {"mrr": 0.5}, "candidate": {"mrr": 0.6}}}))
    assert v.name == "v0001" and v.form == "linear" and not v.active
    assert A.load_query_encoder(tmp_path, base) is base  # saved, not yet active
    A.activate(tmp_path, v.name)
    enc = A.load_query_encoder(tmp_path, base)
    assert isinstance(enc, AdaptedEncoder) and enc.id == base.id and enc.dim == base.dim
    assert enc.adapter_version == "v0001"
    got = enc.encode(TEXTS)
    want = LinearAdapter(r.tensors["W"]).apply(base.encode(TEXTS))
    assert np.array_equal(got, want)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert _cos(got, base.encode(TEXTS)).min() < 0.99  # the adapter changes the queries
    assert np.array_equal(load_linear(A.version_dir(tmp_path, "v0001")).W, r.tensors["W"])
    meta = json.loads((A.version_dir(tmp_path, "v0001") / "meta.json").read_text())
    assert meta["base_model"] == base.id and meta["form"] == "linear" and meta["scores"]["recent"]["candidate"]["mrr"] == 0.6
    assert meta["window"] == {"episodes": [1, 9]} and meta["size_bytes"] == v.size_bytes
    assert A.active_version(tmp_path).name == "v0001"


def test_linear_adapter_of_the_packaged_size_is_small(tmp_path) -> None:
    r = _linear(384, 0)
    v = A.save_version(tmp_path, r, {"base_model": "all-MiniLM-L6-v2@x"})
    on_disk = sum(p.stat().st_size for p in A.version_dir(tmp_path, v.name).iterdir())
    assert v.size_bytes == on_disk
    assert 384 * 384 * 4 <= on_disk <= 5 * 1024 * 1024


def test_rollback_restores_the_previous_versions_outputs_exactly(tmp_path, base) -> None:
    plain = base.encode(TEXTS)
    outs = {}
    for seed in (1, 2):
        v = A.save_version(tmp_path, _linear(base.dim, seed), _meta(base))
        A.activate(tmp_path, v.name)
        outs[v.name] = A.load_query_encoder(tmp_path, base).encode(TEXTS)
    assert not np.array_equal(outs["v0001"], outs["v0002"])
    back = A.rollback(tmp_path)
    assert back is not None and back.name == "v0001" and back.active
    assert np.array_equal(A.load_query_encoder(tmp_path, base).encode(TEXTS), outs["v0001"])
    assert A.rollback(tmp_path) is None  # nothing before v0001: the base, exactly
    assert A.load_query_encoder(tmp_path, base) is base
    assert np.array_equal(A.load_query_encoder(tmp_path, base).encode(TEXTS), plain)
    named = A.rollback(tmp_path, "v0002")
    assert named is not None and named.name == "v0002"
    assert np.array_equal(A.load_query_encoder(tmp_path, base).encode(TEXTS), outs["v0002"])
    with pytest.raises(A.BadArgument, match="v0042"):
        A.rollback(tmp_path, "v0042")


def test_keeps_the_last_k_and_always_the_active_one(tmp_path, base) -> None:
    v1 = A.save_version(tmp_path, _linear(base.dim, 1), _meta(base), keep=3)
    A.activate(tmp_path, v1.name)
    for seed in range(2, 8):
        A.save_version(tmp_path, _linear(base.dim, seed), _meta(base), keep=3)
    assert [v.name for v in A.list_versions(tmp_path)] == ["v0001", "v0005", "v0006", "v0007"]
    assert [v.name for v in A.list_versions(tmp_path) if v.active] == ["v0001"]
    A.drop(tmp_path, ["v0007"])
    assert A.save_version(tmp_path, _linear(base.dim, 9), _meta(base), keep=3).name == "v0008"  # names are never reused


def test_seen_is_inherited_from_the_parent(tmp_path, base) -> None:
    v1 = A.save_version(tmp_path, _linear(base.dim, 1), _meta(base, seen=["recall:4"]))
    v2 = A.save_version(tmp_path, _linear(base.dim, 2), _meta(base, parent=v1.name))
    assert set(v1.seen) == {"recall:4", "ep:1-0", "ep:1-1", "ep:1-2"}
    assert set(v2.seen) == set(v1.seen) | {"ep:2-0", "ep:2-1", "ep:2-2"} and v2.parent == "v0001"


def test_dropping_the_active_version_falls_back_to_the_one_before(tmp_path, base) -> None:
    for seed in (1, 2, 3):
        A.activate(tmp_path, A.save_version(tmp_path, _linear(base.dim, seed), _meta(base)).name)
    A.drop(tmp_path, ["v0003", "v0002"])
    assert A.active_version(tmp_path).name == "v0001"
    assert [v.name for v in A.list_versions(tmp_path)] == ["v0001"]
    A.drop(tmp_path, ["v0001"])
    assert A.active_version(tmp_path) is None and A.list_versions(tmp_path) == []


@pytest.mark.parametrize("damage", ["garbled ACTIVE", "ACTIVE names a missing version", "truncated weights",
                                    "corrupt meta.json", "other base model", "wrong dimension"])
def test_a_damaged_store_falls_back_to_the_base_quietly(tmp_path, base, damage, capsys) -> None:
    d = base.dim + 1 if damage == "wrong dimension" else base.dim
    v = A.save_version(tmp_path, _linear(d, 1), _meta(base, base_model="other@1" if damage == "other base model" else base.id))
    A.activate(tmp_path, v.name)
    root, vdir = A.adapters_dir(tmp_path), A.version_dir(tmp_path, v.name)
    if damage == "garbled ACTIVE":
        (root / "ACTIVE").write_bytes(b"\x00\xffv00")
    elif damage == "ACTIVE names a missing version":
        (root / "ACTIVE").write_text("v0099\n")
    elif damage == "truncated weights":
        data = (vdir / "adapter.safetensors").read_bytes()
        (vdir / "adapter.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "corrupt meta.json":
        (vdir / "meta.json").write_text("{not json")
    assert A.load_query_encoder(tmp_path, base) is base
    assert capsys.readouterr().out == ""
    if damage in ("corrupt meta.json",):
        assert A.list_versions(tmp_path) == [] and A.active_version(tmp_path) is None


def test_half_written_versions_are_never_listed(tmp_path, base) -> None:
    A.save_version(tmp_path, _linear(base.dim, 1), _meta(base))
    half = A.adapters_dir(tmp_path) / ".tmp-v0002"
    half.mkdir()
    (half / "meta.json").write_text(json.dumps({"form": "linear"}))
    assert [v.name for v in A.list_versions(tmp_path)] == ["v0001"]
    with pytest.raises(A.BadArgument):
        A.activate(tmp_path, "v0002")
    v = A.save_version(tmp_path, _linear(base.dim, 2), _meta(base))  # the leftover is cleaned, its name free
    assert not half.exists() and v.name == "v0002"
    assert np.array_equal(load_linear(A.version_dir(tmp_path, "v0002")).W, _linear(base.dim, 2).tensors["W"])


# -- LoRA on the numpy path ----------------------------------------------------------------------


def _peft_model(tiny_dir: Path, seed: int = 0):
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    from lmm_cli.model.trainer import TrainConfig, load_lora_model

    model = load_lora_model(tiny_dir, TrainConfig(lora_r=4, lora_alpha=8))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:  # B starts at zero: give both halves weights, as training would
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def _torch_encode(model, enc, texts):
    import torch

    out = []
    for ids in enc.tokenize(texts):
        t = torch.tensor([ids])
        with torch.no_grad():
            h = model(input_ids=t, attention_mask=torch.ones_like(t)).last_hidden_state[0]
        v = h.mean(dim=0)
        out.append((v / v.norm()).numpy())
    return np.stack(out)


def _lora_result(model) -> TrainResult:
    import tempfile

    from peft import get_peft_model_state_dict

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        files = {n: Path(tmp, n).read_bytes() for n in ("adapter_model.safetensors", "adapter_config.json")}
    tensors = {k: v.detach().numpy() for k, v in get_peft_model_state_dict(model).items()}
    return TrainResult(form="lora", tensors=tensors, files=files)


def test_lora_version_on_the_numpy_path_matches_peft(tmp_path, tiny_dir, base) -> None:
    model = _peft_model(tiny_dir)
    want = _torch_encode(model, base, TEXTS)
    v = A.save_version(tmp_path, _lora_result(model), _meta(base, config={"form": "lora"}))
    assert (A.version_dir(tmp_path, v.name) / "adapter_config.json").is_file()
    A.activate(tmp_path, v.name)
    enc = A.load_query_encoder(tmp_path, base)
    assert isinstance(enc, AdaptedEncoder) and enc.form == "lora" and enc.id == base.id
    got = enc.encode(TEXTS)
    assert _cos(got, want).min() >= 0.999
    assert _cos(got, base.encode(TEXTS)).min() < 0.99  # the deltas do something
    assert np.array_equal(A.load_query_encoder(tmp_path, base).encode(TEXTS), got)  # load again: same
    # peft itself reads the version folder back (the files are peft's own format)
    from peft import PeftModel
    from transformers import AutoModel

    again = PeftModel.from_pretrained(AutoModel.from_pretrained(str(tiny_dir)), str(A.version_dir(tmp_path, v.name))).eval()
    assert _cos(_torch_encode(again, base, TEXTS), want).min() >= 0.99999
    # and the sentence-transformers backend applies the same deltas
    pytest.importorskip("sentence_transformers")
    slow = AdaptedEncoder(load_encoder(str(tiny_dir), fast=False), load_adapter(A.version_dir(tmp_path, v.name), "lora"), v.name)
    assert _cos(slow.encode(TEXTS), want).min() >= 0.999


# -- no torch on the fast path -------------------------------------------------------------------


def test_loading_adapters_imports_no_torch(tmp_path, tiny_dir, base) -> None:
    lin = tmp_path / "lin"
    A.activate(lin, A.save_version(lin, _linear(base.dim, 3), _meta(base)).name)
    lora = tmp_path / "lora"
    A.activate(lora, A.save_version(lora, _lora_result(_peft_model(tiny_dir)), _meta(base)).name)
    code = (
        "import sys\n"
        "import lmm_cli.embed.adapter, lmm_cli.model.adapters as A\n"
        "from lmm_cli.embed.encoder import load_encoder\n"
        "from pathlib import Path\n"
        "assert 'numpy' not in sys.modules, 'importing the modules must not import numpy'\n"
        f"base = load_encoder({str(tiny_dir)!r})\n"
        "forms = []\n"
        f"for store in ({str(lin)!r}, {str(lora)!r}):\n"
        "    enc = A.load_query_encoder(Path(store), base)\n"
        "    forms.append(enc.form)\n"
        "    enc.encode(['fix the token refresh'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'sentence_transformers', 'accelerate') if m in sys.modules]\n"
        "print(forms, heavy)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "['linear', 'lora'] []"


# -- kill -9 at random points --------------------------------------------------------------------

_CHILD = r"""
import sys, numpy as np
from pathlib import Path
from lmm_cli.embed.adapter import load_linear
from lmm_cli.model import adapters as A
from lmm_cli.model.trainer import TrainConfig, TrainSet, train_linear
store, seed = Path(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)  # the same documents in every run
d, m, n = 16, 64, 40
docs = rng.normal(size=(m, d)).astype(np.float32); docs /= np.linalg.norm(docs, axis=1, keepdims=True)
t = rng.integers(0, m, n)  # a first run, not saved: the imports (seconds) are behind us before "ready"
train_linear(TrainSet([""] * n, docs[t], t, np.ones(n, np.float32), [""] * n), docs, TrainConfig(epochs=1, threads=1))
print("ready", flush=True)
for _ in range(1000):
    i = A._next_number(A.adapters_dir(store))  # the same data after a kill: the checkpoint resumes it
    rng = np.random.default_rng(1000 + i)
    t = rng.integers(0, m, n)
    q = docs[t] + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
    ts = TrainSet([str(x) for x in t], q.astype(np.float32), t, np.ones(n, np.float32), [f"ep:{i}-{j}" for j in range(n)])
    active = A.active_version(store)
    init = load_linear(A.version_dir(store, active.name)).W if active else None
    r = train_linear(ts, docs, TrainConfig(epochs=3, batch=8, checkpoint_every=2, threads=1), init=init,
                     checkpoint=A.adapters_dir(store) / ".round" / "checkpoint.pt")
    v = A.save_version(store, r, {"base_model": "tiny@1", "parent": active.name if active else None}, keep=3)
    A.activate(store, v.name)
    if i % 3 == 2:
        A.rollback(store)
"""


def _check_store(store: Path) -> None:
    versions = A.list_versions(store)
    for v in versions:  # every listed version is complete and loads
        ad = load_adapter(A.version_dir(store, v.name), v.form)
        assert ad.W.shape == (16, 16)
    active = A.active_version(store)
    if active is not None:
        assert active.name in [v.name for v in versions]
        assert load_adapter(A.version_dir(store, active.name), active.form).W.shape == (16, 16)
    assert len([v for v in versions if not v.active]) <= 3
    for p in A.adapters_dir(store).glob("v*"):  # nothing named like a version that is not one
        assert p.name in [v.name for v in versions], p


@pytest.mark.parametrize("run", range(2))
def test_kill_9_at_random_points_leaves_a_loadable_active_adapter(tmp_path, run) -> None:
    pytest.importorskip("torch")
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "child.py").write_text(_CHILD)
    rnd = random.Random(run)
    kills = 0
    for attempt in range(4):
        child = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), str(store), str(run * 10 + attempt)],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
            time.sleep(rnd.uniform(0.5, 4.0))
            assert child.poll() is None, child.stderr.read() if child.stderr else ""  # it must not die by itself
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
        _check_store(store)
    assert kills == 4
    assert A.list_versions(store), "some versions were written between the kills"


def test_save_linear_and_load_linear(tmp_path) -> None:
    W = np.arange(16, dtype=np.float32).reshape(4, 4) / 100
    save_linear(tmp_path, W)
    assert np.array_equal(load_linear(tmp_path).W, W)
    assert np.array_equal(load_linear(tmp_path / "adapter.safetensors").W, W)
