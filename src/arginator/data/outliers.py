"""Outlier exposure: inputs a model must call novel (ordinary proteins of real genomes), split by homology group.

A novelty score built only from the training data (distances to it) ranks unseen families of the training classes as
far as ordinary proteins, since both are new to the model. Shown a sample of the inputs it must refuse, a small head
of the network learns what separates them from the data (outlier exposure, Hendrycks et al. 2019). To measure that
honestly on inputs it never saw, the outliers are split like the data: whole homology groups to train/val/test (the
single split) or to folds (cross-validation), with the same rules and seeds, so no test outlier has a homolog among
the outliers the head was trained on.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from arginator.config import DataConfig
from arginator.data.folds import fold_split, make_folds
from arginator.data.readers import read_all
from arginator.data.splits import _grouped_assignment
from arginator.data.tables import EmbeddingTable
from arginator.errors import DataError

log = logging.getLogger(__name__)
LABEL = "outlier"  # the one class the split rules see


@dataclass(frozen=True)
class Outliers:
    """Outlier rows with their homology groups and their side of the split (train / val / test)."""

    name: str  # how novelty reports name the source: the embeddings file's folder, as for any other novelty file
    path: str
    ids: np.ndarray
    vectors: np.ndarray
    groups: np.ndarray
    split: np.ndarray

    def rows(self, split: str) -> np.ndarray:
        """Vectors on one side of the split."""
        return self.vectors[self.split == split]

    def test_fingerprint(self) -> str:
        """A short hash of the test split's ids: evaluation checks that its held-out outliers are the training run's."""
        return hashlib.sha256("\n".join(sorted(self.ids[self.split == "test"].tolist())).encode()).hexdigest()[:16]

    def is_source(self, path: Path | str) -> bool:
        """Whether `path` is the file these outliers come from (its rows outside the test split trained the head)."""
        return Path(path).resolve() == Path(self.path).resolve()


def source_name(path: Path | str) -> str:
    """The name a novelty file goes by in reports: its folder (`background` for .../background/embeddings.h5)."""
    return Path(path).parent.name or Path(path).stem


def load_outliers(config: DataConfig, dim: int, data_ids: np.ndarray) -> Outliers | None:
    """The outliers named by `config.outliers`, split by group like the data (None when none are configured).

    Raises:
        DataError: a wrong vector size, an id also in the data, an id without a group, or no rows.
    """
    if config.outliers is None:
        return None
    try:
        chunk = read_all(config.outliers)
    except DataError as exc:
        raise DataError(f"data.outliers: {exc}") from None
    ids = np.asarray(chunk.ids, dtype=object)
    if not len(ids):
        raise DataError(f"outliers {config.outliers}: no rows")
    if chunk.vectors.shape[1] != dim:
        raise DataError(f"outliers {config.outliers}: vectors of {chunk.vectors.shape[1]} values, the data has {dim}")
    shared = set(ids.tolist()) & set(np.asarray(data_ids).tolist())
    if shared:
        raise DataError(f"outliers {config.outliers} share {len(shared)} ids with the data, e.g. '{min(shared)}'")
    if config.outlier_groups is None:
        log.warning("outliers %s: no data.outlier_groups, so homologs may fall on both sides", config.outliers)
        groups = ids.copy()  # every row its own group
    else:
        try:
            frame = pd.read_csv(config.outlier_groups, dtype=str, keep_default_na=False)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"data.outlier_groups {config.outlier_groups}: cannot read it ({exc})") from None
        if not {"id", "group"} <= set(frame.columns):
            raise DataError(f"outlier groups {config.outlier_groups}: needs the columns id and group")
        twice = frame["id"][frame["id"].duplicated()]
        if len(twice):
            raise DataError(f"outlier groups {config.outlier_groups}: id '{twice.iloc[0]}' listed twice")
        known = dict(zip(frame["id"], frame["group"], strict=True))
        missing = [i for i in ids if not known.get(i)]
        if missing:
            raise DataError(f"outlier groups {config.outlier_groups}: no group for '{missing[0]}' ({len(missing)} ids)")
        groups = np.array([known[i] for i in ids], dtype=object)
    table = _as_table(ids, chunk.vectors, groups, str(config.outliers))
    return Outliers(
        source_name(config.outliers),
        str(config.outliers),
        ids,
        chunk.vectors,
        groups,
        _grouped_assignment(table, config),
    )


def fold_outliers(outliers: Outliers | None, k: int, fold: int, config: DataConfig) -> Outliers | None:
    """The outliers for one cross-validation fold, split like the fold's data (`fold_split`).

    The fold's groups are its test rows; validation takes whole groups of the others, and the rest train the head.
    """
    if outliers is None:
        return None
    if len(set(outliers.groups)) < k:
        raise DataError(f"outliers {outliers.path}: {len(set(outliers.groups))} groups, fewer than the {k} folds")
    table = _as_table(outliers.ids, outliers.vectors, outliers.groups, outliers.path)
    folds, _ = make_folds(table, k, config.seed)
    return replace(outliers, split=fold_split(table, folds, fold, config))


def _as_table(ids: np.ndarray, vectors: np.ndarray, groups: np.ndarray, source: str) -> EmbeddingTable:
    # One class, so the data's own split and fold rules deal the outlier groups (one copy of each rule).
    return EmbeddingTable(ids, vectors, [(LABEL,)] * len(ids), groups, source)
