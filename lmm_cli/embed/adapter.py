"""Query-side adapters: what a trained version changes about how a query is embedded.

Documents stay embedded by the frozen base model; only the text of a task passes through an
adapter, so the stored vectors stay valid across versions and a version costs nothing to switch.
Two forms, both applied without torch (``--fast`` and hooks never import it):

- **linear** — ``q' = normalise(q + q @ W)``, W (d, d) float32 in ``adapter.safetensors``
  (tensor ``"W"``): a residual map on the base query vector, 0.6 MB for d = 384.
- **lora** — low-rank deltas on the query tower's attention weights, saved as peft saves them
  (``adapter_model.safetensors`` + ``adapter_config.json``). They are merged here into the numpy
  BERT's weights (``W + B @ A · alpha / r``) as overrides, so the fast path runs the adapted model.

``AdaptedEncoder`` wraps a base encoder with either form. Its ``id`` is the base's: vectors stored
under that id are the documents' base vectors, which an adapter never changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from .encoder import Encoder

__all__ = [
    "LINEAR_FILE",
    "LORA_FILE",
    "LORA_CONFIG",
    "LinearAdapter",
    "LoraAdapter",
    "AdaptedEncoder",
    "load_linear",
    "save_linear",
    "load_lora",
    "lora_deltas",
    "load_adapter",
]

LINEAR_FILE = "adapter.safetensors"
LORA_FILE = "adapter_model.safetensors"  # peft's names, so peft's PeftModel.from_pretrained reads a version
LORA_CONFIG = "adapter_config.json"

Progress = Callable[[int, int], None]


def _normalise(v: np.ndarray) -> np.ndarray:
    import numpy as np

    v = np.asarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, np.float32(1e-12))


class LinearAdapter:
    """``q' = normalise(q + q @ W)``; W = 0 is the base model exactly."""

    form = "linear"

    def __init__(self, W: np.ndarray) -> None:
        import numpy as np

        W = np.ascontiguousarray(W, dtype=np.float32)
        if W.ndim != 2 or W.shape[0] != W.shape[1]:
            raise ValueError(f"a linear adapter's W must be square, got shape {W.shape}")
        self.W = W

    @property
    def dim(self) -> int:
        return int(self.W.shape[0])

    def apply(self, q: np.ndarray) -> np.ndarray:
        """(n, d) base query vectors → (n, d) adapted vectors, rows L2-normalised."""
        import numpy as np

        q = np.asarray(q, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.shape[1] != self.dim:
            raise ValueError(f"query has {q.shape[1]} dimensions, the adapter {self.dim}")
        return _normalise(q + q @ self.W)


def _weights_file(path: Path, name: str) -> Path:
    return path / name if path.is_dir() else path


def load_linear(path: Path) -> LinearAdapter:
    """The linear adapter in ``path`` (``adapter.safetensors``, or the version folder holding it)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(_weights_file(Path(path), LINEAR_FILE)))
    if "W" not in tensors:
        raise ValueError(f"{path} has no tensor 'W'")
    return LinearAdapter(tensors["W"])


def save_linear(path: Path, W: np.ndarray) -> None:
    """Write W as tensor ``"W"`` (float32) to ``path`` (a file, or a folder: ``adapter.safetensors`` in it)."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"W": np.ascontiguousarray(W, dtype=np.float32)}, str(_weights_file(Path(path), LINEAR_FILE)),
              metadata={"form": "linear"})


# -- LoRA ----------------------------------------------------------------------------------------


def lora_deltas(tensors: dict[str, np.ndarray], config: dict[str, Any]) -> dict[str, np.ndarray]:
    """Merged weight deltas ``{param name: B @ A · scaling}`` from peft's saved LoRA tensors.

    peft saves ``base_model.model.<module>.lora_A.weight`` (r, in) and ``….lora_B.weight``
    (out, r); the parameter they change is ``<module>.weight``, and its delta is
    ``B @ A · lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA), as peft's own ``merge`` computes it."""
    import numpy as np

    if config.get("use_dora"):
        raise ValueError("DoRA adapters cannot be merged as plain deltas")
    r_default = int(config.get("r", 8))
    alpha_default = float(config.get("lora_alpha", r_default))
    ranks = config.get("rank_pattern") or {}
    alphas = config.get("alpha_pattern") or {}
    rs = bool(config.get("use_rslora", False))
    out: dict[str, np.ndarray] = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[: -len(".lora_A.weight")]
        b = tensors.get(module + ".lora_B.weight")
        if b is None:
            raise ValueError(f"LoRA tensor {key} has no matching lora_B")
        name = module
        for p in ("base_model.model.", "base_model."):
            if name.startswith(p):
                name = name[len(p):]
                break
        short = name.rsplit(".", 1)[-1]
        r = int(next((v for k, v in ranks.items() if name.endswith(k) or short == k), r_default))
        alpha = float(next((v for k, v in alphas.items() if name.endswith(k) or short == k), alpha_default))
        scaling = alpha / (r ** 0.5 if rs else r)
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        out[name + ".weight"] = (b64 @ a64 * scaling).astype(np.float32)
    if not out:
        raise ValueError("no LoRA tensors (…lora_A.weight) found")
    return out


class LoraAdapter:
    """A LoRA version: its merged deltas, applied by building the base's numpy encoder with them."""

    form = "lora"

    def __init__(self, deltas: dict[str, np.ndarray], config: dict[str, Any]) -> None:
        self.deltas = deltas
        self.config = config


def load_lora(path: Path) -> LoraAdapter:
    """The LoRA adapter in the version folder ``path`` (peft's two files)."""
    from safetensors.numpy import load_file

    path = Path(path)
    config = json.loads((path / LORA_CONFIG).read_text(encoding="utf-8"))
    tensors = load_file(str(path / LORA_FILE))
    return LoraAdapter(lora_deltas(tensors, config), config)


def load_adapter(path: Path, form: str) -> LinearAdapter | LoraAdapter:
    """The adapter of ``form`` ("linear" or "lora") saved in the version folder ``path``."""
    if form == "linear":
        return load_linear(path)
    if form == "lora":
        return load_lora(path)
    raise ValueError(f"unknown adapter form {form!r}")


def _merged_st_model(model: Any, deltas: dict[str, np.ndarray]) -> Any:
    """A copy of a sentence-transformers model with the deltas added (for bases the numpy path
    cannot run; torch is loaded there already)."""
    import copy

    import torch

    merged = copy.deepcopy(model)
    tf = merged[0].auto_model
    names = dict(tf.named_parameters())
    with torch.no_grad():
        for name, delta in deltas.items():
            param = names.get(name)
            if param is None:
                raise ValueError(f"the base model has no parameter {name}")
            param += torch.from_numpy(delta).to(param.dtype).reshape(param.shape)
    return merged


class AdaptedEncoder:
    """A base encoder with a query adapter on top; same ``id`` and ``dim`` as the base.

    Use it for queries only: documents are compared with the base model's stored vectors."""

    def __init__(self, base: Encoder, adapter: LinearAdapter | LoraAdapter, adapter_version: str, *,
                 dense_scale: float = 1.0) -> None:
        self.base = base
        self.adapter = adapter
        self.adapter_version = adapter_version
        self.dense_scale = dense_scale  # the adapter channel's fusion weight: the dense channel's times this
        self.id = base.id
        self.dim = base.dim
        self.form = adapter.form
        self.backend = getattr(base, "backend", "")
        self.max_seq_length = getattr(base, "max_seq_length", None)
        self._query: Any = None
        if isinstance(adapter, LinearAdapter):
            if adapter.dim != base.dim:
                raise ValueError(f"adapter is {adapter.dim}-dimensional, the encoder {base.dim}")
        else:
            with_overrides = getattr(base, "with_overrides", None)
            if with_overrides is not None:  # the numpy BERT: deltas merged into its weights
                self._query = with_overrides(adapter.deltas)
            elif getattr(base, "model", None) is not None:  # sentence-transformers: merge in torch
                from .encoder import SentenceTransformerEncoder

                st = base
                assert isinstance(st, SentenceTransformerEncoder)
                clone = object.__new__(SentenceTransformerEncoder)
                clone.__dict__.update(st.__dict__)
                clone.model = _merged_st_model(st.model, adapter.deltas)
                self._query = clone
            else:
                raise ValueError(f"a LoRA adapter cannot be applied to {base!r}")

    def __repr__(self) -> str:
        return f"AdaptedEncoder({self.id!r}, {self.form} {self.adapter_version})"

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        tok = getattr(self.base, "tokenize", None)
        if tok is None:
            raise AttributeError("tokenize")
        result: list[list[int]] = tok(texts)
        return result

    def encode_both(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(adapted, base) query vectors: recall's adapter channel compares code chunks with the
        adapted one; its dense channel compares code and episodes (commit messages, notes,
        prompts: text like the task) with the base one."""
        base = self.base.encode(texts)
        if isinstance(self.adapter, LinearAdapter):
            return self.adapter.apply(base), base
        return self.encode(texts), base

    def encode(self, texts: list[str], *, batch_size: int = 32, progress: Progress | None = None) -> np.ndarray:
        """(len(texts), dim) float32 adapted query vectors, rows L2-normalised."""
        if isinstance(self.adapter, LinearAdapter):
            return self.adapter.apply(self.base.encode(texts, batch_size=batch_size, progress=progress))
        vecs: np.ndarray = self._query.encode(texts, batch_size=batch_size, progress=progress)
        return vecs
