"""Reading and validating embedding tables, encoding targets per task, splitting, and the Lightning DataModule.

Accepted layouts (see `load_embeddings`):
- a directory of per-class HDF5 files, one dataset per protein id (ProtT5 style), class name from the file name;
- one HDF5 file with an id -> vector layout plus a labels CSV (`data.labels_file`);
- a table with one row per sample: `.npz`, `.parquet` or `.csv`, with id, label and optional group columns.

Every problem is raised as a `DataError` whose message names the file, the row or id, and what is wrong.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import math
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import lightning as L
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from arginator.config import DataConfig
from arginator.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
TABLE_SUFFIXES = (".csv", ".parquet", ".npz")
HDF5_SUFFIXES = (".h5", ".hdf5")


@dataclass
class EmbeddingTable:
    """Vectors with their ids, labels (a tuple per sample: one label, or several for multi-label) and groups."""

    ids: np.ndarray
    vectors: np.ndarray
    labels: list[tuple[str, ...]]
    groups: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def embedding_dim(self) -> int:
        """Number of values per vector."""
        return int(self.vectors.shape[1])


# --------------------------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------------------------


def _open_hdf5(path: Path) -> h5py.File:
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty (0 bytes)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        reason = str(exc).split("(", 1)[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise DataError(f"cannot read {path.name}: not a readable HDF5 file ({reason})") from None


def _read_id_vectors(path: Path, expected_dim: int | None) -> tuple[list[str], list[np.ndarray], int | None]:
    """Read every dataset of an HDF5 file as (id, vector); nested groups give ids joined with '/'."""
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    dim = expected_dim
    with _open_hdf5(path) as handle:
        names: list[str] = []
        handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        for name in names:
            try:
                vector = np.asarray(handle[name][()], dtype=np.float32)
            except (OSError, ValueError, TypeError) as exc:
                raise DataError(f"cannot read id '{name}' in {path.name}: {exc} (truncated or corrupt file?)") from None
            vector = vector.reshape(-1) if vector.ndim == 2 and 1 in vector.shape else vector
            if vector.ndim != 1:
                raise DataError(f"id '{name}' in {path.name} has shape {vector.shape}; expected one vector per id")
            if dim is None:
                dim = vector.shape[0]
            elif vector.shape[0] != dim:
                raise DataError(f"expected {dim} values per row, got {vector.shape[0]} (id '{name}' in {path.name})")
            ids.append(name)
            vectors.append(vector)
    return ids, vectors, dim


def _label_regex(pattern: str) -> re.Pattern[str]:
    prefix, suffix = pattern.split("{label}")
    to_regex = lambda part: fnmatch.translate(part).removeprefix("(?s:").removesuffix(")\\Z")  # noqa: E731
    return re.compile(f"^{to_regex(prefix)}(?P<label>.+?){to_regex(suffix)}$")


def read_class_directory(directory: Path, config: DataConfig) -> EmbeddingTable:
    """Read a directory of per-class HDF5 files, e.g. `card_class_a_embeddings.h5` and its siblings."""
    regex = _label_regex(config.file_pattern)
    matches = [(regex.match(p.name), p) for p in sorted(directory.iterdir()) if p.is_file() and regex.match(p.name)]
    if not matches:
        raise DataError(f"no files matching '{config.file_pattern}' in {directory} (set data.file_pattern)")
    ids: list[str] = []
    vectors: list[np.ndarray] = []
    labels: list[tuple[str, ...]] = []
    first_file: dict[str, str] = {}
    dim = config.embedding_dim
    for match, path in ((m, p) for m, p in matches if m is not None):
        label = match.group("label")
        file_ids, file_vectors, dim = _read_id_vectors(path, dim)
        if not file_ids:
            raise DataError(f"class '{label}' is empty: {path.name} holds no embeddings")
        for sample_id in file_ids:
            if sample_id in first_file:
                raise DataError(f"duplicate id '{sample_id}' in {path.name} (already in {first_file[sample_id]})")
            first_file[sample_id] = path.name
        ids.extend(file_ids)
        vectors.extend(file_vectors)
        labels.extend([(label,)] * len(file_ids))
    table = EmbeddingTable(np.array(ids, dtype=object), np.stack(vectors), labels, None, str(directory))
    _check_finite(table, lambda i: f"id '{table.ids[i]}' in {first_file[table.ids[i]]}")
    return table


def _read_label_frame(path: Path, config: DataConfig, what: str) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path.name}: {exc}") from None
    if config.id_column not in frame.columns:
        raise DataError(f"{path.name} has no '{config.id_column}' column (columns: {list(frame.columns)})")
    return frame


def _parse_labels(raw: list[str], config: DataConfig, source: str, ids: np.ndarray) -> list[tuple[str, ...]]:
    parsed = []
    for row, value in enumerate(raw):
        value = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()
        parts = (
            [part.strip() for part in value.split(config.label_separator)] if config.task == "multilabel" else [value]
        )
        parts = [part for part in parts if part]
        if not parts:
            raise DataError(f"row {row + 1} (id '{ids[row]}') of {source} has no label")
        parsed.append(tuple(dict.fromkeys(parts)))
    return parsed


def read_hdf5_with_labels(h5_path: Path, config: DataConfig) -> EmbeddingTable:
    """Read one HDF5 file (one dataset per id) and take labels and optional groups from `data.labels_file`."""
    if config.labels_file is None:
        raise DataError(
            f"{h5_path.name} is a single HDF5 file: set data.labels_file to a CSV with id and label columns"
        )
    labels_path = Path(config.labels_file)
    frame = _read_label_frame(labels_path, config, "labels file")
    if config.label_column not in frame.columns:
        raise DataError(f"{labels_path.name} has no '{config.label_column}' column (columns: {list(frame.columns)})")
    ids, vectors, _ = _read_id_vectors(h5_path, config.embedding_dim)
    if not ids:
        raise DataError(f"{h5_path.name} holds no embeddings")
    duplicated = frame[config.id_column][frame[config.id_column].duplicated()]
    if len(duplicated):
        raise DataError(f"duplicate id '{duplicated.iloc[0]}' in {labels_path.name}")
    position = {sample_id: i for i, sample_id in enumerate(ids)}
    missing = [sample_id for sample_id in frame[config.id_column] if sample_id not in position]
    if missing:
        raise DataError(
            f"id '{missing[0]}' in {labels_path.name} has no embedding in {h5_path.name} ({len(missing)} such ids)"
        )
    unlabelled = set(ids) - set(frame[config.id_column])
    if unlabelled:
        first = sorted(unlabelled)[0]
        raise DataError(
            f"id '{first}' in {h5_path.name} has no label in {labels_path.name} ({len(unlabelled)} such ids)"
        )
    order = [position[sample_id] for sample_id in frame[config.id_column]]
    table_ids = frame[config.id_column].to_numpy(dtype=object)
    labels = _parse_labels(frame[config.label_column].tolist(), config, labels_path.name, table_ids)
    groups = _group_column(frame, config, labels_path.name)
    table = EmbeddingTable(table_ids, np.stack(vectors)[order], labels, groups, str(h5_path))
    _check_finite(table, lambda i: f"id '{table.ids[i]}' in {h5_path.name}")
    return table


def _group_column(frame: pd.DataFrame, config: DataConfig, source: str) -> np.ndarray | None:
    if config.group_column is None:
        return None
    if config.group_column not in frame.columns:
        raise DataError(f"{source} has no group column '{config.group_column}' (columns: {list(frame.columns)})")
    return frame[config.group_column].astype(str).to_numpy(dtype=object)


def _table_from_frame(frame: pd.DataFrame, config: DataConfig, path: Path) -> EmbeddingTable:
    if len(frame) == 0:
        raise DataError(f"{path.name} has no rows")
    if config.label_column not in frame.columns:
        raise DataError(f"{path.name} has no '{config.label_column}' column (columns: {list(frame.columns)[:8]}...)")
    meta = {config.id_column, config.label_column, config.group_column}
    if config.id_column in frame.columns:
        ids = frame[config.id_column].astype(str).to_numpy(dtype=object)
    else:
        ids = np.array([f"row{i + 1}" for i in range(len(frame))], dtype=object)
    if "embedding" in frame.columns:  # one list-valued column (Parquet)
        lengths = frame["embedding"].map(len).to_numpy()
        dim = config.embedding_dim or int(lengths[0])
        bad = np.flatnonzero(lengths != dim)
        if len(bad):
            row = int(bad[0])
            raise DataError(
                f"expected {dim} values per row, got {lengths[row]} (row {row + 1}, id '{ids[row]}' of {path.name})"
            )
        vectors = np.stack(frame["embedding"].map(lambda v: np.asarray(v, dtype=np.float32)).to_list())
    else:  # one numeric column per dimension
        value_columns = [column for column in frame.columns if column not in meta]
        try:
            vectors = frame[value_columns].to_numpy(dtype=np.float32)
        except ValueError as exc:
            raise DataError(f"{path.name}: vector columns must be numeric ({exc})") from None
        if config.embedding_dim is not None and vectors.shape[1] != config.embedding_dim:
            raise DataError(
                f"expected {config.embedding_dim} values per row, got {vectors.shape[1]} (every row of {path.name})"
            )
    _check_unique(ids, path.name)
    labels = _parse_labels(frame[config.label_column].tolist(), config, path.name, ids)
    table = EmbeddingTable(ids, vectors, labels, _group_column(frame, config, path.name), str(path))
    _check_finite(table, lambda i: f"row {i + 1}, id '{ids[i]}' of {path.name}")
    return table


def _read_npz(path: Path, config: DataConfig) -> EmbeddingTable:
    if not zipfile.is_zipfile(path):
        raise DataError(f"cannot read {path.name}: not an NPZ (zip) archive")
    try:
        archive = np.load(path, allow_pickle=False)
        arrays = {key: archive[key] for key in archive.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{path.name} holds object (pickled) arrays, which are refused: save text as arr.astype(str)"
            ) from None
        raise DataError(f"cannot read {path.name}: {exc}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path.name}: {exc}") from None
    vector_key = next((key for key in ("embeddings", "vectors", "X") if key in arrays), None)
    label_key = next((key for key in (config.label_column, "labels", "y") if key in arrays), None)
    if vector_key is None or label_key is None:
        raise DataError(f"{path.name} must hold 'embeddings' and '{config.label_column}' arrays (has {sorted(arrays)})")
    vectors = arrays[vector_key]
    if vectors.ndim != 2:
        raise DataError(f"'{vector_key}' in {path.name} has shape {vectors.shape}; expected (rows, dims)")
    frame = pd.DataFrame({config.label_column: arrays[label_key].astype(str)})
    if len(frame) != len(vectors):
        raise DataError(f"{path.name}: {len(vectors)} vectors but {len(frame)} labels")
    for key, column in (("ids", config.id_column), ("groups", config.group_column)):
        if column and (key in arrays or column in arrays):
            frame[column] = arrays[column if column in arrays else key].astype(str)
    frame = pd.concat([frame, pd.DataFrame(vectors.astype(np.float32))], axis=1)
    frame.columns = [str(c) for c in frame.columns]
    return _table_from_frame(frame, config, path)


def read_table(path: Path, config: DataConfig) -> EmbeddingTable:
    """Read a `.csv`, `.parquet` or `.npz` table with one sample per row."""
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path, config)
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except ImportError:
            raise DataError("reading Parquet needs pyarrow: pip install 'arginator[parquet]'") from None
        except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
            raise DataError(f"cannot read {path.name}: not a readable Parquet file ({exc})") from None
    else:
        try:
            frame = pd.read_csv(path, dtype={config.id_column: str, config.label_column: str}, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {path.name}: {exc}") from None
        value_columns = [
            c for c in frame.columns if c not in {config.id_column, config.label_column, config.group_column}
        ]
        frame[value_columns] = frame[value_columns].replace("", np.nan)
    return _table_from_frame(frame, config, path)


def _check_unique(ids: np.ndarray, source: str) -> None:
    counts = Counter(ids.tolist())
    duplicate = next((sample_id for sample_id, count in counts.items() if count > 1), None)
    if duplicate is not None:
        raise DataError(f"duplicate id '{duplicate}' in {source}")


def _check_finite(table: EmbeddingTable, where) -> None:
    finite = np.isfinite(table.vectors)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        kind = "NaN" if np.isnan(table.vectors[row]).any() else "Inf"
        column = int(np.flatnonzero(~finite[row])[0])
        raise DataError(f"{where(row)} contains {kind} (value {column + 1} of {table.vectors.shape[1]})")


def _attach_groups(table: EmbeddingTable, config: DataConfig) -> EmbeddingTable:
    """For layouts without a group column, read groups from `data.labels_file` (id, group) if it has them."""
    if config.group_column is None or table.groups is not None:
        return table
    if config.labels_file is None:
        raise DataError(f"data.group_column is '{config.group_column}' but no data.labels_file gives groups per id")
    frame = _read_label_frame(Path(config.labels_file), config, "labels file")
    groups = dict(
        zip(frame[config.id_column], _group_column(frame, config, Path(config.labels_file).name), strict=True)
    )
    missing = [sample_id for sample_id in table.ids if sample_id not in groups]
    if missing:
        raise DataError(f"id '{missing[0]}' has no group in {config.labels_file} ({len(missing)} such ids)")
    table.groups = np.array([groups[sample_id] for sample_id in table.ids], dtype=object)
    return table


def _check_labels(table: EmbeddingTable, config: DataConfig) -> None:
    if config.classes is None:
        return
    declared = set(config.classes)
    for row, labels in enumerate(table.labels):
        unknown = [label for label in labels if label not in declared]
        if unknown:
            raise DataError(
                f"unknown label '{unknown[0]}' for id '{table.ids[row]}' in {Path(table.source).name}; "
                f"data.classes allows {sorted(declared)}"
            )
    present = {label for labels in table.labels for label in labels}
    empty = [label for label in config.classes if label not in present]
    if empty:
        raise DataError(f"class '{empty[0]}' is empty: no sample in {Path(table.source).name} has that label")


def load_embeddings(path: Path | str, config: DataConfig) -> EmbeddingTable:
    """Read and validate embeddings with labels from any supported layout.

    Args:
        path: a directory of per-class HDF5 files, an HDF5 file (with `data.labels_file`), or a CSV/Parquet/NPZ table.
        config: the data section of the run configuration.

    Returns:
        The validated table.

    Raises:
        DataError: the data cannot be read or is inconsistent; the message names the file and the row or id.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path not found: {path}")
    if path.is_dir():
        table = read_class_directory(path, config)
    elif path.suffix.lower() in HDF5_SUFFIXES:
        table = read_hdf5_with_labels(path, config)
    elif path.suffix.lower() in TABLE_SUFFIXES:
        table = read_table(path, config)
    else:
        raise DataError(f"unsupported data file {path.name}: expected a directory, .h5/.hdf5, .csv, .parquet or .npz")
    if config.embedding_dim is not None and table.embedding_dim != config.embedding_dim:
        raise DataError(f"expected {config.embedding_dim} values per row, got {table.embedding_dim} ({path.name})")
    _check_labels(table, config)
    return _attach_groups(table, config)


# --------------------------------------------------------------------------------------------------------------------
# Targets per task
# --------------------------------------------------------------------------------------------------------------------


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
    if not negative and not positive:
        if len(present) != 2:
            raise DataError(f"binary task on {len(present)} labels {present}: choose --negative LABEL (e.g. 'non')")
        negative = [present[0]]
    for side, labels in (("negative", negative), ("positive", positive)):
        unknown = [label for label in labels or [] if label not in present]
        if unknown:
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
    default = ["+".join(negative) if negative else "rest", "+".join(positive) if positive else config.positive_name]
    classes = classes or default
    y = is_positive[keep].astype(np.float32)
    for value, name in ((0.0, classes[0]), (1.0, classes[1])):
        if not (y == value).any():
            raise DataError(f"class '{name}' is empty in {source} for the binary task")
    return Targets(list(classes), y, keep)


# --------------------------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------------------------


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


def load_or_create_split(table: EmbeddingTable, config: DataConfig, path: Path) -> np.ndarray:
    """Reuse the split in `path` if it exists (checking it covers exactly these ids), else create and write it."""
    if path.exists():
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
    assignment = make_split(table, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    split_frame(table, assignment).to_csv(path, index=False)
    return assignment


# --------------------------------------------------------------------------------------------------------------------
# Batches from in-memory tensors
# --------------------------------------------------------------------------------------------------------------------


class TensorBatches:
    """Mini-batches sliced from in-memory tensors: one index gather per batch, no per-sample Python."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0) -> None:
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.shuffle:
            order = torch.randperm(len(self.x), generator=self.generator)
            for start in range(0, len(self.x), self.batch_size):
                rows = order[start : start + self.batch_size]
                yield self.x[rows], self.y[rows]
        else:
            for start in range(0, len(self.x), self.batch_size):
                yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]


class EmbeddingDataModule(L.LightningDataModule):
    """Serves train/val/test batches of vectors and encoded targets held in memory."""

    def __init__(self, arrays: dict[str, tuple[np.ndarray, np.ndarray]], batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.tensors = {
            split: (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y))
            for split, (x, y) in arrays.items()
        }
        self.batch_size = batch_size
        self.seed = seed

    @property
    def embedding_dim(self) -> int:
        """Number of input features."""
        return int(self.tensors["train"][0].shape[1])

    def _batches(self, split: str, shuffle: bool) -> TensorBatches:
        x, y = self.tensors[split]
        return TensorBatches(x, y, self.batch_size, shuffle=shuffle, seed=self.seed)

    def train_dataloader(self) -> TensorBatches:
        """Shuffled training batches (the order is seeded)."""
        return self._batches("train", shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        """Validation batches in file order."""
        return self._batches("val", shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        """Test batches in file order."""
        return self._batches("test", shuffle=False)


# --------------------------------------------------------------------------------------------------------------------
# Everything a run needs from its data
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class PreparedData:
    """The task's rows, their targets and their split, aligned row by row."""

    table: EmbeddingTable
    targets: Targets
    split: np.ndarray

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Vectors and targets of one split."""
        mask = self.split == split
        return self.table.vectors[mask], self.targets.y[mask]

    def ids(self, split: str) -> np.ndarray:
        """Ids of one split, in table order."""
        return self.table.ids[self.split == split]


def subset(table: EmbeddingTable, mask: np.ndarray) -> EmbeddingTable:
    """Rows of a table selected by a boolean mask."""
    labels = [labels for labels, keep in zip(table.labels, mask, strict=True) if keep]
    groups = table.groups[mask] if table.groups is not None else None
    return EmbeddingTable(table.ids[mask], table.vectors[mask], labels, groups, table.source)


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


def prepare_dataset(
    data_path: Path | str, config: DataConfig, split_path: Path, classes: list[str] | None = None
) -> PreparedData:
    """Load and validate the data, encode targets for the task, and create or reuse the split in `split_path`."""
    table, targets = load_task_table(data_path, config, classes)
    split = load_or_create_split(table, config, split_path)
    for name in SPLITS:
        if not (split == name).any():
            raise DataError(f"the {name} split is empty ({len(table)} rows): add data or change data.*_fraction")
    return PreparedData(table, targets, split)


def fingerprint(table: EmbeddingTable) -> str:
    """A short content hash of ids, labels and vectors, to tell later which data a model was trained on."""
    digest = hashlib.sha256()
    digest.update("\n".join(table.ids.tolist()).encode())
    digest.update("\n".join(";".join(labels) for labels in table.labels).encode())
    digest.update(np.ascontiguousarray(table.vectors).tobytes())
    return digest.hexdigest()[:16]
