"""Targets per task: labels -> class indices (multiclass), 0/1 (binary) or multi-hot rows (multilabel)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arginator.config import DataConfig
from arginator.data.tables import EmbeddingTable, load_embeddings, subset
from arginator.errors import DataError


@dataclass
class Targets:
    """Class names and encoded targets: int class indices (multiclass), 0/1 floats (binary), multi-hot (multilabel)."""

    classes: list[str]
    y: np.ndarray
    keep: np.ndarray  # rows of the table that belong to the task (binary with an explicit positive set drops others)


def encode_targets(table: EmbeddingTable, config: DataConfig, classes: list[str] | None = None) -> Targets:
    """Turn labels into targets for `config.task`; `classes` fixes the order (e.g. from a trained model)."""
    present = sorted({label for labels in table.labels for label in labels})
    source = Path(table.source).name
    if config.task == "multilabel":
        classes = classes or config.classes or present
        index = {label: i for i, label in enumerate(classes)}
        y = np.zeros((len(table), len(classes)), dtype=np.float32)
        for row, labels in enumerate(table.labels):
            for label in labels:
                if label not in index:
                    raise DataError(
                        f"unknown label '{label}' for id '{table.ids[row]}' in {source}; model knows {classes}"
                    )
                y[row, index[label]] = 1.0
        return Targets(list(classes), y, np.ones(len(table), dtype=bool))
    _check_single_label(table)
    flat = np.array([labels[0] for labels in table.labels], dtype=object)
    if config.task == "multiclass":
        classes = classes or config.classes or present
        index = {label: i for i, label in enumerate(classes)}
        unknown = [label for label in flat if label not in index]
        if unknown:
            row = int(np.flatnonzero(flat == unknown[0])[0])
            raise DataError(
                f"unknown label '{unknown[0]}' for id '{table.ids[row]}' in {source}; model knows {classes}"
            )
        return Targets(
            list(classes), np.array([index[label] for label in flat], dtype=np.int64), np.ones(len(flat), bool)
        )
    return _encode_binary(flat, present, config, classes, source)


def _check_single_label(table: EmbeddingTable) -> None:
    for row, labels in enumerate(table.labels):
        if len(labels) > 1:
            raise DataError(f"id '{table.ids[row]}' has several labels {list(labels)}; use --task multilabel")


def _encode_binary(
    flat: np.ndarray, present: list[str], config: DataConfig, classes: list[str] | None, source: str
) -> Targets:
    negative, positive = config.negative, config.positive
    scoring = classes is not None  # a trained model's classes: data to score may hold one side only
    if not negative and not positive:
        if scoring:
            negative = classes[0].split("+")
        elif len(present) != 2:
            raise DataError(f"binary task on {len(present)} labels {present}: choose --negative LABEL (e.g. 'non')")
        else:
            negative = [present[0]]
    for side, labels in (("negative", negative), ("positive", positive)):
        unknown = [label for label in labels or [] if label not in present]
        if unknown and not scoring:
            raise DataError(f"unknown label '{unknown[0]}' given as {side} class; labels in {source}: {present}")
    if negative and positive:
        keep = np.isin(flat, negative + positive)
        is_positive = np.isin(flat, positive)
    elif negative:
        keep = np.ones(len(flat), dtype=bool)
        is_positive = ~np.isin(flat, negative)
    else:
        keep = np.ones(len(flat), dtype=bool)
        is_positive = np.isin(flat, positive)
    negative_name = config.negative_name or ("+".join(negative) if negative else "rest")
    default = [negative_name, "+".join(positive) if positive else config.positive_name]
    classes = classes or default
    y = is_positive[keep].astype(np.float32)
    for value, name in ((0.0, classes[0]), (1.0, classes[1])):
        if not scoring and not (y == value).any():
            raise DataError(f"class '{name}' is empty in {source} for the binary task")
    return Targets(list(classes), y, keep)


def load_task_table(
    data_path: Path | str, config: DataConfig, classes: list[str] | None = None
) -> tuple[EmbeddingTable, Targets]:
    """The validated rows that belong to the task (binary with a positive set drops other labels), with targets."""
    table = load_embeddings(data_path, config)
    targets = encode_targets(table, config, classes)
    if not targets.keep.all():
        table = subset(table, targets.keep)
        targets = Targets(targets.classes, targets.y, np.ones(len(table), dtype=bool))
    return table, targets
