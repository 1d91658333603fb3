"""Cross-validation: the FFNN and the baseline on k folds, grouped by homology and random, with their spread.

One number per model hides how much it moves with the split (and, across machines, with the last bits of the
embeddings). Each fold trains both models exactly as `arginator train` does (same code, thresholds tuned and
calibration fitted on the fold's validation rows) and scores them on the fold's test rows. The summary gives mean and
standard deviation over folds of macro-F1, MCC, accuracy, PR-AUC and ECE (before and after calibration), the paired
difference FFNN - baseline with the folds each won, the false-positive rate per negative label of binary tasks, and
the novelty AUROC against out-of-distribution files.

Folds train at once, one per core, in forked worker processes. Each trains on one thread wherever it runs, so the
figures do not depend on how many run together (and a small network trains faster on one thread per fold than on
two threads one fold at a time).
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from arginator import atomic
from arginator.config import RunConfig
from arginator.cores import usable_cores
from arginator.data.folds import fold_split, make_folds
from arginator.data.outliers import fold_outliers, load_outliers, source_name
from arginator.data.readers import read_all
from arginator.data.splits import PreparedData
from arginator.data.tables import EmbeddingTable
from arginator.data.targets import load_task_table
from arginator.errors import ConfigError, DataError
from arginator.serving.decide import positive_probability
from arginator.training import runs
from arginator.training.calibration import uncalibrated
from arginator.training.metrics import positive_rate_by_label, score, threshold_for_recall
from arginator.training.novelty import auroc, resized, threshold_of
from arginator.training.train import _fit

log = logging.getLogger(__name__)
SCORES = ("macro_f1", "mcc", "accuracy", "pr_auc", "ece")
RECALL_TARGET = 0.90  # binary tasks: also report each label's share called positive at this validation recall


def _with_groups(table: EmbeddingTable, split_file: Path) -> EmbeddingTable:
    """The table with the groups stored in a split file (the `group` column `arginator split` writes)."""
    frame = pd.read_csv(split_file, dtype=str, keep_default_na=False)
    groups = dict(zip(frame["id"], frame.get("group", pd.Series([""] * len(frame))), strict=True))
    missing = [i for i in table.ids if i not in groups]
    if missing:
        raise DataError(f"{split_file} has no group for id '{missing[0]}' ({len(missing)} ids)")
    values = np.array([groups[i] for i in table.ids], dtype=object)
    if not all(values):
        raise DataError(f"{split_file} has an empty group column: make it with a grouped split method")
    return EmbeddingTable(table.ids, table.vectors, table.labels, values, table.source)


def _fold_scores(run_dir: Path, data: PreparedData, task: str, ood: dict[str, np.ndarray]) -> dict[str, Any]:
    module, thresholds = runs.load_model(run_dir / runs.MODEL)
    baseline, baseline_thresholds = runs.load_baseline(run_dir / runs.BASELINE)
    classes = data.targets.classes
    x, y = data.arrays("test")
    held = data.split == "test"
    labels = [lab[0] for lab, keep in zip(data.table.labels, held, strict=True) if keep]
    row: dict[str, Any] = {"test_rows": int(held.sum())}
    for name, model, cut in (("ffnn", module, thresholds), ("baseline", baseline, baseline_thresholds)):
        probabilities = model.predict_proba(x)
        metrics = score(y, probabilities, task, classes, cut).metrics
        row[name] = {key: metrics[key] for key in SCORES} | {"unscored": metrics["unscored"]}
        if task == "binary":
            row[name]["by_label"] = positive_rate_by_label(labels, probabilities, cut)
            x_val, y_val = data.arrays("val")  # the screening operating point, chosen on validation rows only
            target = threshold_for_recall(y_val, positive_probability(model.predict_proba(x_val)), RECALL_TARGET)
            row[name]["at_recall_target"] = {
                "recall_target": RECALL_TARGET,
                "threshold": target,
                "by_label": positive_rate_by_label(labels, probabilities, [target]),
            }
    raw = uncalibrated(module).predict_proba(x)
    row["ffnn"]["ece_uncalibrated"] = score(y, raw, task, classes, thresholds).metrics["ece"]
    if data.outliers is not None:  # outliers of groups the fold's model never saw
        ood = ood | {data.outliers.name: data.outliers.rows("test")}
    if threshold_of(module.net) is not None and ood:
        inside = module.predict_novelty(x)
        row["ffnn"]["novelty_auroc"] = {name: auroc(inside, module.predict_novelty(v)) for name, v in ood.items()}
    return row


@dataclass(frozen=True)
class FoldTask:
    """One fold to train and score: everything a worker process needs."""

    kind: str
    fold: int
    folds: int
    data: PreparedData
    data_path: str
    config: RunConfig
    ood: dict[str, np.ndarray]


def fold_workers(tasks: int) -> int:
    """Folds trained at once: one per core this process may use, at most one per fold."""
    return max(1, min(usable_cores(), tasks))


def train_fold(task: FoldTask) -> dict[str, Any]:
    """Train both models on one fold and score them on its test rows, on one thread (BLAS and torch alike).

    Args:
        task: the fold, its data and its configuration.

    Returns:
        The fold's row of `cv.json`: its number, test rows and both models' scores.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1), tempfile.TemporaryDirectory(prefix="arginator-cv-") as tmp:
            run_dir = Path(tmp) / "run"
            _fit(task.data, task.data_path, task.config, run_dir, resume=False, extra_callbacks=[])
            row = {"fold": task.fold} | _fold_scores(run_dir, task.data, task.config.data.task, task.ood)
            shutil.rmtree(run_dir, ignore_errors=True)
            return row
    finally:
        torch.set_num_threads(threads)


_FORKED_TASKS: list[FoldTask] = []  # set before forking: workers read their task here instead of unpickling a copy


def _train_forked(index: int) -> dict[str, Any]:
    return train_fold(_FORKED_TASKS[index])


def _train_folds(tasks: list[FoldTask], workers: int) -> list[dict[str, Any]]:
    """Train and score every task, `workers` processes at a time (1: in this process).

    Args:
        tasks: the folds.
        workers: processes at a time; forked on Linux (they inherit the imports, seconds for torch and Lightning, and
            the data, unpickled), spawned elsewhere.

    Returns:
        One row per task, in the tasks' order. The first failure stops the others.
    """
    global _FORKED_TASKS
    if workers <= 1:
        rows = []
        for task in tasks:
            rows.append(train_fold(task))
            _log_fold(task, rows[-1])
        return rows
    fork = sys.platform == "linux"  # fork elsewhere is unsafe (macOS) or missing (Windows)
    context = multiprocessing.get_context("fork" if fork else "spawn")
    _FORKED_TASKS = tasks if fork else []
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        if fork:
            futures = [pool.submit(_train_forked, i) for i in range(len(tasks))]
        else:
            futures = [pool.submit(train_fold, task) for task in tasks]
        rows = []
        for task, future in zip(tasks, futures, strict=True):
            rows.append(future.result())
            _log_fold(task, rows[-1])
    except BaseException:  # a failed fold or Ctrl-C: no fold still queued starts
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        _FORKED_TASKS = []
    pool.shutdown()
    return rows


def _log_fold(task: FoldTask, row: dict[str, Any]) -> None:
    log.info("%s fold %d/%d: FFNN macro-F1 %.3f", task.kind, task.fold + 1, task.folds, row["ffnn"]["macro_f1"])


def cross_validate(
    data_path: Path | str,
    config: RunConfig,
    groups_file: Path | str | None,
    out_dir: Path | str,
    k: int = 5,
    ood: list[Path | str] | None = None,
    only: tuple[str, ...] = ("grouped", "random"),
    workers: int | None = None,
) -> dict[str, Any]:
    """k-fold cross-validation of both models, grouped by the groups in `groups_file` and random; writes cv.json.

    Args:
        data_path: embeddings in any supported layout (with labels).
        config: the run configuration (W&B logging is switched off for the folds).
        groups_file: a split file with a `group` column (`arginator split`); None runs the random folds only.
        out_dir: where `cv.json` goes.
        k: folds.
        ood: embedding files the model should call novel (files sharing ids with the data are skipped; the
            configured outliers are scored per fold, on the groups the fold held out).
        only: the kinds of folds to run (a sweep re-scores its best trials on the grouped folds only).
        workers: folds trained at once (None: one per core; one on a GPU); the figures are the same for any
            number.

    Returns:
        The content of `cv.json`: per fold and summarised, per kind of folds ("grouped", "random").
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    config = config.model_copy(deep=True)
    config.train.wandb.mode = "disabled"
    config.train.progress_bar = False
    table, targets = load_task_table(data_path, config.data)
    own = set(table.ids.tolist())
    outliers = load_outliers(config.data, table.embedding_dim, table.ids)
    vectors = {}
    for path in ood or []:
        if outliers is not None and outliers.is_source(path):
            continue  # scored per fold, on the outlier groups that fold held out
        chunk = read_all(path)
        if not own & set(chunk.ids):
            vectors[source_name(path)] = resized(chunk.vectors, table.embedding_dim)
    tables = {"random": table}
    if groups_file is not None:
        tables = {"grouped": _with_groups(table, Path(groups_file)), **tables}
    kinds = {kind: kind_table for kind, kind_table in tables.items() if kind in only}
    result: dict[str, Any] = {"k": k, "task": config.data.task, "classes": targets.classes, "data": str(data_path)}
    tasks, untestable = [], {}
    for kind, kind_table in kinds.items():
        folds, untestable[kind] = make_folds(kind_table, k, config.data.seed)
        for fold in range(k):
            fold_config = config.model_copy(deep=True)
            fold_config.train.seed = config.train.seed + fold  # the spread covers the seed as well as the split
            split = fold_split(kind_table, folds, fold, config.data)
            data = PreparedData(kind_table, targets, split, fold_outliers(outliers, k, fold, config.data))
            tasks.append(FoldTask(kind, fold, k, data, str(data_path), fold_config, vectors))
    if config.train.accelerator != "cpu" and torch.cuda.is_available():
        workers = 1  # CUDA cannot be used again in a forked process, and the cores say nothing about GPUs
    rows = _train_folds(tasks, workers or fold_workers(len(tasks)))
    for kind in kinds:
        kind_rows = [row for task, row in zip(tasks, rows, strict=True) if task.kind == kind]
        result[kind] = {"folds": kind_rows, "not_testable": untestable[kind], "summary": summarise(kind_rows)}
    out = Path(out_dir)
    atomic.write_json(out / "cv.json", result)
    return result


def _spread(values: list[float]) -> dict[str, float]:
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if not len(array):
        return {"mean": float("nan"), "sd": float("nan"), "n": 0}
    return {"mean": float(array.mean()), "sd": float(array.std(ddof=1)) if len(array) > 1 else 0.0, "n": len(array)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sd over folds per model and score; the paired FFNN - baseline difference and the folds each won."""
    summary: dict[str, Any] = {}
    for model in ("ffnn", "baseline"):
        summary[model] = {key: _spread([row[model][key] for row in rows]) for key in SCORES}
        labels = sorted({label for row in rows for label in row[model].get("by_label", {})})
        if labels:
            summary[model]["positive_rate_by_label"] = {
                label: _spread([row[model]["by_label"].get(label, {}).get("positive_rate") for row in rows])
                for label in labels
            }
            summary[model]["at_recall_target"] = {
                "recall_target": rows[0][model]["at_recall_target"]["recall_target"],
                "positive_rate_by_label": {
                    label: _spread(
                        [row[model]["at_recall_target"]["by_label"].get(label, {}).get("positive_rate") for row in rows]
                    )
                    for label in labels
                },
            }
    summary["ffnn"]["ece_uncalibrated"] = _spread([row["ffnn"]["ece_uncalibrated"] for row in rows])
    sources = sorted({name for row in rows for name in row["ffnn"].get("novelty_auroc", {})})
    if sources:
        summary["ffnn"]["novelty_auroc"] = {
            name: _spread([row["ffnn"]["novelty_auroc"].get(name) for row in rows]) for name in sources
        }
    differences = [row["ffnn"]["macro_f1"] - row["baseline"]["macro_f1"] for row in rows]
    summary["difference_macro_f1"] = _spread(differences) | {
        "ffnn_won": int(sum(d > 0 for d in differences)),
        "baseline_won": int(sum(d < 0 for d in differences)),
    }
    summary["ece_not_worse_folds"] = int(
        sum(row["ffnn"]["ece"] <= row["ffnn"]["ece_uncalibrated"] + 1e-12 for row in rows)
    )
    return summary
