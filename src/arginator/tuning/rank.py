"""The best embedding for a task, before training: LogME and a k-NN score for each candidate embedder.

LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021) is the
log marginal evidence, per sample, of a Bayesian linear model from the features to each one-hot target column, with
its prior precision alpha and noise precision beta set by the paper's fixed-point iteration (Algorithm 1, through
one SVD of the features), averaged over target columns. Higher means the labels are easier to explain linearly from
the features. The k-NN score is the macro-F1 of a cosine 5-nearest-neighbour vote on the grouped split's
validation and test rows, the training rows voting: it sees the homology gap that a score over all rows would not.

Each candidate's vectors go through the embedding content cache, so checking the ranking against trained models
(`check`) costs no second embedding.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from arginator import atomic
from arginator.config import RunConfig
from arginator.data.tables import EmbeddingTable
from arginator.data.targets import load_task_table
from arginator.embed import embed_items, make_embedder
from arginator.errors import ConfigError
from arginator.inputs import read_inputs
from arginator.training.crossval import cross_validate
from arginator.training.metrics import macro_f1

log = logging.getLogger(__name__)


def logme(features: np.ndarray, targets: np.ndarray, tolerance: float = 1e-3, max_iter: int = 100) -> float:
    """LogME of `features` (n, D) for `targets` (n, K) columns: mean over columns of the evidence per sample."""
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2  # eigenvalues of F^T F; the D - rank(F) missing ones are zero
    evidences = []
    for y in np.asarray(targets, dtype=np.float64).reshape(n, -1).T:
        z = u.T @ y
        outside = max(float(y @ y - z @ z), 0.0)  # the part of y outside F's column space
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            denominator = alpha + beta * sigma
            gamma = float((beta * sigma / denominator).sum())
            m2 = float(((beta * s * z / denominator) ** 2).sum())  # |m|^2, m the posterior mean weights
            residual = float(((alpha * z / denominator) ** 2).sum()) + outside  # |F m - y|^2
            new_alpha, new_beta = gamma / max(m2, 1e-12), (n - gamma) / max(residual, 1e-12)
            converged = abs(new_alpha - alpha) / alpha < tolerance and abs(new_beta - beta) / beta < tolerance
            alpha, beta = new_alpha, new_beta
            if converged:
                break
        denominator = alpha + beta * sigma
        m2 = float(((beta * s * z / denominator) ** 2).sum())
        residual = float(((alpha * z / denominator) ** 2).sum()) + outside
        log_det = float(np.log(denominator).sum()) + (d - len(sigma)) * np.log(alpha)
        evidence = (
            n / 2 * np.log(beta)
            + d / 2 * np.log(alpha)
            - n / 2 * np.log(2 * np.pi)
            - beta / 2 * residual
            - alpha / 2 * m2
            - log_det / 2
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def one_hot_columns(y: np.ndarray, task: str, num_classes: int) -> np.ndarray:
    """Target columns for LogME: one-hot (multiclass), both classes (binary), the label matrix (multilabel)."""
    if task == "multiclass":
        return np.eye(num_classes)[y.astype(int)]
    if task == "binary":
        return np.column_stack([1 - y, y])
    return y


def knn_score(table: EmbeddingTable, y: np.ndarray, split: np.ndarray, task: str, classes: int, k: int = 5) -> float:
    """Macro-F1 of a cosine k-NN vote (training rows vote) on the validation and test rows of a split."""
    x = table.vectors.astype(np.float64)
    x = (x - x[split == "train"].mean(axis=0)) / (x[split == "train"].std(axis=0) + 1e-8)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    reference, queries = split == "train", split != "train"
    targets = one_hot_columns(y, task, classes)
    neighbours = np.argsort(-(x[queries] @ x[reference].T), axis=1)[:, :k]
    votes = targets[reference][neighbours].mean(axis=1)  # (queries, columns)
    if task == "multiclass":
        predicted = votes.argmax(axis=1)
    elif task == "binary":
        predicted = (votes[:, 1] >= 0.5).astype(int)
    else:
        predicted = (votes >= 0.5).astype(int)
    return macro_f1(y[queries], predicted, task, classes)


def _stratified(labels: list[str], limit: int, seed: int) -> np.ndarray:
    """Indices of at most `limit` rows, the same share of each first label."""
    rng = np.random.default_rng(seed)
    names = np.asarray(labels, dtype=object)
    chosen = []
    for name in sorted(set(labels)):
        rows = np.flatnonzero(names == name)
        chosen.append(rng.choice(rows, size=max(1, round(limit * len(rows) / len(names))), replace=False))
    return np.sort(np.concatenate(chosen))


def rank_embeddings(
    raw_dir: Path | str,
    embedders: list[str],
    config: RunConfig,
    split_file: Path | str,
    out_dir: Path | str,
    cache_dir: Path | str | None = "data/cache",
    limit: int = 0,
    check: bool = False,
    folds: int = 5,
) -> dict[str, Any]:
    """Score each candidate embedder (`unirep:64`, `unirep:1900`, `minilm`, `transformers:/path`) on a raw dataset.

    Args:
        raw_dir: a prepared dataset (`sequences.fasta` or `texts.csv`, `labels.csv`).
        embedders: candidates, `name[:size or model path]`.
        config: its data section names the task and labels; the rest trains the FFNN when `check` is set.
        split_file: the grouped split (`arginator split`): the k-NN score's rows, the check's folds.
        out_dir: where rank.json goes.
        cache_dir: the embedding content cache.
        limit: at most this many rows (stratified by label; 0 keeps all).
        check: also train the FFNN by grouped cross-validation on each candidate and report Kendall's tau between
            each score's ranking and the trained ranking.
        folds: folds of the check.

    Returns:
        The content of rank.json.
    """
    ids, items = read_inputs(raw_dir)
    frame = _read_split(split_file)
    if limit and limit < len(ids):
        first_labels = dict(zip(frame.index, frame["label"].str.split(";").str[0], strict=True))
        labels = [first_labels.get(i, "") for i in ids]
        keep = _stratified(labels, limit, config.data.seed)
        ids, items = [ids[i] for i in keep], [items[i] for i in keep]
    results: dict[str, Any] = {"raw": str(raw_dir), "rows": len(ids), "candidates": {}}
    # The candidates compare embedders on the data alone; configured outliers come from one embedder's space.
    config = config.model_copy(deep=True, update={"data": config.data.model_copy(update={"outliers": None})})
    with tempfile.TemporaryDirectory(prefix="arginator-rank-") as tmp:
        if limit and config.data.labels_file:  # the labels of the kept rows only: every labelled id needs a vector
            config = config.model_copy(deep=True)
            config.data.labels_file = str(_kept_labels(config.data.labels_file, config.data.id_column, ids, tmp))
        for spec in embedders:
            name, _, option = spec.partition(":")
            options: dict[str, Any] = {}
            if option:
                options = {"size": int(option)} if name == "unirep" else {"model": option}
            start = time.perf_counter()
            embedder = make_embedder(name, **options)
            path = Path(tmp) / f"{spec.replace(':', '_').replace('/', '_')}.h5"
            embed_items(ids, items, embedder, path, cache_dir=cache_dir)
            embedded = time.perf_counter() - start
            table, targets = load_task_table(path, config.data)
            split = frame.loc[list(table.ids), "split"].to_numpy()
            start = time.perf_counter()
            columns = one_hot_columns(targets.y, config.data.task, len(targets.classes))
            entry = {
                "dim": int(table.embedding_dim),
                "logme": logme(table.vectors, columns),
                "knn_macro_f1": knn_score(table, targets.y, split, config.data.task, len(targets.classes)),
                "embed_seconds": embedded,
            }
            entry["score_seconds"] = time.perf_counter() - start
            if check:
                start = time.perf_counter()
                # the split file's groups; ids it holds beyond the kept rows are not looked up
                cv = cross_validate(path, config, split_file, Path(tmp) / "cv", k=folds, only=("grouped",))
                entry["ffnn_cv_macro_f1"] = cv["grouped"]["summary"]["ffnn"]["macro_f1"]
                entry["train_seconds"] = time.perf_counter() - start
            results["candidates"][spec] = entry
            log.info("%s: %s", spec, {key: value for key, value in entry.items() if key != "ffnn_cv_macro_f1"})
    if check and len(embedders) > 1:
        trained = [results["candidates"][e]["ffnn_cv_macro_f1"]["mean"] for e in embedders]
        for score in ("logme", "knn_macro_f1"):
            tau = kendalltau([results["candidates"][e][score] for e in embedders], trained).statistic
            results[f"kendall_tau_{score}"] = float(tau)
    atomic.write_json(Path(out_dir) / "rank.json", results)
    return results


def _read_split(split_file: Path | str) -> pd.DataFrame:
    """The split file (id, label, split, group), indexed by id."""
    try:
        return pd.read_csv(split_file, dtype=str, keep_default_na=False).set_index("id")
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read split file {split_file}: {exc}") from None


def _kept_labels(labels_file: str, id_column: str, ids: list[str], tmp: str) -> Path:
    """A labels file holding the kept rows only (every labelled id must have a vector)."""
    frame = pd.read_csv(labels_file, dtype=str, keep_default_na=False)
    out = Path(tmp) / "labels.csv"
    frame[frame[id_column].isin(set(ids))].to_csv(out, index=False)
    return out
