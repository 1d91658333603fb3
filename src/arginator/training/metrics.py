"""Metrics, written once: the macro average over the classes present in the scored labels, ECE, and `score`.

A class with no rows in the labels being scored cannot be scored: it is left out of every macro average and listed
in `unscored` (a report says "no test rows"), never averaged in as an F1 of zero. Early stopping, threshold tuning,
evaluation and the compression policy all use `macro_f1` from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_curve,
    precision_recall_fscore_support,
)

from arginator.serving.decide import decide, positive_probability


def present_columns(y: np.ndarray, task: str, num_classes: int) -> list[int]:
    """Indices of the classes with at least one row in the labels `y` (binary: of the two sides, 0 and 1)."""
    if task == "multilabel":
        return [int(j) for j in np.flatnonzero(np.asarray(y).reshape(len(y), -1).sum(axis=0) > 0)]
    return sorted(int(v) for v in np.unique(np.asarray(y).astype(int)))


def macro_f1(y: np.ndarray, predicted: np.ndarray, task: str, num_classes: int) -> float:
    """Macro-F1 over the classes present in `y` (see the module docstring); 0.0 when `y` is empty."""
    present = present_columns(y, task, num_classes)
    if not present:
        return 0.0
    if task == "multilabel":
        y2, p2 = np.asarray(y).astype(int)[:, present], np.asarray(predicted).astype(int)[:, present]
        return float(f1_score(y2, p2, average="macro", zero_division=0))
    return float(f1_score(np.asarray(y).astype(int), predicted, labels=present, average="macro", zero_division=0))


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


def reliability_points(y: np.ndarray, probabilities: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and correctness (0/1) of each decision at the default thresholds; multilabel: one per label."""
    if task == "multilabel":
        points = [reliability_points(t, p, "binary") for p, t in zip(probabilities.T, np.asarray(y).T, strict=True)]
        return np.concatenate([c for c, _ in points]), np.concatenate([k for _, k in points])
    decision = decide(probabilities, task)
    return decision.confidence, (decision.chosen == np.asarray(y).astype(int)).astype(float)


def calibration_error(y: np.ndarray, probabilities: np.ndarray, task: str) -> float:
    """ECE of the decisions at the default thresholds (multilabel: the mean over labels)."""
    if task == "multilabel":
        columns = [calibration_error(t, p, "binary") for p, t in zip(probabilities.T, y.T, strict=True)]
        return float(np.mean(columns))
    return expected_calibration_error(*reliability_points(y, probabilities, task))


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

    Macro averages (F1, PR-AUC) run over the classes present in `y`; the others are listed in `unscored`.
    Multilabel: accuracy is the exact-match ratio, MCC the mean of the present labels' MCCs.
    """
    if task == "binary":
        probabilities = positive_probability(probabilities)
    predicted = decide(probabilities, task, thresholds).chosen
    truth = np.asarray(y).astype(int)
    if task == "multilabel":
        present = present_columns(truth, task, len(classes))
        mcc = float(np.mean([matthews_corrcoef(truth[:, j], predicted[:, j]) for j in present])) if present else 0.0
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
        "macro_f1": macro_f1(truth, predicted, task, len(classes)),
        "mcc": mcc,
        "pr_auc": float(np.mean(defined)) if defined else None,
        "ece": calibration_error(truth, probabilities, task),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
        "pr_auc_per_class": pr_auc,
        "unscored": [name for name, count in zip(classes, support, strict=True) if count == 0],
        "thresholds": thresholds,
    }
    if task != "multiclass" and thresholds and any(t != 0.5 for t in thresholds):
        at_default = decide(probabilities, task).chosen
        metrics["at_threshold_0.5"] = {
            "accuracy": float(accuracy_score(truth, at_default)),
            "macro_f1": macro_f1(truth, at_default, task, len(classes)),
        }
    if task == "multilabel":
        confusion = np.array([confusion_matrix(t, p, labels=[0, 1]) for t, p in zip(truth.T, predicted.T, strict=True)])
    else:
        confusion = confusion_matrix(truth, predicted, labels=labels)
    metrics["confusion_matrix"] = confusion.tolist()
    return Scores(metrics, confusion, curves)


def positive_rate_by_label(
    labels: Sequence[str], probabilities: np.ndarray, thresholds: list[float]
) -> dict[str, dict[str, float | int]]:
    """Binary task: per original label, its rows and the share called positive.

    For a label on the negative side that share is its false-positive rate (e.g. background proteins vs virulence
    factors, the two kinds of negatives of `arg-binary`); on the positive side it is the recall.
    """
    called = decide(positive_probability(probabilities), "binary", thresholds).chosen
    names = np.asarray(labels, dtype=object)
    return {
        str(label): {"n": int((names == label).sum()), "positive_rate": float(called[names == label].mean())}
        for label in sorted(set(names.tolist()))
    }


def threshold_for_recall(y: np.ndarray, positive: np.ndarray, recall: float) -> float:
    """The highest threshold on the positive-class probability that keeps at least `recall` of the positive rows.

    Chosen on validation rows, it gives the operating point a screening user asks for ("find 90% of resistance
    genes"); its false-positive rates are then read on test rows. With no positive row, 0.5.
    """
    scores = np.sort(np.asarray(positive, dtype=np.float64)[np.asarray(y).reshape(-1) == 1])[::-1]
    if not len(scores):
        return 0.5
    needed = min(len(scores), max(1, int(np.ceil(recall * len(scores)))))
    return float(scores[needed - 1])
