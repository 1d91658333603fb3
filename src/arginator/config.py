"""Typed configuration: pydantic schemas for `configs/*.yaml`, YAML loading and `key=value` overrides.

A run's configuration has four sections (`data`, `model`, `train`, `baseline`). Every field has a default, so an
empty config is valid; YAML files and `--set section.key=value` overrides are layered on top, in that order.
Unknown keys and wrong types are errors that name the offending key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from arginator.errors import ConfigError

Task = Literal["multiclass", "binary", "multilabel"]


class _Strict(BaseModel):
    """Base schema: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where the embeddings come from and how they become a labelled, split dataset."""

    task: Task = "multiclass"
    # Per-class HDF5 layout: the class name is the `{label}` part of the file name.
    file_pattern: str = "*_{label}_embeddings.h5"
    # Table layouts (CSV, Parquet, NPZ, or an HDF5 file + labels CSV).
    id_column: str = "id"
    label_column: str = "label"
    group_column: str | None = None
    labels_file: str | None = None
    label_separator: str = ";"
    # Expected embedding size; None accepts whatever the first vector has (and then requires all to match).
    embedding_dim: int | None = Field(default=None, gt=0)
    # Declared classes; when set, any other label in the data is an error (catches typos such as `nonn`).
    classes: list[str] | None = None
    # Binary task: `negative` labels form class 0, the rest (or only `positive`, if given) class 1.
    negative: list[str] | None = None
    positive: list[str] | None = None
    positive_name: str = "positive"
    # Name of class 0 when several labels are negative (default: the labels joined by '+').
    negative_name: str | None = None
    # Outlier exposure: embeddings of inputs the model must call novel (e.g. ordinary proteins of real genomes), and a
    # CSV of their homology groups (`id,group`). Outlier groups are split like the data: the training share teaches a
    # small head of the network to tell them from the data (`train.outlier_weight`), the test share measures it.
    outliers: str | None = None
    outlier_groups: str | None = None
    # Splits.
    val_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    seed: int = 42

    @field_validator("file_pattern")
    @classmethod
    def _pattern_has_label(cls, value: str) -> str:
        if value.count("{label}") != 1:
            raise ValueError("must contain '{label}' exactly once, e.g. 'card_class_{label}_embeddings.h5'")
        return value

    @field_validator("negative", "positive", "classes", mode="before")
    @classmethod
    def _single_to_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class ModelConfig(_Strict):
    """The feed-forward network; the head follows from the task."""

    hidden_sizes: list[int] = Field(default_factory=lambda: [512, 256])
    dropout: float = Field(default=0.2, ge=0, lt=1)
    activation: Literal["relu", "gelu", "silu"] = "relu"
    norm: Literal["none", "batch", "layer"] = "batch"
    # Standardise each input feature with training-set statistics (embeddings' scales vary widely between models).
    standardize: bool = True
    # Pre-train the trunk with the supervised contrastive loss, then train the head alone (`training.contrastive`).
    contrastive: Literal["none", "supcon"] = "none"
    contrastive_temperature: float = Field(default=0.1, gt=0)
    contrastive_epochs: int = Field(default=30, gt=0)

    @field_validator("hidden_sizes")
    @classmethod
    def _positive_sizes(cls, value: list[int]) -> list[int]:
        if any(size <= 0 for size in value):
            raise ValueError("every hidden size must be a positive integer")
        return value


class WandbConfig(_Strict):
    """Experiment tracking. `auto` is online when WANDB_API_KEY is set, otherwise offline."""

    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str = "arginator"


class TrainConfig(_Strict):
    """Optimisation, stopping and reproducibility."""

    max_epochs: int = Field(default=50, gt=0)
    batch_size: int = Field(default=256, gt=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    class_weights: bool = True
    # Chosen on validation macro-F1 over the bundled datasets (docs/training.md): F1 beats the weighted loss.
    patience: int = Field(default=10, ge=1)
    monitor: Literal["val_loss", "val_macro_f1"] = "val_macro_f1"
    seed: int = 42
    deterministic: bool = True
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    # Lightning's own multi-device training (`arginator train` only): e.g. strategy ddp, devices 2 (processes per
    # machine; GPUs, or CPU processes talking over gloo), num_nodes for several machines (launched by torchrun/SLURM).
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    devices: int = Field(default=1, gt=0)
    num_nodes: int = Field(default=1, gt=0)
    # Decision thresholds for sigmoid heads are tuned on the validation split; `false` keeps 0.5.
    tune_thresholds: bool = True
    # Calibrate the FFNN's confidence on validation (temperature scaling for softmax, Platt scaling for sigmoid heads).
    calibrate: bool = True
    # Novelty score (nearest training neighbour in the last hidden layer, input-space Mahalanobis and, with
    # data.outliers, the outlier head) with its threshold at this quantile of validation scores; above it a prediction
    # is flagged `abstained`. 0 turns it off.
    novelty_quantile: float = Field(default=0.99, ge=0, lt=1)
    # Weight of the outlier head's loss (data.outliers) against the classification loss; 0 leaves the head untrained.
    outlier_weight: float = Field(default=0.5, ge=0)
    progress_bar: bool = True
    wandb: WandbConfig = Field(default_factory=WandbConfig)


class BaselineConfig(_Strict):
    """The logistic-regression baseline, fitted on the same training split."""

    c: float = Field(default=1.0, gt=0)
    max_iter: int = Field(default=1000, gt=0)
    class_weight_balanced: bool = True


class RunConfig(_Strict):
    """Everything one training run needs."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)

    @model_validator(mode="after")
    def _binary_needs_one_side(self) -> RunConfig:
        if self.data.negative and self.data.positive and set(self.data.negative) & set(self.data.positive):
            raise ValueError("data.negative and data.positive share labels")
        return self


def _format_validation_error(error: ValidationError, origin: str) -> str:
    """One readable line per problem, each naming the dotted key."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        else:
            lines.append(f"'{key}': {item['msg']} (got {item.get('input')!r})")
    return f"invalid configuration ({origin}): " + "; ".join(lines)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(content).__name__}")
    return content


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(override: str) -> tuple[list[str], Any]:
    """Split `section.key=value` into its key path and a YAML-typed value (`3` -> int, `[1,2]` -> list)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{override}' must look like section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def load_config(
    files: list[Path] | None = None, overrides: list[str] | None = None, base: dict[str, Any] | None = None
) -> RunConfig:
    """Build a validated `RunConfig` from defaults (or `base`), YAML files (in order) and `key=value` overrides.

    Args:
        base: a starting configuration (e.g. a stored run's) instead of the defaults.
        files: YAML files, each a mapping of sections (`data`, `model`, `train`, `baseline`).
        overrides: `section.key=value` strings; values are parsed as YAML.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: a file is missing or malformed, a key is unknown or a value has the wrong type.
    """
    raw: dict[str, Any] = dict(base or {})
    origins = ["stored run"] if base else []
    for path in files or []:
        raw = _deep_merge(raw, _read_yaml(Path(path)))
        origins.append(str(path))
    for override in overrides or []:
        keys, value = parse_override(override)
        nested: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            nested = {key: nested}
        raw = _deep_merge(raw, nested)
        origins.append(f"--set {override}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, ", ".join(origins) or "defaults")) from None


def config_from_dict(raw: dict[str, Any], origin: str) -> RunConfig:
    """Validate a configuration stored alongside a run or a checkpoint."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, origin)) from None
