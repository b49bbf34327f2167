"""The training loops of the query adapters (torch, imported inside the functions).

Both forms learn the same thing: given a task's text, the chunk its change touched should be the
nearest of every chunk vector of the repository. Document vectors are the frozen base model's and
fixed, so the softmax runs over all of them (no negative sampling): ``logits = q' · docsᵀ / tau``,
cross-entropy against the positive chunk, each pair weighted by its salience-derived ``weight``.

- ``train_linear``: ``q' = normalise(q + q @ W)`` on the precomputed base query vectors; W starts at
  zero (the base) or at a parent version's W (a continual round), with an L2 pull toward that start
  so a round moves the map no further than its data asks. Seconds on 2 cores.
- ``train_lora``: peft LoRA on the attention query/value projections of the base BERT (loaded with
  transformers from the local model folder), mean pooling and normalisation as sentence-transformers
  does, the same loss. Bounded in steps and seconds: minutes on 2 cores.

Both hold out a seeded validation split of the pairs and stop early when its loss stops falling
(keeping the best weights), bound their threads (``torch.set_num_threads``) and their wall clock,
and write a checkpoint every ``checkpoint_every`` steps (atomic replace) from which a later call
with the same data resumes: a killed background round loses at most those steps. With
``accelerate=True`` the same loop runs through ``accelerate.Accelerator`` (device placement,
``prepare``, ``backward``, data sharding): on a GPU box ``lmm train --accelerate`` needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ..embed.adapter import LinearAdapter, LoraAdapter
    from ..embed.encoder import Encoder

__all__ = ["TrainSet", "TrainConfig", "TrainResult", "train_linear", "train_lora", "pair_losses", "Interrupted"]

Progress = Callable[[int, int], None]
"""``progress(step, total)``: after each optimiser step; ``total`` is the step budget (an upper bound)."""


@dataclass
class TrainSet:
    texts: list[str]  # query texts (commit message, note, prompt, recall query)
    q: np.ndarray  # (n, d) float32 base-model query vectors of texts (for the linear form)
    target: np.ndarray  # (n,) int64: row in docs of the positive chunk
    weight: np.ndarray  # (n,) float32: salience-derived loss/sampling weight, mean ~1
    source: list[str]  # (n,) provenance id of each pair: "ep:123" or "recall:45"

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, idx: Any) -> TrainSet:
        """The pairs at positions ``idx`` (an index array)."""
        import numpy as np

        idx = np.asarray(idx, dtype=np.int64)
        return TrainSet([self.texts[i] for i in idx], self.q[idx], self.target[idx], self.weight[idx],
                        [self.source[i] for i in idx])


@dataclass
class TrainConfig:
    """Settings of a training run; saved in each version's meta.json."""

    form: str = "linear"  # "linear" or "lora"
    epochs: int = 30  # passes over the training pairs (linear); early stopping usually ends sooner
    lr: float = 1e-3  # AdamW learning rate (linear)
    tau: float = 0.05  # softmax temperature: logits = cosine / tau
    l2: float = 1e-3  # pull toward the starting weights: l2 · ‖θ − θ₀‖²
    batch: int = 256  # pairs per step (linear)
    threads: int = 2  # torch threads: a background round must leave the machine usable
    seed: int = 0  # the validation split, batch order and LoRA dropout
    max_seconds: float = 600  # wall-clock bound of the whole run, resumed parts included
    val_frac: float = 0.1  # pairs held out for early stopping (none below 10 pairs)
    patience: int = 3  # validations without improvement before stopping
    checkpoint_every: int = 25  # steps between checkpoints (when a checkpoint path is given)
    max_steps: int = 0  # a bound on optimiser steps (0: epochs decide); LoRA uses lora_max_steps
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scaling numerator: deltas are B·A·alpha/r
    lora_dropout: float = 0.0  # dropout on the LoRA path
    lora_lr: float = 2e-4  # AdamW learning rate (LoRA)
    lora_batch: int = 32  # pairs per step (LoRA)
    lora_epochs: int = 3  # passes over the pairs (LoRA)
    lora_max_steps: int = 300  # a bound on LoRA steps: a round on 2 cores stays minutes
    lora_max_len: int = 128  # tokens per training query (commit messages rarely need more)
    lora_eval_every: int = 50  # LoRA steps between validations

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainResult:
    form: str
    tensors: dict[str, np.ndarray]  # linear: {"W"}; lora: peft's state dict (as saved)
    files: dict[str, bytes] = field(default_factory=dict)  # lora: adapter_model.safetensors, adapter_config.json
    config: dict[str, Any] = field(default_factory=dict)
    train_loss: float = math.nan  # weighted loss over the last epoch's (or eval window's) batches
    val_loss: float = math.nan  # best validation loss (the weights kept)
    base_val_loss: float = math.nan  # validation loss of the starting weights
    seconds: float = 0.0
    steps: int = 0
    resumed_from: int = 0  # the checkpoint step this run started from (0: fresh)
    stopped: str = ""  # "converged", "epochs", "steps" or "time"
    sources: list[str] = field(default_factory=list)  # provenance of the pairs trained on

    def adapter(self) -> LinearAdapter | LoraAdapter:
        """The trained adapter, to apply without saving first."""
        from ..embed.adapter import LinearAdapter, LoraAdapter, lora_deltas

        if self.form == "linear":
            return LinearAdapter(self.tensors["W"])
        config = json.loads(self.files["adapter_config.json"]) if "adapter_config.json" in self.files else {}
        return LoraAdapter(lora_deltas(self.tensors, config), config)


class Interrupted(Exception):
    """Raised by a progress callback to stop a run; the last checkpoint stays for a resume."""


# -- shared pieces -------------------------------------------------------------------------------


def _split(n: int, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(n)
    n_val = int(round(n * cfg.val_frac)) if n >= 10 and cfg.val_frac > 0 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _fingerprint(ts: TrainSet, docs: np.ndarray, cfg: TrainConfig, extra: str = "") -> str:
    """What a checkpoint was made for: a resume with other data or settings starts afresh."""
    import numpy as np

    h = hashlib.sha1()
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("threads", "max_seconds", "checkpoint_every")}
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(extra.encode())
    h.update(np.ascontiguousarray(ts.target, np.int64).tobytes())
    h.update(np.ascontiguousarray(ts.weight, np.float32).tobytes())
    h.update("\x00".join(ts.texts).encode("utf-8", "surrogatepass"))
    h.update(np.ascontiguousarray(ts.q, np.float32).tobytes())
    step = max(1, len(docs) // 256)
    h.update(str(docs.shape).encode() + np.ascontiguousarray(docs[::step], np.float32).tobytes())
    return h.hexdigest()


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _load_checkpoint(path: Path | None, fingerprint: str) -> dict[str, Any] | None:
    import torch

    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - a torn or foreign file: start afresh
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        return None
    return state


@dataclass
class _Loop:
    """The loop both forms share: batches, loss, AdamW, validation, early stopping, checkpoints."""

    model: Any  # a torch module whose trainable parameters are the adapter
    encode: Callable[[Any, Any], Any]  # (model, index tensor) -> (b, d) normalised query vectors
    n_train: int
    target: Any  # torch int64 (n_train,)
    weight: Any  # torch float32 (n_train,)
    val_encode: Callable[[Any], Any] | None  # model -> (n_val, d) vectors, or None: no validation
    val_target: Any
    val_weight: Any
    docs: Any  # torch (m, d)
    cfg: TrainConfig
    lr: float
    batch: int
    epochs: int
    max_steps: int
    eval_every: int  # 0: validate at each epoch's end
    checkpoint: Path | None
    fingerprint: str
    progress: Progress | None
    accelerate: bool


def _weighted_ce(torch: Any, qv: Any, docs: Any, target: Any, weight: Any, tau: float) -> Any:
    logits = qv @ docs.T / tau
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    return (ce * weight).sum() / weight.sum().clamp_min(1e-12)


def _run(loop: _Loop) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train; returns (best trainable state as tensors, a summary)."""
    import torch

    cfg = loop.cfg
    start_clock = time.monotonic()
    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cfg.threads)))
    try:
        return _run_inner(loop, torch, start_clock)
    finally:
        torch.set_num_threads(threads_before)


def _run_inner(loop: _Loop, torch: Any, start_clock: float) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = loop.cfg
    model = loop.model
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    init = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=loop.lr, weight_decay=0.0)  # the pull is toward θ₀, not 0

    accelerator = None
    device = torch.device("cpu")
    if loop.accelerate:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        model, optimizer = accelerator.prepare(model, optimizer)
        device = accelerator.device
    docs = loop.docs.to(device)
    target, weight = loop.target.to(device), loop.weight.to(device)
    init = [p.to(device) for p in init]

    def trainable() -> list[Any]:
        m = accelerator.unwrap_model(model) if accelerator is not None else model
        return [p for p in m.parameters() if p.requires_grad]

    def snapshot() -> dict[str, Any]:
        return {n: p.detach().to("cpu").clone() for n, p in zip(names, trainable())}

    def restore(state: dict[str, Any]) -> None:
        with torch.no_grad():
            for n, p in zip(names, trainable()):
                p.copy_(state[n].to(p.device))

    def validate() -> float:
        if loop.val_encode is None:
            return math.nan
        model.eval()
        with torch.no_grad():
            qv = loop.val_encode(model)
            v = _weighted_ce(torch, qv, docs, loop.val_target.to(device), loop.val_weight.to(device), cfg.tau)
        model.train()
        return float(v)

    spe = max(1, math.ceil(loop.n_train / loop.batch))  # steps per epoch
    total = spe * loop.epochs
    if loop.max_steps > 0:
        total = min(total, loop.max_steps)

    state = _load_checkpoint(loop.checkpoint, loop.fingerprint)
    step, best, best_state, bad, base_val = 0, math.inf, None, 0, math.nan
    elapsed_before, loss_sum, loss_n, resumed = 0.0, 0.0, 0.0, 0
    last_val_step = 0
    if state is not None:
        restore(state["params"])
        optimizer.load_state_dict(state["optimizer"])
        step, best, bad, base_val = int(state["step"]), float(state["best"]), int(state["bad"]), float(state["base_val"])
        best_state = state["best_state"]
        elapsed_before = float(state["elapsed"])
        loss_sum, loss_n = float(state["loss_sum"]), float(state["loss_n"])
        last_val_step = int(state.get("last_val_step", step))
        torch.set_rng_state(state["rng"])
        resumed = step
    else:
        base_val = validate()
        best = base_val if not math.isnan(base_val) else math.inf
        best_state = snapshot()

    def save(done: bool = False) -> None:
        if loop.checkpoint is None or (accelerator is not None and not accelerator.is_main_process):
            return
        _save_checkpoint(loop.checkpoint, {
            "fingerprint": loop.fingerprint, "params": snapshot(), "optimizer": optimizer.state_dict(),
            "step": step, "best": best, "bad": bad, "base_val": base_val, "best_state": best_state,
            "elapsed": elapsed_before + time.monotonic() - start_clock, "loss_sum": loss_sum, "loss_n": loss_n,
            "last_val_step": last_val_step, "rng": torch.get_rng_state(), "config": cfg.to_dict(), "done": done,
        })

    def out_of_time() -> bool:
        return elapsed_before + time.monotonic() - start_clock > cfg.max_seconds

    def check_val() -> bool:
        """Validate; True when training should stop (no improvement for `patience` validations)."""
        nonlocal best, best_state, bad, last_val_step
        last_val_step = step
        v = validate()
        if math.isnan(v):
            best_state = snapshot()
            return False
        if v < best - 1e-6:
            best, best_state, bad = v, snapshot(), 0
        else:
            bad += 1
        return bad >= cfg.patience

    stopped = "epochs" if loop.max_steps <= 0 or spe * loop.epochs <= loop.max_steps else "steps"
    if state is not None and state.get("done"):
        stopped = str(state.get("stopped", stopped))
    else:
        model.train()
        finished = False
        while step < total and not finished:
            epoch, offset = divmod(step, spe)
            g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
            order = torch.randperm(loop.n_train, generator=g)
            # Its own generator: a DataLoader draws a seed when iterated, which from the global RNG would
            # shift the dropout masks of a resumed run away from an unbroken one's.
            loader: Any = torch.utils.data.DataLoader(order, batch_size=loop.batch, shuffle=False, generator=g)
            if accelerator is not None:
                loader = accelerator.prepare(loader)
                if offset:
                    loader = accelerator.skip_first_batches(loader, offset)
                batches: Any = loader
            else:
                batches = (b for i, b in enumerate(loader) if i >= offset)
            if offset == 0:
                loss_sum, loss_n = 0.0, 0.0
            for idx in batches:
                idx = idx.to(device)
                qv = loop.encode(model, idx)
                loss = _weighted_ce(torch, qv, docs, target[idx], weight[idx], cfg.tau)
                if cfg.l2 > 0:
                    loss = loss + cfg.l2 * sum(((p - p0) ** 2).sum() for p, p0 in zip(trainable(), init))
                optimizer.zero_grad(set_to_none=True)
                if accelerator is not None:
                    accelerator.backward(loss)
                else:
                    loss.backward()
                optimizer.step()
                step += 1
                loss_sum += float(loss.detach()) * len(idx)
                loss_n += len(idx)
                at_epoch_end = step % spe == 0
                if (loop.eval_every > 0 and step - last_val_step >= loop.eval_every) or \
                        (loop.eval_every <= 0 and at_epoch_end):
                    if check_val():
                        stopped, finished = "converged", True
                if not finished and out_of_time():
                    stopped, finished = "time", True
                if not finished and step >= total:
                    finished = True
                if finished:
                    break
                if loop.checkpoint is not None and step % max(1, cfg.checkpoint_every) == 0:
                    save()
                if loop.progress is not None:
                    loop.progress(step, total)  # may raise Interrupted: the checkpoint stays
        if stopped != "converged" and step > last_val_step:
            check_val()  # the last steps' weights compete too
        if best_state is None:
            best_state = snapshot()
        save(done=True)
        if loop.progress is not None:
            loop.progress(step, step)
    restore(best_state)
    final = accelerator.unwrap_model(model) if accelerator is not None else model
    summary = {
        "train_loss": loss_sum / loss_n if loss_n else math.nan, "val_loss": best if best < math.inf else math.nan,
        "base_val_loss": base_val, "steps": step, "resumed_from": resumed, "stopped": stopped,
        "seconds": elapsed_before + time.monotonic() - start_clock, "model": final,
    }
    return best_state, summary


# -- the linear form -----------------------------------------------------------------------------


def train_linear(ts: TrainSet, docs: np.ndarray, cfg: TrainConfig, *, init: np.ndarray | None = None,
                 checkpoint: Path | None = None, progress: Progress | None = None,
                 accelerate: bool = False) -> TrainResult:
    """Fit W of ``q' = normalise(q + q @ W)`` on the pairs of ``ts`` against every row of ``docs``.

    ``init``: the parent version's W for a continual round (the L2 pull is toward it), else zeros.
    ``checkpoint``: a file to save progress to and, when it holds a run on the same data and
    settings, to resume from."""
    import numpy as np
    import torch

    q = np.ascontiguousarray(ts.q, np.float32)
    d = q.shape[1]
    if docs.ndim != 2 or docs.shape[1] != d:
        raise ValueError(f"doc vectors have shape {docs.shape}, queries {q.shape}")
    if len(ts) == 0:
        raise ValueError("no training pairs")
    W0 = np.zeros((d, d), np.float32) if init is None else np.asarray(init, np.float32)
    tr, va = _split(len(ts), cfg)
    torch.manual_seed(cfg.seed)

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.W = torch.nn.Parameter(torch.from_numpy(W0.copy()))

        def forward(self, x: Any) -> Any:
            return torch.nn.functional.normalize(x + x @ self.W, dim=-1)

    model = Linear()
    q_tr = torch.from_numpy(q[tr])
    q_va = torch.from_numpy(q[va])

    on_device: dict[Any, Any] = {}  # the training queries, moved to the accelerator's device once

    def encode(m: Any, idx: Any) -> Any:
        if idx.device not in on_device:
            on_device[idx.device] = q_tr.to(idx.device)
        return m(on_device[idx.device][idx])

    def val_encode(m: Any) -> Any:
        return m(q_va.to(next(m.parameters()).device))

    loop = _Loop(
        model=model, encode=encode, n_train=len(tr),
        target=torch.from_numpy(np.asarray(ts.target[tr], np.int64)),
        weight=torch.from_numpy(np.asarray(ts.weight[tr], np.float32)),
        val_encode=val_encode if len(va) else None,
        val_target=torch.from_numpy(np.asarray(ts.target[va], np.int64)),
        val_weight=torch.from_numpy(np.asarray(ts.weight[va], np.float32)),
        docs=torch.from_numpy(np.ascontiguousarray(docs, np.float32)), cfg=cfg, lr=cfg.lr, batch=max(1, cfg.batch),
        epochs=max(1, cfg.epochs), max_steps=cfg.max_steps, eval_every=0, checkpoint=checkpoint,
        fingerprint=_fingerprint(ts, docs, cfg, "linear:" + hashlib.sha1(W0.tobytes()).hexdigest()),
        progress=progress, accelerate=accelerate,
    )
    best, s = _run(loop)
    W = best["W"].numpy().astype(np.float32)
    return TrainResult(
        form="linear", tensors={"W": W}, config={**cfg.to_dict(), "form": "linear"},
        train_loss=s["train_loss"], val_loss=s["val_loss"], base_val_loss=s["base_val_loss"], seconds=s["seconds"],
        steps=s["steps"], resumed_from=s["resumed_from"], stopped=s["stopped"], sources=list(ts.source),
    )


# -- the LoRA form -------------------------------------------------------------------------------


def _tokenizer(base_folder: Path, max_len: int) -> Callable[[list[str]], list[list[int]]]:
    """Token ids exactly as the query path makes them (the numpy encoder's tokenizer: same
    truncation and lowercasing), cut to ``max_len`` keeping the final [SEP]."""
    from ..embed.encoder import load_encoder

    enc = load_encoder(str(base_folder), fast=True)
    tokenize = getattr(enc, "tokenize", None)
    if tokenize is None:
        from transformers import AutoTokenizer

        from ..embed.encoder import transformer_folder

        hf = AutoTokenizer.from_pretrained(str(transformer_folder(base_folder)), local_files_only=True)
        limit = min(max_len, int(getattr(enc, "max_seq_length", None) or max_len))

        def hf_tokenize(texts: list[str]) -> list[list[int]]:
            return [list(x) for x in hf(texts, truncation=True, max_length=limit)["input_ids"]]

        return hf_tokenize

    def cut(texts: list[str]) -> list[list[int]]:
        out = []
        for ids in tokenize(texts):
            out.append(ids if len(ids) <= max_len else [*ids[: max_len - 1], ids[-1]])
        return out

    return cut


def _batch_tensors(torch: Any, seqs: list[list[int]]) -> tuple[Any, Any]:
    L = max(1, max((len(s) for s in seqs), default=1))
    ids = torch.zeros((len(seqs), L), dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[r, : len(s)] = 1
    return ids, mask


def _mean_pool(torch: Any, model: Any, ids: Any, mask: Any) -> Any:
    out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).to(out.dtype)
    pooled = (out * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def _quiet() -> None:
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()  # type: ignore[no-untyped-call]
        tlog.disable_progress_bar()  # type: ignore[no-untyped-call]
    except Exception:  # noqa: BLE001 - cosmetics only
        pass


def load_lora_model(base_folder: Path, cfg: TrainConfig, init: Path | None = None, *, trainable: bool = True) -> Any:
    """The base BERT (transformers, local files only) with a LoRA on its attention query/value
    projections: fresh (B = 0, so it starts as the base) or the parent version in ``init``."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModel

    from ..embed.encoder import transformer_folder

    _quiet()
    torch.manual_seed(cfg.seed)
    base = AutoModel.from_pretrained(str(transformer_folder(Path(base_folder))), local_files_only=True)
    if init is not None:
        return PeftModel.from_pretrained(base, str(init), is_trainable=trainable)
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=["query", "value"], bias="none")
    return get_peft_model(base, config)


def train_lora(ts: TrainSet, docs: np.ndarray, base_folder: Path, cfg: TrainConfig, *, init: Path | None = None,
               checkpoint: Path | None = None, progress: Progress | None = None,
               accelerate: bool = False) -> TrainResult:
    """Fit a LoRA (rank ``cfg.lora_r``) on the query tower, the base model in ``base_folder``
    (a local sentence-transformers or transformers folder), against every row of ``docs``.

    ``init``: a parent LoRA version's folder for a continual round. Bounded by
    ``cfg.lora_max_steps`` and ``cfg.max_seconds``."""
    import numpy as np
    import torch

    if len(ts) == 0:
        raise ValueError("no training pairs")
    tokenize = _tokenizer(Path(base_folder), max(8, cfg.lora_max_len))
    seqs = tokenize(list(ts.texts))
    tr, va = _split(len(ts), cfg)
    model = load_lora_model(Path(base_folder), cfg, init)
    tr_seqs = [seqs[i] for i in tr]
    va_seqs = [seqs[i] for i in va]
    dim = int(model.get_base_model().config.hidden_size)
    if docs.ndim != 2 or docs.shape[1] != dim:
        raise ValueError(f"doc vectors have shape {docs.shape}, the model {dim} dimensions")

    def encode(m: Any, idx: Any) -> Any:
        ids, mask = _batch_tensors(torch, [tr_seqs[i] for i in idx.tolist()])
        device = idx.device
        return _mean_pool(torch, m, ids.to(device), mask.to(device))

    def val_encode(m: Any) -> Any:
        device = next(m.parameters()).device
        parts = []
        for i in range(0, len(va_seqs), 64):
            ids, mask = _batch_tensors(torch, va_seqs[i:i + 64])
            parts.append(_mean_pool(torch, m, ids.to(device), mask.to(device)))
        return torch.cat(parts)

    extra = "lora:" + (hashlib.sha1(Path(init, "adapter_model.safetensors").read_bytes()).hexdigest() if init else "")
    steps_cap = cfg.lora_max_steps if cfg.lora_max_steps > 0 else cfg.max_steps
    loop = _Loop(
        model=model, encode=encode, n_train=len(tr),
        target=torch.from_numpy(np.asarray(ts.target[tr], np.int64)),
        weight=torch.from_numpy(np.asarray(ts.weight[tr], np.float32)),
        val_encode=val_encode if len(va) else None,
        val_target=torch.from_numpy(np.asarray(ts.target[va], np.int64)),
        val_weight=torch.from_numpy(np.asarray(ts.weight[va], np.float32)),
        docs=torch.from_numpy(np.ascontiguousarray(docs, np.float32)), cfg=cfg, lr=cfg.lora_lr,
        batch=max(1, cfg.lora_batch), epochs=max(1, cfg.lora_epochs), max_steps=steps_cap,
        eval_every=max(1, cfg.lora_eval_every), checkpoint=checkpoint,
        fingerprint=_fingerprint(ts, docs, cfg, extra + str(Path(base_folder).resolve())),
        progress=progress, accelerate=accelerate,
    )
    _, s = _run(loop)
    final = s["model"]
    from peft import get_peft_model_state_dict

    with tempfile.TemporaryDirectory() as tmp:
        final.save_pretrained(tmp)  # peft's own files, as `PeftModel.from_pretrained` reads them
        files = {name: Path(tmp, name).read_bytes() for name in ("adapter_model.safetensors", "adapter_config.json")}
    tensors = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in get_peft_model_state_dict(final).items()}
    return TrainResult(
        form="lora", tensors=tensors, files=files, config={**cfg.to_dict(), "form": "lora"},
        train_loss=s["train_loss"], val_loss=s["val_loss"], base_val_loss=s["base_val_loss"], seconds=s["seconds"],
        steps=s["steps"], resumed_from=s["resumed_from"], stopped=s["stopped"], sources=list(ts.source),
    )


# -- losses for the salience gate ----------------------------------------------------------------


def pair_losses(adapter: LinearAdapter | LoraAdapter | Encoder | None, q: np.ndarray | list[str], target: np.ndarray,
                docs: np.ndarray, tau: float = 0.05) -> np.ndarray:
    """Per-pair cross-entropy (over every doc vector, logits = cosine / tau) under ``adapter``:
    how surprised the current model is by each pair (numpy; no torch).

    ``adapter``: None (the base: ``q`` are base query vectors, used as they are), a LinearAdapter
    (applied to the base vectors ``q``), or an encoder such as an AdaptedEncoder of a LoRA version,
    in which case ``q`` are the query texts, encoded by it."""
    import numpy as np

    from ..embed.adapter import LinearAdapter

    if adapter is None:
        qv = np.asarray(q, np.float32)
    elif isinstance(adapter, LinearAdapter):
        qv = adapter.apply(np.asarray(q, np.float32))
    elif hasattr(adapter, "encode"):
        if isinstance(q, np.ndarray):
            inner = getattr(adapter, "adapter", None)  # an AdaptedEncoder of a linear version: apply to vectors
            if isinstance(inner, LinearAdapter):
                qv = inner.apply(q)
            elif getattr(adapter, "adapter", None) is None:  # the base encoder: the vectors are its own
                qv = np.asarray(q, np.float32)
            else:
                raise ValueError("a LoRA adapter needs the query texts, not vectors")
        else:
            qv = adapter.encode(list(q))
    else:
        raise ValueError("pair_losses needs a LinearAdapter or an encoder for a LoRA version; "
                         f"got {type(adapter).__name__}")
    qv = np.asarray(qv, np.float32)
    n = len(qv)
    target = np.asarray(target, np.int64)
    docs = np.asarray(docs, np.float32)
    out = np.empty(n, np.float32)
    for i in range(0, n, 512):
        logits = (qv[i:i + 512] @ docs.T) / np.float32(tau)
        top = logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
        out[i:i + 512] = lse - logits[np.arange(len(logits)), target[i:i + 512]]
    return out
