"""Novelty: a score that says "this input is unlike the training data", and the threshold above which it abstains.

Up to three components, each divided by its limit, and their maximum is the score:
- **nearest training neighbour in the network's last hidden layer** (Euclidean), over its largest validation value;
- **Mahalanobis distance in input space** with a Ledoit-Wolf shrunk covariance (per dimension), over its largest
  validation value. The hidden layer can map a vector with the right per-feature ranges but broken correlations (or
  another embedder's vector) close to training features; the input-space distance catches those;
- **the outlier head's probability** (models trained with `data.outliers`), over its `quantile` on validation rows.

Why the outlier head: a distance to the training data cannot tell an unseen family of a training class from an
ordinary protein, both are new. On the drug-class data's grouped folds, the two distances alone separated held-out
ordinary proteins from test-fold resistance proteins with AUROC 0.80 +- 0.08; a head trained on the training folds'
ordinary proteins (other homology groups) learns what the distances cannot. Random, constant and shuffled vectors,
which the head never saw, stay flagged by the distances.

Among real proteins the head knows better than the distances, which also rise for unseen resistance families. So with
outliers, each distance's limit is its largest value on validation rows *and validation outliers* (groups the head
never trained on): a distance flags only inputs farther than any real protein seen in validation, and the head
decides among real ones.

The threshold is the `quantile` (default 0.99) of the score on validation rows, so about 1% of new in-distribution
inputs are flagged. Everything is stored in the network's buffers: checkpoint, ONNX graph (a second output,
`novelty`) and metadata carry it, and serving needs nothing else. The bank holds at most `max_bank` rows (a seeded
random sample of the training features beyond that), which bounds the model's size and the cost per prediction.
(k-means centroids in place of the sample took 30 of the 45 s of a 12,000-row fit.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from torch import nn

DEFAULT_QUANTILE = 0.99
MAX_BANK = 4096


@torch.no_grad()
def fit_novelty(
    net: nn.Module,
    x_train: np.ndarray,
    x_val: np.ndarray,
    quantile: float = DEFAULT_QUANTILE,
    max_bank: int = MAX_BANK,
    seed: int = 0,
    outliers: bool | None = None,
    x_val_outliers: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit the novelty buffers of an `FFNN` (eval mode) on training rows; set its limits and threshold on validation.

    Args:
        net: the network; its novelty buffers are set in place.
        x_train: training rows (the feature bank and the Mahalanobis statistics).
        x_val: validation rows (the components' limits and the threshold).
        quantile: the threshold's quantile of validation scores (and the outlier probability's limit).
        max_bank: most training rows kept in the bank (a seeded sample beyond).
        seed: the bank sample's seed.
        outliers: whether the outlier head was trained and counts; None keeps what the network already does (a copy
            of a fitted network, e.g. a pruned one, refitted).
        x_val_outliers: validation-split outliers (models trained with outliers): real inputs of groups the head never
            saw. The distances' limits cover them too, so that among real proteins the head decides.

    Returns:
        A summary: bank rows, the components' limits, the threshold and the share of validation rows above it.
    """
    net = net.cpu().eval()
    if outliers is None:
        outliers = bool(torch.isfinite(net.novelty_scale[2]))
    train = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    features = net.features(train).numpy().astype(np.float64)
    if len(features) > max_bank:
        rows = np.sort(np.random.default_rng(seed).choice(len(features), size=max_bank, replace=False))
        features = features[rows]
    bank = torch.from_numpy(features.astype(np.float32))
    net.novelty_bank = bank
    net.novelty_bank_sq = (bank * bank).sum(dim=1)
    z = ((train - net.input_mean) / net.input_scale).numpy().astype(np.float64)
    shrunk = LedoitWolf().fit(z)
    eigenvalues, eigenvectors = np.linalg.eigh(shrunk.covariance_)
    whitener = eigenvectors / np.sqrt(np.maximum(eigenvalues, 1e-12))  # (z - m) W W^T (z - m)^T = Mahalanobis^2
    net.novelty_mean.copy_(torch.from_numpy(shrunk.location_.astype(np.float32)))
    net.novelty_whitener.copy_(torch.from_numpy(whitener.astype(np.float32)))
    val = torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32))
    nearest, mahalanobis, outlier = (component.numpy() for component in net.novelty_components(val))
    distances = [nearest, mahalanobis]
    if outliers and x_val_outliers is not None and len(x_val_outliers):
        rows = torch.from_numpy(np.ascontiguousarray(x_val_outliers, dtype=np.float32))
        distances = [np.r_[d, c.numpy()] for d, c in zip(distances, net.novelty_components(rows)[:2], strict=True)]
    limits = [max(float(d.max()), 1e-12) for d in distances]
    limits.append(max(float(np.quantile(outlier, quantile)), 1e-12) if outliers else float("inf"))
    net.novelty_scale.copy_(torch.tensor(limits))
    scores = net.novelty(val).numpy()
    threshold = float(np.quantile(scores, quantile))
    net.novelty_threshold.fill_(threshold)
    return {
        "bank_rows": len(bank),
        "limits": [limit if np.isfinite(limit) else None for limit in limits],  # None: no outlier head
        "quantile": quantile,
        "threshold": threshold,
        "val_flagged": float((scores > threshold).mean()),
    }


def threshold_of(net: nn.Module) -> float | None:
    """The fitted novelty threshold, or None when the network has no novelty model."""
    return float(net.novelty_threshold.item()) if net.novelty_bank.shape[0] else None


def resized(x: np.ndarray, dim: int) -> np.ndarray:
    """Vectors cut or zero-padded to `dim` values: another embedder's vectors, fed to this model as a probe."""
    if x.shape[1] >= dim:
        return np.ascontiguousarray(x[:, :dim])
    return np.pad(x, ((0, 0), (0, dim - x.shape[1])))


def probes(reference: np.ndarray, seed: int = 0, rows: int = 200) -> dict[str, np.ndarray]:
    """Inputs no embedder produces, each of which must be flagged novel.

    `reference` (in-distribution rows, e.g. the test split) sets the scale: Gaussian noise with its overall mean and
    sd; constant vectors (0, 1, its overall mean); and its columns shuffled independently (every value in range,
    every per-feature distribution right, the correlations between features gone).
    """
    rng = np.random.default_rng(seed)
    dim = reference.shape[1]
    mean, sd = float(reference.mean()), float(reference.std())
    shuffled = np.stack([rng.permutation(reference[:, j]) for j in range(dim)], axis=1)
    return {
        "gaussian noise": rng.normal(mean, sd, (rows, dim)).astype(np.float32),
        "uniform noise": rng.uniform(mean - 3 * sd, mean + 3 * sd, (rows, dim)).astype(np.float32),
        "constant 0": np.zeros((1, dim), np.float32),
        "constant 1": np.ones((1, dim), np.float32),
        "constant mean": np.full((1, dim), mean, np.float32),
        "shuffled features": shuffled[:rows].astype(np.float32),
    }


def auroc(in_distribution: np.ndarray, novel: np.ndarray) -> float:
    """Area under the ROC curve of the novelty score for telling `novel` rows from `in_distribution` ones."""
    from sklearn.metrics import roc_auc_score

    truth = np.r_[np.zeros(len(in_distribution)), np.ones(len(novel))]
    return float(roc_auc_score(truth, np.r_[in_distribution, novel]))


def risk_coverage(
    novelty: np.ndarray, f1_of: Any, coverages: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
) -> list[dict[str, float]]:
    """Macro-F1 of the rows kept when only the least novel share `coverage` of the rows is answered.

    Args:
        novelty: score per row.
        f1_of: callable taking a boolean row mask and returning the macro-F1 of those rows.
        coverages: shares of rows answered.
    """
    order = np.argsort(novelty, kind="stable")
    points = []
    for coverage in coverages:
        keep = np.zeros(len(novelty), dtype=bool)
        keep[order[: max(1, round(coverage * len(novelty)))]] = True
        points.append({"coverage": coverage, "macro_f1": float(f1_of(keep))})
    return points
