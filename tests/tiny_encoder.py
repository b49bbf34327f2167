"""A tiny sentence encoder built in the test, for tests that train adapters: a random BERT (hidden
48, 2 layers) whose WordPiece vocabulary is drawn from the repository's own text, saved as a
sentence-transformers folder. Mean pooling over shared word pieces makes texts that share words
similar, which is all a training round needs to have something to learn; it embeds a small
repository in a second, where the packaged model takes minutes on a loaded machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def repo_texts(repo: Path) -> list[str]:
    """Commit messages and file contents of ``repo``: what the tokenizer learns its pieces from."""
    log = subprocess.run(["git", "log", "--format=%B"], cwd=repo, capture_output=True, text=True, check=True).stdout
    texts = [t for t in log.split("\n") if t.strip()]
    files = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    for f in files[:400]:
        try:
            texts.extend((repo / f).read_text(encoding="utf-8").splitlines())
        except (OSError, UnicodeDecodeError):
            continue
    return texts


def _vocab(texts: list[str], normalizer, pre, size: int = 1500) -> dict[str, int]:
    """A WordPiece vocabulary chosen deterministically from ``texts``: the special tokens, every
    character (alone and as a continuation), then the most frequent whole words, word starts (3–6
    characters) and word ends (2–5), ties broken by the piece itself. The tokenizers trainer breaks
    ties in hash order, so the same texts gave a different tokenizer, and so different training
    rounds, from one test run to the next."""
    from collections import Counter

    words: Counter[str] = Counter()
    for t in texts:
        words.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t)))
    chars = sorted({c for w in words for c in w})
    pieces: Counter[str] = Counter()
    for w, n in words.items():
        for k in range(3, min(len(w), 7)):
            pieces[w[:k]] += n
        for k in range(2, min(len(w), 6)):
            pieces["##" + w[-k:]] += n
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    seen = set(vocab)
    ranked = sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) + sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0]))
    for piece, _ in ranked:
        if len(vocab) >= size:
            break
        if piece not in seen:
            seen.add(piece)
            vocab.append(piece)
    return {piece: i for i, piece in enumerate(vocab)}


def build_tiny(path: Path, texts: list[str], *, seed: int = 0, hidden: int = 48) -> Path:
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    tok = Tokenizer(models.WordPiece(_vocab(texts, normalizer, pre), unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece()
    hf_tok = transformers.BertTokenizerFast(tokenizer_object=tok, model_max_length=64)
    config = transformers.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=80)
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
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
    }))
    return path


# The tests of a round's mechanics judge candidates by the dense channel alone: on a generated
# repository the whole recall is near perfect (commit subjects name the code), so the default judge
# would refuse most candidates there. tests/model/test_rounds.py tests that judge where it matters.
DENSE_JUDGE = '[train]\njudge = "dense"\n'


def use_encoder(store: Path, model: Path, extra: str = "") -> None:
    """Point the store's config at ``model`` (and append ``extra`` TOML)."""
    (store / "config.toml").write_text(f'[models]\nencoder = "{model}"\n' + extra, encoding="utf-8")


# -- a small repository with a store embedded by the tiny encoder, built once per test session ----

_TEMPLATE: dict[str, Path] = {}
TEMPLATE_COMMITS = 120


def adapter_template(base: Path) -> dict[str, Path]:
    """A generated repository (``TEMPLATE_COMMITS`` commits) with its store initialised and embedded
    by a tiny encoder, built once under ``base`` (then reused): {"repo", "store", "model"}. Copy the
    repository (``copy_template``) to use it: its store comes along (lmm settles a copied repository)."""
    if _TEMPLATE:
        return _TEMPLATE
    import os
    import sys

    from conftest import ROOT, lmm, module_environment

    with module_environment(base):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from genrepo import generate

        repo = generate(base / "gen", commits=TEMPLATE_COMMITS, seed=3)
        model = build_tiny(base / "tiny-encoder", repo_texts(repo))
        env = {"LMM_AUTO_EMBED": "0"}
        out = json.loads(lmm("init", "--repo", str(repo), "--no-hooks", "--no-embed", "--json", env=env).stdout)
        store = Path(out["store"])
        use_encoder(store, model, DENSE_JUDGE)
        lmm("ingest", "--repo", str(repo), env=env, embed=True)
        _TEMPLATE.update(repo=repo, store=store, model=model, home=Path(os.environ["LMM_HOME"]))
    return _TEMPLATE


def copy_template(template: dict[str, Path], dest: Path) -> Path:
    """A copy of the template repository at ``dest``; the first lmm command (or ``open_workspace``)
    in it gives it its own copy of the template's store."""
    import shutil

    shutil.copytree(template["repo"], dest, symlinks=True)
    return dest
