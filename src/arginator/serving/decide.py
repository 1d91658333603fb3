"""The decision rule, written once: probabilities -> labels, with thresholds, confidence and abstention.

Training (validation F1 per epoch, threshold tuning), evaluation, compression, the Predictor and the API all call
`decide`, so a label means the same thing everywhere.

Probability layouts accepted (what the different producers return):
- multiclass: (n, C) softmax rows;
- binary: P(positive) as (n,), (n, 1) (the ONNX head) or (n, 2) columns (negative, positive);
- multilabel: (n, C) independent sigmoid outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASKS = ("multiclass", "binary", "multilabel")
DEFAULT_THRESHOLD = 0.5


@dataclass
class Decision:
    """The decision for a batch.

    Attributes:
        chosen: class indices (multiclass), 0/1 (binary: 1 is the positive class) or a 0/1 (n, C) matrix (multilabel).
        confidence: the top probability (multiclass), the probability of the chosen side (binary), the least certain
            label's (multilabel).
        abstained: rows whose confidence is below the `min_confidence` given to `decide`, or that are novel.
        novel: rows whose novelty score is above the model's novelty threshold (all False without one).
    """

    chosen: np.ndarray
    confidence: np.ndarray
    abstained: np.ndarray
    novel: np.ndarray


def positive_probability(probabilities: np.ndarray) -> np.ndarray:
    """P(positive) as (n,) from any binary layout: (n,), (n, 1) or (n, 2) (negative, positive)."""
    p = np.asarray(probabilities)
    if p.ndim == 1:
        return p
    if p.ndim == 2 and p.shape[1] in (1, 2):
        return p[:, -1]
    raise ValueError(f"binary probabilities must have shape (n,), (n, 1) or (n, 2), got {p.shape}")


def thresholds_for(task: str, num_classes: int, thresholds: list[float] | None) -> np.ndarray:
    """Per-output thresholds: the tuned ones if given, else 0.5 (one for binary, one per class for multilabel)."""
    outputs = 1 if task == "binary" else num_classes
    values = list(thresholds) if thresholds else [DEFAULT_THRESHOLD] * outputs
    if task != "multiclass" and len(values) != outputs:
        raise ValueError(f"a {task} model over {num_classes} classes needs {outputs} threshold(s), got {len(values)}")
    return np.asarray(values, dtype=np.float64)  # compared as given: a float32 cast would move 0.3 above 0.3


def decide(
    probabilities: np.ndarray,
    task: str,
    thresholds: list[float] | None = None,
    min_confidence: float = 0.0,
    novelty: np.ndarray | None = None,
    novelty_threshold: float | None = None,
) -> Decision:
    """Labels from probabilities: argmax for multiclass, `p >= threshold` per sigmoid output otherwise.

    Args:
        probabilities: see the module docstring for the accepted layouts.
        task: multiclass, binary or multilabel.
        thresholds: decision thresholds of the sigmoid outputs (tuned on validation); None or empty means 0.5.
        min_confidence: rows whose confidence is below this are flagged as abstained (their label is still given).
        novelty: the model's novelty score per row; rows above `novelty_threshold` are novel and abstained ("I don't
            know": unlike the training data, however confident the classifier is).
        novelty_threshold: the model's threshold (its metadata); None disables the novelty check.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}'; expected one of {TASKS}")
    p = np.asarray(probabilities)
    if task == "multiclass":
        chosen = p.argmax(axis=1)
        confidence = p.max(axis=1)
    elif task == "binary":
        positive = positive_probability(p)
        chosen = (positive >= thresholds_for(task, 2, thresholds)[0]).astype(np.int64)
        confidence = np.where(chosen == 1, positive, 1.0 - positive)
    else:
        chosen = (p >= thresholds_for(task, p.shape[1], thresholds)).astype(np.int64)
        confidence = np.where(chosen == 1, p, 1.0 - p).min(axis=1)
    novel = np.zeros(len(chosen), dtype=bool)
    if novelty is not None and novelty_threshold is not None:
        novel = np.asarray(novelty).reshape(len(chosen)) > novelty_threshold
    return Decision(chosen, confidence, (confidence < min_confidence) | novel, novel)


def label_names(chosen: np.ndarray, task: str, classes: list[str]) -> list[str]:
    """Class names of a decision; multilabel rows become `;`-joined names (empty when no label is on)."""
    if task == "multilabel":
        return [";".join(classes[j] for j in np.flatnonzero(row)) for row in chosen]
    return np.asarray(classes, dtype=object)[chosen].tolist()
