"""Fitting: the Lightning Trainer for the FFNN (early stopping, checkpoints, W&B, resume) and the baseline.

What a run directory holds, and how it is read and written, is in `training.runs`. Training is device-agnostic:
`train.accelerator: auto` uses a GPU when there is one; everything written is moved to the CPU first.
`train.strategy: ddp` with `train.devices`/`train.num_nodes` trains data-parallel with Lightning's own strategy; the
processes Lightning launches run this same code, and only the first (global rank 0) writes the run: the others
train their share of each batch and return once fitting ends.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import ConvergenceWarning

from arginator import atomic
from arginator.config import RunConfig
from arginator.data.datamodule import EmbeddingDataModule
from arginator.data.splits import SPLITS, PreparedData, fingerprint, prepare_dataset, write_split
from arginator.errors import ConfigError
from arginator.serving.decide import decide
from arginator.training import runs
from arginator.training.calibration import calibrate, carry_thresholds
from arginator.training.callbacks import ResumableRandomness, checkpoint_callbacks, progress_bar
from arginator.training.contrastive import pretrain_trunk
from arginator.training.loggers import run_loggers, tracking_run
from arginator.training.metrics import macro_f1
from arginator.training.model import EmbeddingClassifier
from arginator.training.network import LogisticBaseline
from arginator.training.novelty import fit_novelty

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where the run landed and what it produced."""

    run_dir: Path
    best_checkpoint: Path
    epochs_trained: int
    tracking_run: Any = None  # the W&B run, still open for the model artifact (None when W&B is disabled)
    primary: bool = True  # False in the extra processes of a multi-device run: they write nothing after fitting


def is_primary_process() -> bool:
    """Whether this is global rank 0 (always, outside multi-process training): the one process that writes the run.

    Read from the launcher's environment (RANK, LOCAL_RANK, SLURM_PROCID), as Lightning does, so it holds before
    the Trainer exists: processes that Lightning's DDP launcher starts re-run the same command.
    """
    from lightning.fabric.utilities.rank_zero import _get_rank

    return (_get_rank() or 0) == 0


def class_weights(y: np.ndarray, task: str, num_classes: int) -> list[float]:
    """Balanced weights: n / (C * count) per class for softmax; negatives per positive for sigmoid heads (<= 100)."""
    if task == "multiclass":
        counts = np.bincount(y, minlength=num_classes).astype(np.float64)
        return (len(y) / (num_classes * np.maximum(counts, 1))).tolist()
    positives = y.reshape(len(y), -1).sum(axis=0)
    return np.clip((len(y) - positives) / np.maximum(positives, 1), 0.01, 100.0).tolist()


def tune_thresholds(y: np.ndarray, probabilities: np.ndarray, task: str) -> list[float]:
    """Per sigmoid output, the threshold in [0.05, 0.95] that maximises F1 on validation (0.5 kept on ties).

    Binary outputs maximise the macro-F1 of the two sides; each multilabel output the F1 of its label.
    """
    if task == "multiclass":
        return []
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    y2, p2 = y.reshape(len(y), -1), probabilities.reshape(len(probabilities), -1)
    thresholds = []
    for column in range(y2.shape[1]):
        truth = y2[:, column].astype(int)

        def f1_at(threshold: float, truth: np.ndarray = truth, column: int = column) -> float:
            chosen = decide(p2[:, column], "binary", [threshold]).chosen
            if task == "binary":
                return macro_f1(truth, chosen, "binary", 2)
            return macro_f1(truth[:, None], chosen[:, None], "multilabel", 1)

        scores = [f1_at(t) for t in grid]
        thresholds.append(0.5 if f1_at(0.5) >= max(scores) else float(grid[int(np.argmax(scores))]))
    return thresholds


def _on_gpu(config: RunConfig) -> bool:
    return config.train.accelerator != "cpu" and torch.cuda.is_available()


def _pretrain(module: EmbeddingClassifier, x: np.ndarray, y: np.ndarray, config: RunConfig) -> None:
    device = "cuda" if _on_gpu(config) else "cpu"
    pretrain_trunk(
        module.net,
        x,
        y,
        config.data.task,
        epochs=config.model.contrastive_epochs,
        batch_size=config.train.batch_size,
        learning_rate=config.train.learning_rate,
        temperature=config.model.contrastive_temperature,
        seed=config.train.seed,
        device=device,
    )


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


def _prepare(
    data_path: Path | str, config: RunConfig, run_dir: Path, resume: bool, split_file: Path | str | None
) -> PreparedData:
    """Read and validate the data and its split without writing anything (a bad input leaves the run untouched)."""
    if split_file is not None and not resume and not Path(split_file).exists():
        raise ConfigError(f"split file not found: {split_file}")
    split = run_dir / runs.SPLIT if resume else Path(split_file) if split_file is not None else None
    return prepare_dataset(data_path, config.data, split, write=False)


def _set_aside(run_dir: Path) -> Path | None:
    """Move an existing run out of the way (to be deleted after success, or restored after a failure)."""
    if not run_dir.exists():
        return None
    if not runs.is_run(run_dir):
        raise ConfigError(f"--overwrite refuses to delete {run_dir}: it is not a run directory")
    aside = run_dir.with_name(f"{run_dir.name}.replaced")
    if aside.exists():  # left by an --overwrite that was killed: it may be the only copy of the old run
        raise ConfigError(f"{aside} exists (an earlier --overwrite was interrupted): keep or delete it, then retry")
    run_dir.rename(aside)
    return aside


def train_run(
    data_path: Path | str | None,
    config: RunConfig | None,
    run_dir: Path,
    resume: bool = False,
    split_file: Path | str | None = None,
    overwrite: bool = False,
    callbacks: list[L.Callback] | None = None,
) -> TrainResult:
    """Train the FFNN and the baseline on `data_path`, writing everything into `run_dir`.

    Args:
        data_path: embeddings in any supported layout; on resume, defaults to the run's own data path.
        config: the run configuration; on resume, defaults to the run's stored `config.yaml`.
        run_dir: the output directory.
        resume: continue from `run_dir/checkpoints/last.ckpt` with the stored split.
        split_file: a split made beforehand (e.g. by `arginator split`), copied into the run and used as is.
        overwrite: replace an existing run in `run_dir`, but only once the new data has been validated; the old run
            is restored if training fails with an error.
        callbacks: extra Lightning callbacks (e.g. a sweep's pruning callback).

    Returns:
        The run directory, best checkpoint and number of epochs trained.
    """
    run_dir = Path(run_dir)
    last_checkpoint = run_dir / runs.CHECKPOINTS / "last.ckpt"
    if resume:
        if not last_checkpoint.exists():
            raise ConfigError(f"nothing to resume: {last_checkpoint} does not exist")
        runs.load_checkpoint_state(last_checkpoint)  # refuses unsafe (pickled-object) checkpoints up front
        config = config or runs.read_config(run_dir)
        data_path = data_path or runs.read_info(run_dir)["data_path"]
    elif not overwrite and ((run_dir / runs.MODEL).exists() or last_checkpoint.exists()):
        raise ConfigError(f"{run_dir} already holds a trained run: pass --resume to continue it, or another --out")
    if config is None or data_path is None:
        raise ConfigError("train_run needs data and a configuration")
    data = _prepare(data_path, config, run_dir, resume, split_file)
    if not is_primary_process():  # a DDP worker: the run directory is rank 0's, which sets it up and writes it
        return _fit(data, data_path, config, run_dir, resume, callbacks or [], distributed=True)
    aside = _set_aside(run_dir) if overwrite and not resume else None
    try:
        result = _fit(data, data_path, config, run_dir, resume, callbacks or [], distributed=True)
    except BaseException:
        if aside is not None:  # put the old run back; the failed attempt is removed
            shutil.rmtree(run_dir, ignore_errors=True)
            if not run_dir.exists():
                aside.rename(run_dir)
            else:
                log.error("could not restore %s: the previous run is kept in %s", run_dir, aside)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return result


def _fit(
    data: PreparedData,
    data_path: Path | str,
    config: RunConfig,
    run_dir: Path,
    resume: bool,
    extra_callbacks: list[L.Callback],
    with_baseline: bool = True,
    distributed: bool = False,
) -> TrainResult:
    """Fit one FFNN (and the baseline) on prepared data into `run_dir`.

    Only `train_run` passes `distributed`: cross-validation folds and sweep trials train one model per process even
    when the configuration asks for several devices (Lightning's DDP launcher would re-run their whole command).
    """
    single = {"strategy": "auto", "devices": 1, "num_nodes": 1}
    parallel = config.train if distributed else config.train.model_copy(update=single)
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    primary = is_primary_process()
    run_dir.mkdir(parents=True, exist_ok=True)
    classes, task = data.targets.classes, config.data.task
    if not resume and primary:
        write_split(data.table, data.split, run_dir / runs.SPLIT)
    if primary:
        runs.write_config(run_dir, config)
    info = {
        "data_path": str(data_path),
        "task": task,
        "classes": classes,
        "input_dim": data.table.embedding_dim,
        "data_fingerprint": fingerprint(data.table),
        "split_sizes": {name: int((data.split == name).sum()) for name in SPLITS},
    }
    if data.outliers is not None:
        info["outliers"] = {
            "source": data.outliers.path,
            "split_sizes": {name: int((data.outliers.split == name).sum()) for name in SPLITS},
            "test_fingerprint": data.outliers.test_fingerprint(),
        }
    if primary:
        runs.write_info(run_dir, info)
    log.info(
        "data: %d rows, %d dims, classes %s, split %s", len(data.table), info["input_dim"], classes, info["split_sizes"]
    )
    x_train, y_train = data.arrays("train")
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
    with_outliers = (
        data.outliers is not None and config.train.outlier_weight > 0 and len(data.outliers.rows("train")) > 0
    )
    if with_outliers:
        module.use_outliers(data.outliers.rows("train"))
    else:  # an unused parameter would stall DDP's gradient reduction; frozen, the optimiser skips it
        module.net.outlier_head.requires_grad_(False)
    if config.model.contrastive == "supcon":
        if not resume:  # a resumed run's trunk comes from its checkpoint
            _pretrain(module, x_train, y_train, config)
        module.freeze_trunk()
    datamodule = EmbeddingDataModule(
        {split: data.arrays(split) for split in ("train", "val")}, config.train.batch_size, seed=config.train.seed
    )
    checkpoint, early_stopping = checkpoint_callbacks(config, run_dir)
    steps_per_epoch = len(datamodule.train_dataloader())
    callbacks: list[L.Callback] = [checkpoint, early_stopping, ResumableRandomness(), *extra_callbacks]
    if config.train.progress_bar:
        callbacks.append(progress_bar(steps_per_epoch))
    trainer = L.Trainer(
        max_epochs=config.train.max_epochs,
        accelerator=config.train.accelerator,
        strategy=parallel.strategy,
        devices=parallel.devices,
        num_nodes=parallel.num_nodes,
        # Each rank takes its share of every batch itself (TensorBatches) and scores all of validation.
        use_distributed_sampler=False,
        # Batch-norm statistics over the whole batch across ranks; torch synchronises them on GPUs only.
        sync_batchnorm=parallel.devices * parallel.num_nodes > 1 and _on_gpu(config),
        deterministic=config.train.deterministic,
        callbacks=callbacks,
        logger=run_loggers(config, run_dir),
        enable_progress_bar=config.train.progress_bar,
        enable_model_summary=config.train.progress_bar,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        default_root_dir=run_dir,
    )
    metrics_csv = run_dir / "logs" / "metrics.csv"
    earlier_epochs = pd.read_csv(metrics_csv) if resume and metrics_csv.exists() else None
    last_checkpoint = run_dir / runs.CHECKPOINTS / "last.ckpt"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*")  # Lightning vs newer torch; harmless
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")  # a frozen trunk, on purpose
        if resume:  # the run's folders exist by design when resuming
            warnings.filterwarnings("ignore", message=r".*exists and is not empty.*")
        trainer.fit(module, datamodule=datamodule, ckpt_path=last_checkpoint if resume else None, weights_only=True)
    if not trainer.is_global_zero:  # a DDP worker: rank 0 evaluates and writes the model
        return TrainResult(run_dir, run_dir / runs.CHECKPOINTS / "best.ckpt", int(trainer.current_epoch), None, False)
    if earlier_epochs is not None and metrics_csv.exists():
        # The CSV logger starts a new file on resume; keep one learning curve for the whole run. Epochs the resumed
        # run repeated (logged before the kill but after the checkpoint) come from the resumed run only.
        later = pd.read_csv(metrics_csv)
        earlier = earlier_epochs[earlier_epochs["epoch"] < later["epoch"].min()] if len(later) else earlier_epochs
        atomic.write_text(metrics_csv, pd.concat([earlier, later], ignore_index=True).to_csv(index=False))
    best = run_dir / runs.CHECKPOINTS / "best.ckpt"
    best = best if best.exists() else last_checkpoint

    # Evaluate the best epoch's weights, not the last epoch's.
    module.load_state_dict(runs.load_checkpoint_state(best)["state_dict"])
    module.cpu().eval()
    x_val, y_val = data.arrays("val")
    thresholds = tune_thresholds(y_val, module.predict_proba(x_val), task) if config.train.tune_thresholds else []
    if config.train.calibrate:  # the thresholds follow the calibration, so every decision stays as it was
        val_groups = data.table.groups[data.split == "val"] if data.table.groups is not None else None
        calibration = calibrate(module, x_val, y_val, val_groups, seed=config.train.seed)
        log.info("calibration (logit scale and bias per output): %s", calibration)
        thresholds = carry_thresholds(thresholds, calibration, task)
    if config.train.novelty_quantile > 0:
        novelty = fit_novelty(
            module.net,
            x_train,
            x_val,
            config.train.novelty_quantile,
            seed=config.train.seed,
            outliers=with_outliers,
            x_val_outliers=data.outliers.rows("val") if with_outliers else None,
        )
        log.info("novelty: %s", novelty)
    runs.save_model(module, thresholds, run_dir / runs.MODEL)
    if with_baseline:
        baseline, baseline_thresholds = fit_baseline(config, data)
        runs.save_baseline(baseline, baseline_thresholds, run_dir / runs.BASELINE)
    shutil.rmtree(run_dir / "lightning_logs", ignore_errors=True)  # Lightning's default folder; loggers are explicit
    return TrainResult(run_dir, best, int(trainer.current_epoch), tracking_run(trainer.loggers))
