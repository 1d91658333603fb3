"""Figures from numbers computed elsewhere: confusion matrices, precision-recall curves, learning curves, maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from arginator.atomic import atomic_path


def _save(fig: plt.Figure, path: Path) -> None:
    """Write the figure as PNG atomically, then free it."""
    with atomic_path(path) as partial:
        fig.savefig(partial, dpi=110, format="png")
    plt.close(fig)


def confusion_matrices(matrices: dict[str, np.ndarray], classes: list[str], task: str, path: Path) -> None:
    """One panel per model; multilabel shows per-label [[TN, FP], [FN, TP]] summed as a label x outcome table."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(5.2 * len(matrices), 4.6), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], matrices.items(), strict=True):
        if task == "multilabel":
            # rows: labels; columns: TN, FP, FN, TP
            table = matrix.reshape(len(classes), 4)
            image = ax.imshow(table, cmap="Blues")
            ax.set_xticks(range(4), ["TN", "FP", "FN", "TP"])
            ax.set_yticks(range(len(classes)), classes)
            values = table
        else:
            names = classes if task == "multiclass" else classes[:2]
            image = ax.imshow(matrix, cmap="Blues")
            ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
            ax.set_yticks(range(len(names)), names)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            values = matrix
        for (row, column), value in np.ndenumerate(values):
            color = "white" if value > values.max() / 2 else "black"
            ax.text(column, row, str(value), ha="center", va="center", color=color, fontsize=8)
        ax.set_title(name)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    _save(fig, path)


def pr_curves(curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], path: Path) -> None:
    """Precision against recall, one panel per model, one line per (positive) class."""
    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 4.4), squeeze=False)
    for ax, (name, per_class) in zip(axes[0], curves.items(), strict=True):
        for cls, (recall, precision) in per_class.items():
            ax.plot(recall, precision, label=cls, linewidth=1.2)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{name}: precision-recall")
        if per_class:
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    _save(fig, path)


def compression_tradeoff(variants: dict[str, dict], shipped: str, path: Path) -> None:
    """Batch-1024 throughput against test macro-F1, one point per compression variant (shipped one circled)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, row in variants.items():
        x, y = row["batch1024_rows_per_s"], row["test_macro_f1"]
        ax.scatter(x, y, s=80 if name == shipped else 30, edgecolors="black" if name == shipped else "none")
        ax.annotate(name, (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("batch-1024 throughput (rows/s, log scale)")
    ax.set_ylabel("test macro-F1")
    ax.set_title(f"compression trade-off (shipped: {shipped})")
    fig.tight_layout()
    _save(fig, path)


def learning_curves(metrics_csv: Path, path: Path) -> None:
    """Training and validation loss per epoch, and validation macro-F1, from the CSV logger's file."""
    fig, (loss_ax, f1_ax) = plt.subplots(1, 2, figsize=(10, 4))
    if metrics_csv.exists():
        frame = pd.read_csv(metrics_csv)
        per_epoch = frame.groupby("epoch").last() if "epoch" in frame.columns else frame
        for column in ("train_loss", "val_loss"):
            if column in per_epoch.columns:
                series = per_epoch[column].dropna()
                loss_ax.plot(series.index, series.values, marker="o", markersize=3, label=column)
        if "val_macro_f1" in per_epoch.columns:
            series = per_epoch["val_macro_f1"].dropna()
            f1_ax.plot(series.index, series.values, marker="o", markersize=3, color="tab:green")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    f1_ax.set_xlabel("epoch")
    f1_ax.set_ylabel("validation macro-F1")
    fig.tight_layout()
    _save(fig, path)


def reliability(points: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, bins: int = 15) -> None:
    """Reliability diagram: accuracy against confidence in equal-width bins, one line per model (diagonal: perfect)."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    edges = np.linspace(0.0, 1.0, bins + 1)
    for name, (confidence, correct) in points.items():
        which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
        filled = [b for b in range(bins) if (which == b).any()]
        ax.plot(
            [confidence[which == b].mean() for b in filled],
            [correct[which == b].mean() for b in filled],
            marker="o",
            markersize=3,
            label=name,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability (test rows)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    _save(fig, path)


def risk_coverage(points: list[dict[str, float]], path: Path) -> None:
    """Macro-F1 of the answered rows against the share answered, the most novel rows refused first."""
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    ax.plot([p["coverage"] for p in points], [p["macro_f1"] for p in points], marker="o", markersize=3)
    ax.set_xlabel("coverage (share of rows answered, least novel first)")
    ax.set_ylabel("macro-F1 of the answered rows")
    ax.set_title("risk-coverage (test rows)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def embedding_map(
    vectors: np.ndarray, labels: list[str], is_test: np.ndarray, path: Path, max_rows: int = 4000, seed: int = 0
) -> None:
    """Rows on the first two principal components of the training rows, coloured by label; test rows as crosses.

    PCA rather than t-SNE or UMAP: linear, so distances along the axes mean the same everywhere, and it costs
    seconds. At most `max_rows` rows are drawn (a seeded sample), so large datasets stay readable.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    labels_array = np.asarray(labels, dtype=object)
    train = vectors[~is_test] if (~is_test).any() else vectors
    mean = train.mean(axis=0)
    scale = train.std(axis=0) + 1e-8  # per-feature standardisation, as the FFNN sees them
    _, _, components = np.linalg.svd((train - mean) / scale, full_matrices=False)
    shown = np.arange(len(vectors))
    if len(shown) > max_rows:
        shown = np.sort(np.random.default_rng(seed).choice(len(shown), size=max_rows, replace=False))
    points = ((vectors[shown] - mean) / scale) @ components[:2].T
    fig, ax = plt.subplots(figsize=(6.0, 4.8))
    names = sorted(set(labels_array[shown].tolist()))
    palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for index, label in enumerate(names):
        colour = palette(index % palette.N)
        for test, marker in ((False, "o"), (True, "x")):
            keep = (labels_array[shown] == label) & (is_test[shown] == test)
            if keep.any():
                ax.scatter(
                    points[keep, 0],
                    points[keep, 1],
                    s=6,
                    alpha=0.5,
                    marker=marker,
                    color=colour,
                    label=label if not test else None,
                )
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"embeddings, first two principal components ({len(shown)} rows; x = test)")
    ax.legend(fontsize=6, markerscale=2, loc="best", ncol=2 if len(set(labels)) > 8 else 1)
    fig.tight_layout()
    _save(fig, path)
