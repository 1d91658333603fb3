"""LogME against a direct maximisation of the evidence, and the ranking of informative vs noisy features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from arginator.data.tables import EmbeddingTable
from arginator.tuning.rank import knn_score, logme, one_hot_columns


def direct_evidence(f: np.ndarray, y: np.ndarray) -> float:
    """max over alpha, beta of the log evidence (You et al. 2021, eq. 2), with explicit matrices, per sample."""
    n, d = f.shape

    def negative(log_params: np.ndarray) -> float:
        alpha, beta = np.exp(log_params)
        a = alpha * np.eye(d) + beta * f.T @ f
        m = beta * np.linalg.solve(a, f.T @ y)
        evidence = (
            n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
            - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m - np.linalg.slogdet(a)[1] / 2
        )  # fmt: skip
        return -evidence / n

    best = min(
        (minimize(negative, start, method="Nelder-Mead") for start in ([0, 0], [2, 2], [-2, 1])), key=lambda r: r.fun
    )
    return -best.fun


@pytest.mark.parametrize(("n", "d"), [(200, 10), (40, 60)])  # more rows than features, and fewer
def test_logme_is_the_maximised_evidence(n, d):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    y = (f[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(float)
    expected = np.mean([direct_evidence(f, column) for column in (1 - y, y)])
    assert logme(f, np.column_stack([1 - y, y])) == pytest.approx(expected, abs=2e-3)


def test_informative_features_rank_above_noise():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 600)
    centres = rng.normal(size=(3, 16)) * 3
    informative = centres[y] + rng.normal(size=(600, 16))
    noise = rng.normal(size=(600, 16))
    columns = one_hot_columns(y, "multiclass", 3)
    assert logme(informative, columns) > logme(noise, columns) + 0.1
    split = np.where(np.arange(600) < 400, "train", "test")
    labels = [(str(c),) for c in y]

    def table(x: np.ndarray) -> EmbeddingTable:
        return EmbeddingTable(np.arange(600).astype(str), x.astype(np.float32), labels, None, "toy")

    assert knn_score(table(informative), y, split, "multiclass", 3) > 0.9
    assert knn_score(table(noise), y, split, "multiclass", 3) < 0.5
