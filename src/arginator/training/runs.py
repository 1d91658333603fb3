"""Run directories: the one place that reads and writes them, every file atomically.

A run directory holds everything a run produced:

    <run>/config.yaml        resolved configuration (data.labels_file relative to the run directory)
    <run>/run.json           data path (relative to the run directory), task, classes, input dimension, fingerprint
    <run>/split.csv          id, label, split, group (reused when the run is resumed)
    <run>/checkpoints/       Lightning checkpoints (best and last; `last.ckpt` is what --resume continues)
    <run>/model.ckpt         the best FFNN: weights + hyperparameters + thresholds (loads with weights_only=True)
    <run>/baseline.json      the logistic-regression baseline, as plain JSON
    <run>/logs/metrics.csv   per-epoch losses (learning curves)

Paths inside a run are stored relative to the run directory, so a run works from any working directory and moves
with its repository.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch
import yaml

from arginator import __version__, atomic
from arginator.config import RunConfig, config_from_dict
from arginator.errors import ConfigError
from arginator.training.network import ClassifierCore, LogisticBaseline, TrainedClassifier

MODEL_FORMAT = 1
CONFIG, INFO, SPLIT, MODEL, BASELINE = "config.yaml", "run.json", "split.csv", "model.ckpt", "baseline.json"
CHECKPOINTS = "checkpoints"
PATHS_MARKER = "relative to the run directory"
RUN_RELATIVE = ("labels_file", "outliers", "outlier_groups")  # data files a run names, stored relative to it


def relative_to_run(path: Path | str, run_dir: Path) -> str:
    """A relative `path` (from the working directory) as seen from `run_dir`; an absolute path stays absolute."""
    if Path(path).is_absolute():
        return str(path)
    return os.path.relpath(Path(path).absolute(), Path(run_dir).absolute())


def resolve_in_run(path: str, run_dir: Path, run_relative: bool = True) -> str:
    """A path stored in a run (relative to the run directory) as a path usable from the working directory.

    Runs written before paths became run-relative (no `paths` marker in run.json) stored them relative to the
    working directory; they are returned as they are.
    """
    if Path(path).is_absolute() or not run_relative:
        return path
    return os.path.normpath(Path(run_dir).absolute() / path)


def write_config(run_dir: Path, config: RunConfig) -> None:
    """Store the resolved configuration, its data files (labels, outliers) relative to the run directory."""
    data = config.data
    paths = {name: getattr(data, name) for name in RUN_RELATIVE if getattr(data, name) is not None}
    data = data.model_copy(update={name: relative_to_run(path, run_dir) for name, path in paths.items()})
    content = config.model_copy(update={"data": data}).model_dump(mode="json")
    atomic.write_text(run_dir / CONFIG, yaml.safe_dump(content, sort_keys=False))


def read_config(run_dir: Path) -> RunConfig:
    """The configuration a run was trained with, its data files usable from the working directory."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run directory (no {CONFIG})")
    config = config_from_dict(yaml.safe_load(path.read_text()), str(path))
    relative = _run_relative(run_dir)
    for name in RUN_RELATIVE:
        if getattr(config.data, name) is not None:
            setattr(config.data, name, resolve_in_run(getattr(config.data, name), Path(run_dir), relative))
    return config


def _run_relative(run_dir: Path) -> bool:
    """Whether the run stores paths relative to itself (every run written since the marker exists)."""
    path = Path(run_dir) / INFO
    return not path.exists() or json.loads(path.read_text()).get("paths") == PATHS_MARKER


def write_info(run_dir: Path, info: dict[str, Any]) -> None:
    """Store the run's metadata, its data path relative to the run directory."""
    stored = info | {
        "data_path": relative_to_run(info["data_path"], run_dir),
        "paths": PATHS_MARKER,
        "arginator_version": __version__,
    }
    atomic.write_json(run_dir / INFO, stored)


def read_info(run_dir: Path) -> dict[str, Any]:
    """The run's metadata (data path usable from the working directory, task, classes, input dimension, ...)."""
    path = Path(run_dir) / INFO
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a trained run directory (no {INFO})")
    info = json.loads(path.read_text())
    return info | {"data_path": resolve_in_run(info["data_path"], Path(run_dir), _run_relative(run_dir))}


def save_model(module: ClassifierCore, thresholds: list[float], path: Path) -> None:
    """Write the FFNN as a plain dict of tensors and primitives, loadable with `torch.load(weights_only=True)`."""
    buffer = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in module.net.state_dict().items()}
    torch.save(
        {
            "format": MODEL_FORMAT,
            "state_dict": state,
            "hyper_parameters": dict(module.hparams),
            "thresholds": thresholds,
            "arginator_version": __version__,
        },
        buffer,
    )
    with atomic.atomic_path(path) as temporary:
        temporary.write_bytes(buffer.getvalue())


def load_model(path: Path) -> tuple[TrainedClassifier, list[float]]:
    """Rebuild the FFNN (on the CPU, eval mode) and its decision thresholds from `model.ckpt`."""
    if not path.exists():
        raise ConfigError(f"model file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise ConfigError(f"cannot load {path}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{path} is not an arginator model file (format {MODEL_FORMAT})")
    try:
        module = TrainedClassifier(**state["hyper_parameters"])
    except (TypeError, KeyError, ValueError) as exc:  # hyperparameters of another version, or damaged
        raise ConfigError(f"{path}: cannot rebuild the network from its hyperparameters ({exc})") from None
    # Models saved before calibration existed lack its buffers: they load with the identity (uncalibrated); models
    # saved before outlier exposure lack the outlier head, which then stays out of their novelty score.
    missing, unexpected = module.net.load_state_dict(state["state_dict"], strict=False)
    if unexpected or set(missing) - {"output_scale", "output_bias", "outlier_head.weight", "outlier_head.bias"}:
        raise ConfigError(f"{path}: weights do not fit the network (missing {missing}, unexpected {unexpected})")
    module.eval()
    return module, list(state["thresholds"])


def save_baseline(baseline: LogisticBaseline, thresholds: list[float], path: Path) -> None:
    """Write the baseline and its thresholds as JSON."""
    atomic.write_json(path, baseline.to_dict() | {"thresholds": thresholds}, indent=None)


def load_baseline(path: Path) -> tuple[LogisticBaseline, list[float]]:
    """Rebuild the baseline and its thresholds from `baseline.json`."""
    if not path.exists():
        raise ConfigError(f"baseline file not found: {path}")
    try:
        state = json.loads(path.read_text())
        return LogisticBaseline.from_dict(state), list(state.get("thresholds", []))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read {path}: not an arginator baseline ({exc})") from None


def is_run(run_dir: Path) -> bool:
    """Whether `run_dir` looks like a run directory (so that --overwrite may replace it)."""
    return (Path(run_dir) / CONFIG).exists()


def load_checkpoint_state(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint's contents, loaded without unpickling arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unsafe or corrupt file: say so instead of running what it holds
        raise ConfigError(f"cannot load checkpoint {path} safely (weights only): {exc}") from None
