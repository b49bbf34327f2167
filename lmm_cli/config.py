"""Typed configuration, read from the store's ``config.toml`` and validated on load.

Unknown keys and values of the wrong type are errors that name the key and the value; a missing
file or key takes the default. Writing config is left to the template copied at ``lmm init``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["CaptureConfig", "ModelsConfig", "RecallConfig", "TrainingConfig", "TRAIN_FORMS", "TRAIN_JUDGES", "Config",
           "load_config", "CONFIG_FILE"]

CONFIG_FILE = "config.toml"


@dataclass(frozen=True)
class CaptureConfig:
    max_file_diff_bytes: int = 8192  # diff text kept per file, after redaction
    max_commit_diff_bytes: int = 131072  # diff text kept per commit, across its files
    max_line_chars: int = 400  # longer diff lines are cut (minified files, lockfiles)
    branches: str = "local"  # "local": HEAD and local branches; "head": HEAD only

    def __post_init__(self) -> None:
        for name in ("max_file_diff_bytes", "max_commit_diff_bytes", "max_line_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"config: capture.{name} must be a positive integer, got {value!r}")
        if self.branches not in ("local", "head"):
            raise ConfigError(f"config: capture.branches must be \"local\" or \"head\", got {self.branches!r}")


@dataclass(frozen=True)
class ModelsConfig:
    # The sentence encoder behind the dense channel: "packaged:all-MiniLM-L6-v2" (ships with lmm,
    # works offline), a local folder, or any sentence-transformers model id from the Hugging Face hub.
    encoder: str = "packaged:all-MiniLM-L6-v2"

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, str) or not self.encoder.strip():
            raise ConfigError(f"config: models.encoder must be a model id or path, got {self.encoder!r}")


@dataclass(frozen=True)
class RecallConfig:
    # Fit recall's fusion weights on this repository's own history, in the background: once the
    # history is long enough (after `lmm init`), then again every `retune_after` new commits.
    auto_tune: bool = True
    tune_holdout: int = 300  # latest non-merge commits held out as the tuning queries (at most half the history)
    retune_after: int = 500  # new commits before an automatic re-tune; 0: tune once, never again

    def __post_init__(self) -> None:
        if not isinstance(self.auto_tune, bool):
            raise ConfigError(f"config: recall.auto_tune must be true or false, got {self.auto_tune!r}")
        if isinstance(self.tune_holdout, bool) or not isinstance(self.tune_holdout, int) or self.tune_holdout < 2:
            raise ConfigError(f"config: recall.tune_holdout must be an integer of at least 2, got {self.tune_holdout!r}")
        if isinstance(self.retune_after, bool) or not isinstance(self.retune_after, int) or self.retune_after < 0:
            raise ConfigError(f"config: recall.retune_after must be a non-negative integer, got {self.retune_after!r}")


TRAIN_FORMS = ("linear", "lora", "both")
TRAIN_JUDGES = ("recall", "dense")


@dataclass(frozen=True)
class TrainingConfig:
    # Train this repository's query adapter in the background (`lmm train` runs a round by hand): a
    # round starts once `min_new_salient` new salient episodes arrived since the last one, or when the
    # repository has been idle `idle_minutes` with anything new. LMM_AUTO_TRAIN=0 turns it off too.
    auto_train: bool = True
    min_new_salient: int = 50  # new episodes of salience ≥ 0.5 before an automatic round
    idle_minutes: int = 30  # no capture for this long, and something new: a round (0: never on idleness)
    forms: str = "linear"  # "linear", "lora" or "both": LoRA is ~50x slower and measured no better
    keep: int = 5  # adapter versions kept on disk (the active one is kept besides)
    max_pairs: int = 3000  # training pairs mined per round, newest first
    threads: int = 2  # CPU threads a round may use (it runs at low priority)
    # What judges a candidate on recent history: "recall" the whole recall as it stood before those
    # commits, which it must clearly improve (and the dense channel not get worse), "dense" the dense
    # channel alone, which it must not make worse.
    judge: str = "recall"

    def __post_init__(self) -> None:
        if not isinstance(self.auto_train, bool):
            raise ConfigError(f"config: train.auto_train must be true or false, got {self.auto_train!r}")
        for name, low in (("min_new_salient", 1), ("idle_minutes", 0), ("keep", 1), ("max_pairs", 10),
                          ("threads", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"config: train.{name} must be an integer of at least {low}, got {value!r}")
        if self.forms not in TRAIN_FORMS:
            raise ConfigError(f"config: train.forms must be one of {', '.join(TRAIN_FORMS)}, got {self.forms!r}")
        if self.judge not in TRAIN_JUDGES:
            raise ConfigError(f"config: train.judge must be one of {', '.join(TRAIN_JUDGES)}, got {self.judge!r}")


@dataclass(frozen=True)
class Config:
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    recall: RecallConfig = field(default_factory=RecallConfig)
    train: TrainingConfig = field(default_factory=TrainingConfig)


def _section(cls: type, name: str, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"config: [{name}] must be a table, got {raw!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"config: unknown key {name}.{key} (known: {', '.join(sorted(known))})")
    return cls(**raw)


def load_config(path: Path) -> Config:
    """Load and validate ``path``; a missing file gives the defaults."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except OSError as e:
        raise ConfigError(f"config: cannot read {path}: {e.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {path} is not valid TOML: {e}") from None
    sections = {"capture": CaptureConfig, "models": ModelsConfig, "recall": RecallConfig, "train": TrainingConfig}
    for key in raw:
        if key not in sections:
            raise ConfigError(f"config: unknown section [{key}] in {path}")
    return Config(**{name: _section(cls, name, raw.get(name, {})) for name, cls in sections.items()})
