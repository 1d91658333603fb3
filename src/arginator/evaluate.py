"""Metrics on held-out data for the FFNN and the baseline, the comparison between them, and `metrics.json`.

Both models are scored on the same rows with the same code. Sigmoid heads use the decision thresholds tuned on the
validation split at training time; the figures at the default 0.5 are reported beside them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_curve,
    precision_recall_fscore_support,
)

from arginator import visualize
from arginator.data import encode_targets, load_embeddings, prepare_dataset
from arginator.errors import DataError
from arginator.train import load_baseline, load_model, read_run_config, read_run_info

log = logging.getLogger(__name__)
MODELS = ("ffnn", "baseline")
HEADLINE = ("accuracy", "macro_f1", "mcc", "pr_auc", "ece")


def predict_labels(probabilities: np.ndarray, task: str, thresholds: list[float] | None = None) -> np.ndarray:
    """Class indices (multiclass), 0/1 (binary) or a 0/1 matrix (multilabel) from probabilities and thresholds."""
    if task == "multiclass":
        return probabilities.argmax(axis=1)
    cut = np.asarray(thresholds if thresholds else [0.5] * (1 if task == "binary" else probabilities.shape[1]))
    return (probabilities >= (cut[0] if task == "binary" else cut)).astype(int)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def _calibration(y: np.ndarray, probabilities: np.ndarray, task: str) -> float:
    if task == "multiclass":
        return expected_calibration_error(probabilities.max(axis=1), (probabilities.argmax(axis=1) == y).astype(float))
    if task == "binary":
        confidence = np.maximum(probabilities, 1 - probabilities)
        return expected_calibration_error(confidence, ((probabilities >= 0.5) == y).astype(float))
    columns = [
        expected_calibration_error(np.maximum(p, 1 - p), ((p >= 0.5) == t).astype(float))
        for p, t in zip(probabilities.T, y.T, strict=True)
    ]
    return float(np.mean(columns))


def _one_vs_rest(
    y: np.ndarray, probabilities: np.ndarray, task: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class binary truth and scores: (n, C) each; binary uses the positive class only."""
    if task == "multiclass":
        return np.eye(num_classes)[y], probabilities
    if task == "binary":
        return y.reshape(-1, 1), probabilities.reshape(-1, 1)
    return y, probabilities


@dataclass
class Scores:
    """Metrics of one model on one set of rows, plus the curve data its figures need."""

    metrics: dict[str, Any]
    confusion: np.ndarray
    pr_curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def score(y: np.ndarray, probabilities: np.ndarray, task: str, classes: list[str], thresholds: list[float]) -> Scores:
    """All metrics of one model: accuracy, macro-F1, MCC, per-class P/R/F1, PR-AUC, ECE and the confusion matrix.

    Multilabel: accuracy is the exact-match ratio, MCC the mean of per-label MCCs.
    """
    predicted = predict_labels(probabilities, task, thresholds)
    truth = y.astype(int) if task != "multiclass" else y
    if task == "multilabel":
        mcc = float(np.mean([matthews_corrcoef(t, p) for t, p in zip(truth.T, predicted.T, strict=True)]))
        labels = None
    else:
        mcc = float(matthews_corrcoef(truth, predicted))
        labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=labels, zero_division=0)
    truth_ovr, scores_ovr = _one_vs_rest(truth, probabilities, task, len(classes))
    positive_names = [classes[1]] if task == "binary" else classes
    pr_auc: dict[str, float | None] = {}
    curves = {}
    for column, name in enumerate(positive_names):
        if truth_ovr[:, column].any():
            pr_auc[name] = float(average_precision_score(truth_ovr[:, column], scores_ovr[:, column]))
            curve_precision, curve_recall, _ = precision_recall_curve(truth_ovr[:, column], scores_ovr[:, column])
            curves[name] = (curve_recall, curve_precision)
        else:
            pr_auc[name] = None  # undefined without positives
    defined = [value for value in pr_auc.values() if value is not None]
    metrics: dict[str, Any] = {
        "n": len(y),
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        "mcc": mcc,
        "pr_auc": float(np.mean(defined)) if defined else None,
        "ece": _calibration(truth, probabilities, task),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
        "pr_auc_per_class": pr_auc,
        "thresholds": thresholds,
    }
    if task != "multiclass" and thresholds and any(t != 0.5 for t in thresholds):
        at_default = predict_labels(probabilities, task, None)
        metrics["at_threshold_0.5"] = {
            "accuracy": float(accuracy_score(truth, at_default)),
            "macro_f1": float(f1_score(truth, at_default, labels=labels, average="macro", zero_division=0)),
        }
    if task == "multilabel":
        confusion = np.array([confusion_matrix(t, p, labels=[0, 1]) for t, p in zip(truth.T, predicted.T, strict=True)])
    else:
        confusion = confusion_matrix(truth, predicted, labels=labels)
    metrics["confusion_matrix"] = confusion.tolist()
    return Scores(metrics, confusion, curves)


def evaluate_run(
    run_dir: Path | str, data_path: Path | str | None = None, report_dir: Path | str | None = None
) -> dict[str, Any]:
    """Score both models of a run on its test split (or on every row of `data_path`); write metrics, figures, report.

    Args:
        run_dir: a directory written by `train_run`.
        data_path: optional external labelled data in any supported layout; its labels must be known to the model.
        report_dir: where metrics.json, figures/ and report.md go (default: the run directory).

    Returns:
        The content written to `<run>/metrics.json`.
    """
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    config = read_run_config(run_dir)
    module, thresholds = load_model(run_dir / "model.ckpt")
    baseline, baseline_thresholds = load_baseline(run_dir / "baseline.json")
    classes, task = info["classes"], info["task"]
    if data_path is None:
        data = prepare_dataset(info["data_path"], config.data, run_dir / "split.csv", classes=classes)
        x, y = data.arrays("test")
        evaluated_on = {"data": info["data_path"], "rows": "test split", "n": len(x)}
    else:
        table = load_embeddings(data_path, config.data.model_copy(update={"classes": None, "embedding_dim": None}))
        if table.embedding_dim != info["input_dim"]:
            raise DataError(
                f"expected {info['input_dim']} values per row (the model's input), "
                f"got {table.embedding_dim} ({Path(data_path).name})"
            )
        targets = encode_targets(table, config.data, classes=classes)
        x, y = table.vectors[targets.keep], targets.y
        evaluated_on = {"data": str(data_path), "rows": "all", "n": len(x)}
    log.info("evaluating on %d rows of %s", len(x), evaluated_on["data"])
    results = {
        "ffnn": score(y, module.predict_proba(x), task, classes, thresholds),
        "baseline": score(y, baseline.predict_proba(x), task, classes, baseline_thresholds),
    }
    metrics: dict[str, Any] = {name: results[name].metrics for name in MODELS}
    metrics["evaluated_on"] = evaluated_on | {"task": task, "classes": classes}
    out = Path(report_dir) if report_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_pr_curve_data({name: results[name].pr_curves for name in MODELS}, out / "pr_curves.csv")

    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    visualize.confusion_matrices(
        {name: results[name].confusion for name in MODELS}, classes, task, figures / "confusion_matrix.png"
    )
    visualize.pr_curves({name: results[name].pr_curves for name in MODELS}, figures / "pr_curves.png")
    visualize.learning_curves(run_dir / "logs" / "metrics.csv", figures / "learning_curves.png")
    write_report(metrics, out / "report.md")
    return metrics


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_pr_curve_data(
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], path: Path, max_points: int = 200
) -> None:
    """Precision-recall points as a long table (model, class, recall, precision), for `dvc plots`.

    Curves are thinned to at most `max_points` evenly spaced points each, which keeps the file small enough for git.
    """
    frames = []
    for model, per_class in curves.items():
        for cls, (recall, precision) in per_class.items():
            keep = np.unique(np.linspace(0, len(recall) - 1, min(max_points, len(recall))).round().astype(int))
            frames.append(
                pd.DataFrame({"model": model, "class": cls, "recall": recall[keep], "precision": precision[keep]})
            )
    table = pd.concat(frames) if frames else pd.DataFrame(columns=["model", "class", "recall", "precision"])
    table.round(5).to_csv(path, index=False)


def results_table(reports_dir: Path | str) -> str:
    """Markdown table of every `<reports>/<dataset>-<split>/metrics.json`: FFNN vs baseline, grouped vs random split."""
    rows = []
    runs = sorted((path.parent.name.rpartition("-")[::2], path) for path in Path(reports_dir).glob("*/metrics.json"))
    for (dataset, split), path in runs:
        metrics = json.loads(path.read_text())
        for model in MODELS:
            m = metrics[model]
            figures = f"{m['n']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {m['mcc']:.3f}"
            rows.append(f"| {dataset} | {split} | {model} | {figures} |")
    header = ["| dataset | split | model | test rows | accuracy | macro-F1 | MCC |", "|---|---|---|---|---|---|---|"]
    return "\n".join(header + rows) + "\n"


def write_report(metrics: dict[str, Any], path: Path) -> None:
    """A short Markdown report: the comparison table, per-class figures and the figures' files."""
    meta = metrics["evaluated_on"]
    lines = [
        "# arginator run report",
        "",
        f"Task **{meta['task']}** on {meta['n']} rows ({meta['rows']}) of `{meta['data']}`; "
        f"classes: {', '.join(meta['classes'])}.",
        "",
        "| model | " + " | ".join(HEADLINE) + " |",
        "|---|" + "---|" * len(HEADLINE),
    ]
    for name in MODELS:
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics[name][key]) for key in HEADLINE) + " |")
    delta = metrics["ffnn"]["macro_f1"] - metrics["baseline"]["macro_f1"]
    lines += ["", f"FFNN minus baseline, macro-F1: {delta:+.3f}.", ""]
    for name in MODELS:
        if "at_threshold_0.5" in metrics[name]:
            fixed = metrics[name]["at_threshold_0.5"]
            lines.append(
                f"{name}: thresholds tuned on validation {metrics[name]['thresholds']}; "
                f"at 0.5 accuracy {fixed['accuracy']:.3f}, macro-F1 {fixed['macro_f1']:.3f}."
            )
    lines += [
        "",
        "## Per class (FFNN | baseline)",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for cls, ffnn in metrics["ffnn"]["per_class"].items():
        base = metrics["baseline"]["per_class"][cls]
        lines.append(
            f"| {cls} | {ffnn['precision']:.3f} \\| {base['precision']:.3f} "
            f"| {ffnn['recall']:.3f} \\| {base['recall']:.3f} "
            f"| {ffnn['f1']:.3f} \\| {base['f1']:.3f} | {ffnn['support']} |"
        )
    lines += [
        "",
        "## Figures",
        "",
        "![confusion matrices](figures/confusion_matrix.png)",
        "![precision-recall curves](figures/pr_curves.png)",
        "![learning curves](figures/learning_curves.png)",
        "",
    ]
    path.write_text("\n".join(lines))
