"""Fitting: the Lightning Trainer for the FFNN (early stopping, checkpoints, W&B, resume) and the baseline.

A run directory holds everything a run produced:

    <run>/config.yaml        resolved configuration
    <run>/run.json           data path, task, classes, input dimension, data fingerprint
    <run>/split.csv          id, label, split, group (reused when the run is resumed)
    <run>/checkpoints/       Lightning checkpoints (best and last; `last.ckpt` is what --resume continues)
    <run>/model.ckpt         the best FFNN: weights + hyperparameters + thresholds (loads with weights_only=True)
    <run>/baseline.json      the logistic-regression baseline, as plain JSON
    <run>/logs/metrics.csv   per-epoch losses (learning curves)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import f1_score

from arginator import __version__
from arginator.config import RunConfig, config_from_dict, save_config
from arginator.data import EmbeddingDataModule, PreparedData, fingerprint, prepare_dataset
from arginator.errors import ConfigError
from arginator.model import EmbeddingClassifier, LogisticBaseline

log = logging.getLogger(__name__)
MODEL_FORMAT = 1


@dataclass
class TrainResult:
    """Where the run landed and what it produced."""

    run_dir: Path
    best_checkpoint: Path
    epochs_trained: int


def class_weights(y: np.ndarray, task: str, num_classes: int) -> list[float]:
    """Balanced weights: n / (C * count) per class for softmax; negatives per positive for sigmoid heads (<= 100)."""
    if task == "multiclass":
        counts = np.bincount(y, minlength=num_classes).astype(np.float64)
        return (len(y) / (num_classes * np.maximum(counts, 1))).tolist()
    positives = y.reshape(len(y), -1).sum(axis=0)
    return np.clip((len(y) - positives) / np.maximum(positives, 1), 0.01, 100.0).tolist()


def tune_thresholds(y: np.ndarray, probabilities: np.ndarray, task: str) -> list[float]:
    """Per sigmoid output, the threshold in [0.05, 0.95] that maximises F1 on validation (0.5 kept on ties)."""
    if task == "multiclass":
        return []
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    y2, p2 = y.reshape(len(y), -1), probabilities.reshape(len(probabilities), -1)
    thresholds = []
    for column in range(y2.shape[1]):
        average = "macro" if task == "binary" else "binary"
        scores = [f1_score(y2[:, column], p2[:, column] >= t, average=average, zero_division=0) for t in grid]
        best = float(grid[int(np.argmax(scores))])
        default_score = f1_score(y2[:, column], p2[:, column] >= 0.5, average=average, zero_division=0)
        thresholds.append(0.5 if default_score >= max(scores) else best)
    return thresholds


def progress_bar(steps_per_epoch: int) -> TQDMProgressBar:
    """A progress bar that redraws about 20 times per epoch: per-step redraws cost ~7% of a fast epoch."""
    return TQDMProgressBar(refresh_rate=max(1, steps_per_epoch // 20))


def resolve_wandb_mode(mode: str) -> str:
    """`auto` is the WANDB_MODE environment variable if set, else online with an API key, else offline."""
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


def _loggers(config: RunConfig, run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(save_dir=run_dir, name="logs", version="")]
    mode = resolve_wandb_mode(config.train.wandb.mode)
    if mode == "disabled":
        return loggers
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover - only without the tracking extra
        log.warning("wandb is not installed; logging to CSV only (pip install 'arginator[tracking]')")
        return loggers
    os.environ.setdefault("WANDB_SILENT", "true")
    loggers.append(
        WandbLogger(
            project=config.train.wandb.project,
            name=run_dir.name,
            save_dir=str(run_dir),
            offline=mode == "offline",
            mode=mode,
            config=config.model_dump(mode="json"),
        )
    )
    return loggers


def read_run_config(run_dir: Path) -> RunConfig:
    """The configuration a run was trained with (`<run>/config.yaml`)."""
    path = run_dir / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml)")
    return config_from_dict(yaml.safe_load(path.read_text()), str(path))


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """The run's metadata (data path, task, classes, input dimension, fingerprint)."""
    path = run_dir / "run.json"
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a trained run directory (no run.json)")
    return json.loads(path.read_text())


def save_model(module: EmbeddingClassifier, thresholds: list[float], path: Path) -> None:
    """Write the FFNN as a plain dict of tensors and primitives, loadable with `torch.load(weights_only=True)`."""
    torch.save(
        {
            "format": MODEL_FORMAT,
            "state_dict": module.net.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "thresholds": thresholds,
            "arginator_version": __version__,
        },
        path,
    )


def load_model(path: Path) -> tuple[EmbeddingClassifier, list[float]]:
    """Rebuild the FFNN and its decision thresholds from `model.ckpt`; no other file is needed."""
    if not path.exists():
        raise ConfigError(f"model file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise ConfigError(f"cannot load {path}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{path} is not an arginator model file (format {MODEL_FORMAT})")
    module = EmbeddingClassifier(**state["hyper_parameters"])
    module.net.load_state_dict(state["state_dict"])
    module.eval()
    return module, list(state["thresholds"])


def fit_baseline(config: RunConfig, data: PreparedData) -> tuple[LogisticBaseline, list[float]]:
    """Fit the logistic-regression baseline on the training split; tune its thresholds on validation like the FFNN."""
    baseline = LogisticBaseline(
        config.data.task,
        data.targets.classes,
        c=config.baseline.c,
        max_iter=config.baseline.max_iter,
        balanced=config.baseline.class_weight_balanced,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        baseline.fit(*data.arrays("train"))
    x_val, y_val = data.arrays("val")
    thresholds = (
        tune_thresholds(y_val, baseline.predict_proba(x_val), config.data.task) if config.train.tune_thresholds else []
    )
    return baseline, thresholds


def train_run(
    data_path: Path | str | None,
    config: RunConfig | None,
    run_dir: Path,
    resume: bool = False,
    split_file: Path | str | None = None,
) -> TrainResult:
    """Train the FFNN and the baseline on `data_path`, writing everything into `run_dir`.

    Args:
        data_path: embeddings in any supported layout; on resume, defaults to the run's own data path.
        config: the run configuration; on resume, defaults to the run's stored `config.yaml`.
        run_dir: the output directory.
        resume: continue from `run_dir/checkpoints/last.ckpt` with the stored split.
        split_file: a split made beforehand (e.g. by `arginator split`), copied into the run and used as is.

    Returns:
        The run directory, best checkpoint and number of epochs trained.
    """
    run_dir = Path(run_dir)
    last_checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if resume:
        if not last_checkpoint.exists():
            raise ConfigError(f"nothing to resume: {last_checkpoint} does not exist")
        config = config or read_run_config(run_dir)
        data_path = data_path or read_run_info(run_dir)["data_path"]
    elif (run_dir / "model.ckpt").exists() or last_checkpoint.exists():
        raise ConfigError(f"{run_dir} already holds a trained run: pass --resume to continue it, or another --out")
    if config is None or data_path is None:
        raise ConfigError("train_run needs data and a configuration")
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    if split_file is not None and not resume:
        if not Path(split_file).exists():
            raise ConfigError(f"split file not found: {split_file}")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(split_file, run_dir / "split.csv")
    data = prepare_dataset(data_path, config.data, run_dir / "split.csv")  # validates before anything is written
    classes, task = data.targets.classes, config.data.task
    x_train, y_train = data.arrays("train")
    save_config(config, run_dir / "config.yaml")
    info = {
        "data_path": str(data_path),  # as given: relative paths keep runs portable with their repository
        "task": task,
        "classes": classes,
        "input_dim": data.table.embedding_dim,
        "data_fingerprint": fingerprint(data.table),
        "split_sizes": {name: int((data.split == name).sum()) for name in ("train", "val", "test")},
        "arginator_version": __version__,
    }
    (run_dir / "run.json").write_text(json.dumps(info, indent=2))
    log.info(
        "data: %d rows, %d dims, classes %s, split %s", len(data.table), info["input_dim"], classes, info["split_sizes"]
    )

    weights = class_weights(y_train, task, len(classes)) if config.train.class_weights else None
    module = EmbeddingClassifier(
        input_dim=data.table.embedding_dim,
        classes=classes,
        task=task,
        model_config=config.model.model_dump(mode="json"),
        train_config=config.train.model_dump(mode="json"),
        class_weights=weights,
    )
    if config.model.standardize and not resume:
        module.net.set_input_statistics(x_train)
    datamodule = EmbeddingDataModule(
        {split: data.arrays(split) for split in ("train", "val")}, config.train.batch_size, seed=config.train.seed
    )
    mode = "min" if config.train.monitor == "val_loss" else "max"
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=config.train.monitor,
        mode=mode,
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    steps_per_epoch = len(datamodule.train_dataloader())
    callbacks: list[L.Callback] = [
        checkpoint,
        EarlyStopping(monitor=config.train.monitor, mode=mode, patience=config.train.patience),
    ]
    if config.train.progress_bar:
        callbacks.append(progress_bar(steps_per_epoch))
    trainer = L.Trainer(
        max_epochs=config.train.max_epochs,
        accelerator=config.train.accelerator,
        devices=1,
        deterministic=config.train.deterministic,
        callbacks=callbacks,
        logger=_loggers(config, run_dir),
        enable_progress_bar=config.train.progress_bar,
        enable_model_summary=config.train.progress_bar,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        default_root_dir=run_dir,
    )
    metrics_csv = run_dir / "logs" / "metrics.csv"
    earlier_epochs = pd.read_csv(metrics_csv) if resume and metrics_csv.exists() else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*")  # Lightning vs newer torch; harmless
        if resume:  # the run's folders exist by design when resuming
            warnings.filterwarnings("ignore", message=r".*exists and is not empty.*")
        trainer.fit(module, datamodule=datamodule, ckpt_path=last_checkpoint if resume else None)
    if earlier_epochs is not None and metrics_csv.exists():
        # The CSV logger starts a new file on resume; keep one learning curve for the whole run.
        pd.concat([earlier_epochs, pd.read_csv(metrics_csv)], ignore_index=True).to_csv(metrics_csv, index=False)
    best = Path(checkpoint.best_model_path or last_checkpoint)

    # Evaluate the best epoch's weights, not the last epoch's.
    best_state = torch.load(best, map_location="cpu", weights_only=False)  # our own checkpoint, written above
    module.load_state_dict(best_state["state_dict"])
    module.cpu().eval()
    x_val, y_val = data.arrays("val")
    thresholds = tune_thresholds(y_val, module.predict_proba(x_val), task) if config.train.tune_thresholds else []
    save_model(module, thresholds, run_dir / "model.ckpt")

    baseline, baseline_thresholds = fit_baseline(config, data)
    state = baseline.to_dict() | {"thresholds": baseline_thresholds}
    (run_dir / "baseline.json").write_text(json.dumps(state))
    for stray in ("lightning_logs",):  # Lightning's default folder, unused because loggers are explicit
        shutil.rmtree(run_dir / stray, ignore_errors=True)
    return TrainResult(run_dir, best, int(trainer.current_epoch))


def load_baseline(path: Path) -> tuple[LogisticBaseline, list[float]]:
    """Rebuild the baseline and its thresholds from `baseline.json`."""
    if not path.exists():
        raise ConfigError(f"baseline file not found: {path}")
    state = json.loads(path.read_text())
    return LogisticBaseline.from_dict(state), list(state.get("thresholds", []))
