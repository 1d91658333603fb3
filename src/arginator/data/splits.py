"""Train/validation/test splits: stratified, or grouped so that a group (e.g. a homology cluster) never straddles them.

Also `prepare_dataset`: the validated task rows with their targets and split, which every stage that scores a run
starts from.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from arginator import atomic
from arginator.config import DataConfig
from arginator.data.tables import EmbeddingTable
from arginator.data.targets import Targets, load_task_table
from arginator.errors import DataError

if TYPE_CHECKING:
    from arginator.data.outliers import Outliers

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def _stratify_keys(labels: list[tuple[str, ...]], minimum: int) -> np.ndarray | None:
    keys = np.array(["|".join(sorted(label)) for label in labels], dtype=object)
    counts = Counter(keys.tolist())
    keys = np.array([key if counts[key] >= minimum else "__rare__" for key in keys], dtype=object)
    return keys if min(Counter(keys.tolist()).values()) >= minimum else None


def make_split(table: EmbeddingTable, config: DataConfig) -> np.ndarray:
    """Assign each row to train/val/test: stratified by label, and grouped when the table has groups.

    Grouped splits keep every member of a group (e.g. a sequence-identity cluster) on one side, so near-identical
    proteins never straddle train and test.
    """
    if table.groups is not None:
        return _grouped_assignment(table, config)
    assignment = np.full(len(table), "train", dtype=object)
    keys = _stratify_keys(table.labels, minimum=3)
    rest, test = _holdout(np.arange(len(table)), config.test_fraction, config.seed, keys)
    val_share = config.val_fraction / (1 - config.test_fraction)
    _, val = _holdout(rest, val_share, config.seed, keys[rest] if keys is not None else None)
    assignment[test] = "test"
    assignment[val] = "val"
    return assignment


def _holdout(index: np.ndarray, fraction: float, seed: int, keys: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Random (kept, held) parts of `index`, stratified by `keys` unless the data is too small for that."""
    try:
        return tuple(train_test_split(index, test_size=fraction, random_state=seed, stratify=keys))
    except ValueError:  # fewer rows per class than splits need: plain random split
        return tuple(train_test_split(index, test_size=fraction, random_state=seed))


def _grouped_assignment(table: EmbeddingTable, config: DataConfig) -> np.ndarray:
    """Whole groups to train/val/test, per class (a group's class: its members' most common label).

    Within each class the largest group always goes to train, so every class is learnable; the other groups, in a
    seeded random order, fill test and then validation up to their fractions of the class's rows, and the rest go to
    train. A class made of one group stays in train only: it cannot be tested on unseen homologs, which is logged.
    """
    assert table.groups is not None
    rng = np.random.default_rng(config.seed)
    keys = np.array([sorted(labels)[0] for labels in table.labels], dtype=object)
    frame = pd.DataFrame({"group": table.groups, "key": keys})
    group_key = frame.groupby("group")["key"].agg(lambda values: Counter(values).most_common(1)[0][0])
    group_size = frame.groupby("group").size()
    side: dict[str, str] = {}
    for key in sorted(set(group_key)):
        groups = group_key.index[group_key == key].to_numpy()
        total = int(group_size[groups].sum())
        largest = groups[np.argmax(group_size[groups].to_numpy())]
        side[largest] = "train"
        rest = [g for g in groups[rng.permutation(len(groups))] if g != largest]
        if not rest:
            log.warning(
                "class '%s' is a single group of %d rows: kept in train, not tested on unseen groups", key, total
            )
        filled = {"test": 0, "val": 0}
        targets = {"test": config.test_fraction * total, "val": config.val_fraction * total}
        for group in rest:
            size = int(group_size[group])
            target = next((name for name in ("test", "val") if filled[name] + size / 2 <= targets[name]), "train")
            side[group] = target
            if target != "train":
                filled[target] += size
    return np.array([side[group] for group in table.groups], dtype=object)


def split_frame(table: EmbeddingTable, assignment: np.ndarray) -> pd.DataFrame:
    """The split as written to disk: id, label (`;`-joined), split and group."""
    return pd.DataFrame(
        {
            "id": table.ids,
            "label": [";".join(labels) for labels in table.labels],
            "split": assignment,
            "group": table.groups if table.groups is not None else "",
        }
    )


def read_split(path: Path, table: EmbeddingTable) -> np.ndarray:
    """The split stored in `path`, checked to cover exactly the ids of `table`, in table order."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"id", "split"} <= set(frame.columns):
        raise DataError(f"split file {path} needs 'id' and 'split' columns")
    stored = dict(zip(frame["id"], frame["split"], strict=True))
    missing = [sample_id for sample_id in table.ids if sample_id not in stored]
    extra = len(stored) - (len(table) - len(missing))
    if missing or extra:
        first = missing[0] if missing else next(i for i in stored if i not in set(table.ids))
        raise DataError(
            f"split file {path} does not match the data: {len(missing)} ids missing, {extra} unknown "
            f"(first: '{first}'); delete it or pass matching data"
        )
    bad = set(stored.values()) - set(SPLITS)
    if bad:
        raise DataError(f"split file {path} has unknown split names {sorted(bad)}; expected {list(SPLITS)}")
    return np.array([stored[sample_id] for sample_id in table.ids], dtype=object)


def write_split(table: EmbeddingTable, assignment: np.ndarray, path: Path) -> None:
    """Write the split (id, label, split, group) atomically."""
    atomic.write_text(path, split_frame(table, assignment).to_csv(index=False))


def load_or_create_split(table: EmbeddingTable, config: DataConfig, path: Path) -> np.ndarray:
    """Reuse the split in `path` if it exists (checking it covers exactly these ids), else create and write it."""
    if path.exists():
        return read_split(path, table)
    assignment = make_split(table, config)
    write_split(table, assignment, path)
    return assignment


@dataclass
class PreparedData:
    """The task's rows, their targets and their split, aligned row by row; and the outliers, if configured."""

    table: EmbeddingTable
    targets: Targets
    split: np.ndarray
    outliers: Outliers | None = None

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Vectors and targets of one split."""
        mask = self.split == split
        return self.table.vectors[mask], self.targets.y[mask]

    def ids(self, split: str) -> np.ndarray:
        """Ids of one split, in table order."""
        return self.table.ids[self.split == split]


def prepare_dataset(
    data_path: Path | str,
    config: DataConfig,
    split_path: Path | None,
    classes: list[str] | None = None,
    write: bool = True,
    outliers: bool = True,
) -> PreparedData:
    """Load and validate the data, encode targets for the task, and reuse the split in `split_path` or make one.

    Args:
        data_path: embeddings in any supported layout.
        config: the data section of the run configuration.
        split_path: a split file to reuse if it exists; a new split is written there when `write` is true.
        classes: fixes the class order (a trained model's).
        write: write a newly made split to `split_path`; false leaves every file untouched (validate first).
        outliers: load the configured outliers (`data.outliers`); false for steps that never use them.
    """
    table, targets = load_task_table(data_path, config, classes)
    if split_path is not None and Path(split_path).exists():
        split = read_split(Path(split_path), table)
    else:
        split = make_split(table, config)
        if write and split_path is not None:
            write_split(table, split, Path(split_path))
    for name in SPLITS:
        if not (split == name).any():
            raise DataError(f"the {name} split is empty ({len(table)} rows): add data or change data.*_fraction")
    from arginator.data.outliers import load_outliers  # here: it builds on this module's split rule

    loaded = load_outliers(config, table.embedding_dim, table.ids) if outliers else None
    return PreparedData(table, targets, split, loaded)


def fingerprint(table: EmbeddingTable) -> str:
    """A short content hash of ids, labels and vectors, to tell later which data a model was trained on."""
    digest = hashlib.sha256()
    digest.update("\n".join(table.ids.tolist()).encode())
    digest.update("\n".join(";".join(labels) for labels in table.labels).encode())
    digest.update(np.ascontiguousarray(table.vectors).tobytes())
    return digest.hexdigest()[:16]
