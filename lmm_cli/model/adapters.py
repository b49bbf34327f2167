"""Adapter versions on disk: written atomically, switched atomically, the last few kept.

Layout, in ``<store>/adapters/``::

    v0001/ v0002/ …     one trained version each: weights (linear: adapter.safetensors with tensor
                        "W"; lora: peft's adapter_model.safetensors + adapter_config.json) and meta.json
    ACTIVE              one line: the active version's name, or "none" (the base model)
    history.json        the activations, oldest first: what `rollback` steps back through
    LAST                the highest version number ever issued (a dropped name is never reused)

A version is written in ``.tmp-vNNNN/`` and renamed into place, so a listing never shows a half-written
one; ACTIVE is replaced with ``os.replace`` after an fsync, so a kill at any instant leaves either the
old or the new version active, both complete. Anything unreadable (a missing or corrupt version, a
garbled ACTIVE) reads as the base model: recall gets worse by the adapter's gain, never broken.
Nothing here prints; problems go to the ``lmm`` logger at debug level.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadArgument
from ..store.files import fsync_dir, write_synced

if TYPE_CHECKING:
    from ..embed.encoder import Encoder
    from .trainer import TrainResult

__all__ = [
    "KEEP",
    "Version",
    "adapters_dir",
    "list_versions",
    "active_version",
    "save_version",
    "activate",
    "rollback",
    "drop",
    "load_query_encoder",
    "version_dir",
    "version_dict",
]

KEEP = 5  # versions kept on disk (the active one is kept besides, however old)
_NAME = re.compile(r"v(\d{4,})")
_LOG = logging.getLogger("lmm.adapters")


@dataclass
class Version:
    name: str
    form: str
    created: float
    parent: str | None
    base_model: str
    pairs: int
    seen: list[str] = field(repr=False)  # provenance ids of every pair this version and its ancestors trained on
    scores: dict[str, Any] = field(default_factory=dict)  # {"recent": {"incumbent": m, "candidate": m}, "older": …}
    config: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] = field(default_factory=dict)  # the data window: episode ids/times, pair counts
    size_bytes: int = 0
    active: bool = False
    # While the version is active, its channel weighs the dense channel's weight times this
    # (``recall.adapter_weights``): fitted by its round on the whole recall (``rounds._FusedJudge``).
    dense_scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)  # anything else the caller put in meta.json

    @property
    def path(self) -> Path:  # set by list_versions; meaningless on a hand-made Version
        return Path(self.extra.get("_path", ""))


def adapters_dir(store_dir: Path) -> Path:
    return Path(store_dir) / "adapters"


def version_dir(store_dir: Path, name: str) -> Path:
    return adapters_dir(store_dir) / name


# -- small atomic helpers ------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")  # per process: a CLI rollback may race a round
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


# -- reading -------------------------------------------------------------------------------------

_WEIGHTS = {"linear": ("adapter.safetensors",), "lora": ("adapter_model.safetensors", "adapter_config.json")}
_FIELDS = {"form", "created", "parent", "base_model", "pairs", "seen", "scores", "config", "window", "size_bytes",
           "dense_scale"}


def _read_version(path: Path, active: str | None) -> Version | None:
    """The version in ``path``, or None when it is not a complete one."""
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        form = str(meta["form"])
        if form not in _WEIGHTS or not all((path / f).is_file() for f in _WEIGHTS[form]):
            return None
        extra = {k: v for k, v in meta.items() if k not in _FIELDS and k != "name"}
        extra["_path"] = str(path)
        return Version(
            name=path.name, form=form, created=float(meta.get("created", 0.0)), parent=meta.get("parent"),
            base_model=str(meta.get("base_model", "")), pairs=int(meta.get("pairs", 0)),
            seen=[str(s) for s in meta.get("seen", [])], scores=dict(meta.get("scores") or {}),
            config=dict(meta.get("config") or {}), window=dict(meta.get("window") or {}),
            size_bytes=int(meta.get("size_bytes", 0)), active=path.name == active,
            dense_scale=_scale(meta.get("dense_scale", 1.0)), extra=extra,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        _LOG.debug("adapter version %s unreadable: %s", path, e)
        return None


def _scale(value: Any) -> float:
    """A recorded dense scale, or 1 where it is missing or not a sane number."""
    try:
        s = float(value)
    except (TypeError, ValueError):
        return 1.0
    return s if math.isfinite(s) and 0.0 < s <= 10.0 else 1.0


def _active_name(store_dir: Path) -> str | None:
    try:
        text = (adapters_dir(store_dir) / "ACTIVE").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if _NAME.fullmatch(text) else None


def list_versions(store_dir: Path) -> list[Version]:
    """Every complete version, oldest first; half-written or corrupt ones are left out."""
    root = adapters_dir(store_dir)
    try:
        names = [p.name for p in root.iterdir() if _NAME.fullmatch(p.name) and p.is_dir()]
    except OSError:
        return []
    active = _active_name(store_dir)
    out = [v for n in sorted(names, key=lambda n: int(n[1:])) if (v := _read_version(root / n, active)) is not None]
    return out


def active_version(store_dir: Path) -> Version | None:
    """The active version, or None for the base model (also when ACTIVE or the version is unreadable)."""
    name = _active_name(store_dir)
    if name is None:
        return None
    return _read_version(adapters_dir(store_dir) / name, name)


def _get(store_dir: Path, name: str) -> Version:
    v = _read_version(adapters_dir(store_dir) / name, _active_name(store_dir)) if _NAME.fullmatch(name) else None
    if v is None:
        known = ", ".join(x.name for x in list_versions(store_dir)) or "none yet"
        raise BadArgument(f"there is no adapter version {name!r} (versions: {known}); see `lmm adapters`")
    return v


# -- writing -------------------------------------------------------------------------------------


def _next_number(root: Path) -> int:
    highest = 0
    try:
        highest = int((root / "LAST").read_text().strip() or 0)
    except (OSError, ValueError):
        pass
    try:
        for p in root.iterdir():
            m = _NAME.fullmatch(p.name.removeprefix(".tmp-").removeprefix(".del-"))
            if m:
                highest = max(highest, int(m.group(1)))
    except OSError:
        pass
    return highest + 1


def _clean_leftovers(root: Path) -> None:
    """Half-written (``.tmp-*``) and half-deleted (``.del-*``) folders of killed runs."""
    try:
        for p in root.iterdir():
            if p.name.startswith((".tmp-v", ".del-v")) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
    except OSError:
        pass


def save_version(store_dir: Path, result: TrainResult, meta: dict[str, Any], *, keep: int = KEEP) -> Version:
    """Write ``result`` as the next version (not activated) and prune to the last ``keep`` versions
    (never deleting the active one). ``meta`` gives base_model, parent, config, window, scores, seen
    and anything else to record; ``seen`` is extended with the result's pair sources and the parent's
    ``seen``, so a version always knows every pair its weights descend from."""
    import numpy as np
    from safetensors.numpy import save_file

    root = adapters_dir(store_dir)
    root.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(root)
    number = _next_number(root)
    name = f"v{number:04d}"
    tmp = root / f".tmp-{name}"
    tmp.mkdir()
    form = result.form
    if form == "linear":
        data = _save_bytes({"W": np.ascontiguousarray(result.tensors["W"], dtype=np.float32)}, {"form": "linear"})
        write_synced(tmp / "adapter.safetensors", data)
    elif form == "lora":
        for fname, blob in result.files.items():
            write_synced(tmp / fname, blob)
        if not (tmp / "adapter_model.safetensors").is_file():  # a result without peft's files: its tensors
            save_file({k: np.ascontiguousarray(v) for k, v in result.tensors.items()}, str(tmp / "adapter_model.safetensors"))
    else:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"unknown adapter form {form!r}")

    parent = meta.get("parent")
    seen = {str(s) for s in meta.get("seen", [])} | {str(s) for s in getattr(result, "sources", [])}
    if parent:
        pv = _read_version(root / str(parent), None)
        if pv is not None:
            seen |= set(pv.seen)
        else:
            seen |= {str(s) for s in meta.get("parent_seen", [])}
    size = sum(p.stat().st_size for p in tmp.iterdir())
    record: dict[str, Any] = {k: v for k, v in meta.items() if k not in ("parent_seen",)}
    record.update(
        name=name, form=form, created=float(meta.get("created") or time.time()), parent=parent,
        base_model=str(meta.get("base_model", "")), pairs=int(meta.get("pairs", len(getattr(result, "sources", [])))),
        seen=sorted(seen), scores=meta.get("scores") or {}, window=meta.get("window") or {},
        config=meta.get("config") or dict(getattr(result, "config", {}) or {}),
        train={"train_loss": result.train_loss, "val_loss": result.val_loss, "seconds": round(result.seconds, 3),
               "steps": result.steps},
    )
    meta_bytes = json.dumps(record, indent=1, sort_keys=True, default=_json_default).encode()
    record["size_bytes"] = size + len(meta_bytes)
    meta_bytes = json.dumps(record, indent=1, sort_keys=True, default=_json_default).encode()
    record["size_bytes"] = size + len(meta_bytes)  # one more pass: the number's own digits
    write_synced(tmp / "meta.json", json.dumps(record, indent=1, sort_keys=True, default=_json_default).encode())
    fsync_dir(tmp)
    os.rename(tmp, root / name)
    fsync_dir(root)
    _write_atomic(root / "LAST", f"{number}\n".encode())
    _prune(store_dir, keep)
    return _get(store_dir, name)


def _save_bytes(tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.numpy import save

    data: bytes = save(tensors, metadata=metadata)
    return data


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _prune(store_dir: Path, keep: int) -> None:
    versions = list_versions(store_dir)
    active = _active_name(store_dir)
    excess = [v.name for v in versions[: max(0, len(versions) - max(1, keep))] if v.name != active]
    if excess:
        _remove(store_dir, excess)


def _remove(store_dir: Path, names: list[str]) -> None:
    root = adapters_dir(store_dir)
    for n in names:
        src = root / n
        gone = root / f".del-{n}"
        try:
            os.rename(src, gone)  # out of the listing at once; the files go after
        except OSError:
            continue
        shutil.rmtree(gone, ignore_errors=True)
    fsync_dir(root)


def _history(store_dir: Path) -> list[str]:
    try:
        data = json.loads((adapters_dir(store_dir) / "history.json").read_text(encoding="utf-8"))
        return [str(x) for x in data if isinstance(x, str)]
    except (OSError, ValueError, TypeError):
        return []


def _set_active(store_dir: Path, name: str | None, history: list[str]) -> None:
    root = adapters_dir(store_dir)
    root.mkdir(parents=True, exist_ok=True)
    _write_atomic(root / "history.json", json.dumps(history[-100:]).encode())
    _write_atomic(root / "ACTIVE", f"{name or 'none'}\n".encode())


def activate(store_dir: Path, name: str | None) -> None:
    """Make ``name`` the active version (None: the base model); atomic. An unknown name is a BadArgument."""
    if name is not None:
        _get(store_dir, name)
    _set_active(store_dir, name, [*_history(store_dir), name or "none"])


def rollback(store_dir: Path, name: str | None = None) -> Version | None:
    """Back to the version active before the current one (or to ``name``); returns what is active
    now (None: the base). Repeated rollbacks keep stepping back; with nothing earlier, the base."""
    if name is not None:
        activate(store_dir, name)
        return _get(store_dir, name)
    current = _active_name(store_dir) or "none"
    stack = _history(store_dir)
    while stack and stack[-1] == current:
        stack.pop()
    while stack and stack[-1] != "none" and _read_version(adapters_dir(store_dir) / stack[-1], None) is None:
        stack.pop()
    target = stack[-1] if stack and stack[-1] != "none" else None
    _set_active(store_dir, target, stack or ["none"])
    return _get(store_dir, target) if target else None


def drop(store_dir: Path, names: list[str]) -> None:
    """Delete these versions. When the active one is among them, the latest earlier activation that
    remains becomes active (or the base), before anything is deleted."""
    names = [n for n in names if _NAME.fullmatch(n)]
    if not names:
        return
    doomed = set(names)
    current = _active_name(store_dir)
    stack = [n for n in _history(store_dir) if n not in doomed]
    if current in doomed:
        while stack and stack[-1] != "none" and _read_version(adapters_dir(store_dir) / stack[-1], None) is None:
            stack.pop()
        target = stack[-1] if stack and stack[-1] != "none" else None
        _set_active(store_dir, target, stack or ["none"])
    elif stack != _history(store_dir):
        _write_atomic(adapters_dir(store_dir) / "history.json", json.dumps(stack[-100:]).encode())
    _remove(store_dir, [n for n in names if (adapters_dir(store_dir) / n).exists()])


# -- using ---------------------------------------------------------------------------------------


def load_query_encoder(store_dir: Path, base: Encoder) -> Encoder:
    """The query encoder recall should use: the base with the active adapter, or the base itself when
    there is none, it was trained for another model, or it cannot be read."""
    v = active_version(store_dir)
    if v is None:
        return base
    if v.base_model and v.base_model != base.id:
        _LOG.debug("adapter %s was trained on %s, not %s: using the base", v.name, v.base_model, base.id)
        return base
    try:
        from ..embed.adapter import AdaptedEncoder, load_adapter

        return AdaptedEncoder(base, load_adapter(version_dir(store_dir, v.name), v.form), v.name,
                              dense_scale=v.dense_scale)
    except Exception as e:  # noqa: BLE001 - a broken adapter must never break recall
        _LOG.debug("adapter %s unusable: %s", v.name, e)
        return base


def version_dict(v: Version) -> dict[str, Any]:
    """A Version as plain data (for `lmm adapters --json`)."""
    d = asdict(v)
    d.pop("extra", None)
    return d
