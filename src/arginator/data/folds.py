"""Cross-validation folds: k folds over homology groups (or stratified rows), and each fold's train/val/test split.

Grouped folds keep every member of a group in one fold, so each test fold holds only families the model never saw.
Groups are dealt per class (a group's class: its members' most common first label), largest first, each to the fold
that holds the fewest rows of that class so far: every class with at least two groups is tested in some fold, and
fold sizes stay even. A class made of a single group cannot be tested on an unseen family: its group gets fold -1
(always in training) and the class is listed as not testable under grouping.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from arginator.config import DataConfig
from arginator.data.splits import _grouped_assignment, _holdout, _stratify_keys
from arginator.data.tables import EmbeddingTable, subset
from arginator.errors import DataError

ALWAYS_TRAIN = -1


def _class_keys(table: EmbeddingTable) -> np.ndarray:
    return np.array([sorted(labels)[0] for labels in table.labels], dtype=object)


def make_folds(table: EmbeddingTable, k: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Fold index per row (grouped when the table has groups, else stratified), and the classes not testable.

    Raises:
        DataError: fewer than two folds, or fewer rows than folds.
    """
    if k < 2 or len(table) < k:
        raise DataError(f"cross-validation needs 2 <= k <= rows; got k={k} for {len(table)} rows")
    keys = _class_keys(table)
    if table.groups is None:
        strata = _stratify_keys(table.labels, minimum=k)
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        folds = np.zeros(len(table), dtype=np.int64)
        for fold, (_, test) in enumerate(splitter.split(np.zeros(len(table)), strata if strata is not None else keys)):
            folds[test] = fold
        return folds, []
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"group": table.groups, "key": keys})
    group_key = frame.groupby("group")["key"].agg(lambda values: Counter(values).most_common(1)[0][0])
    group_size = frame.groupby("group").size()
    fold_of: dict[str, int] = {}
    untestable = []
    for key in sorted(set(group_key)):
        groups = group_key.index[group_key == key].to_numpy()
        if len(groups) == 1:
            fold_of[groups[0]] = ALWAYS_TRAIN
            untestable.append(key)
            continue
        shuffled = groups[rng.permutation(len(groups))]
        ordered = sorted(shuffled, key=lambda g: -int(group_size[g]))  # stable: ties keep the seeded order
        filled = np.zeros(k)
        for group in ordered:
            fold = int(np.argmin(filled + rng.random(k) * 1e-9))  # fewest rows of this class; random among ties
            fold_of[group] = fold
            filled[fold] += int(group_size[group])
    return np.array([fold_of[g] for g in table.groups], dtype=np.int64), untestable


def fold_split(table: EmbeddingTable, folds: np.ndarray, fold: int, config: DataConfig) -> np.ndarray:
    """train/val/test per row for one fold: the fold is the test set, validation comes from the other rows.

    Validation takes whole groups when grouped (as the single split does), about `val_fraction` of all rows.
    """
    assignment = np.full(len(table), "train", dtype=object)
    held = folds == fold
    assignment[held] = "test"
    rest = np.flatnonzero(~held)
    share = min(0.45, config.val_fraction / max(1e-9, 1.0 - held.mean()))
    if table.groups is not None:
        inner = _grouped_assignment(
            subset(table, ~held), config.model_copy(update={"val_fraction": share, "test_fraction": 0.0})
        )
        assignment[rest[inner == "val"]] = "val"
    else:
        keys = _stratify_keys([table.labels[i] for i in rest], minimum=3)
        _, val = _holdout(np.arange(len(rest)), share, config.seed + fold, keys)
        assignment[rest[val]] = "val"
    return assignment
