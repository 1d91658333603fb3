"""Labelled embedding tables: read with the shared readers, then validated as a whole.

Accepted layouts (see `load_embeddings`):
- a directory of per-class HDF5 files, one dataset per protein id (ProtT5 style), class name from the file name;
- one HDF5 file (one dataset per id, or a matrix) plus a labels CSV (`data.labels_file`), or with its own labels;
- a table with one row per sample: `.npz`, `.parquet` or `.csv`, with id, label and optional group columns.

Every problem is raised as a `DataError` whose message names the file, the row or id, and what is wrong.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from arginator.config import DataConfig
from arginator.data.readers import HDF5_SUFFIXES, TABLE_SUFFIXES, Chunk, Columns, read_all
from arginator.errors import DataError


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


def columns_of(config: DataConfig) -> Columns:
    """The column conventions of a data config (a `group` column is never a vector value, even when unused)."""
    return Columns(id=config.id_column, label=config.label_column, group=config.group_column or "group")


def subset(table: EmbeddingTable, mask: np.ndarray) -> EmbeddingTable:
    """Rows of a table selected by a boolean mask."""
    labels = [labels for labels, keep in zip(table.labels, mask, strict=True) if keep]
    groups = table.groups[mask] if table.groups is not None else None
    return EmbeddingTable(table.ids[mask], table.vectors[mask], labels, groups, table.source)


def _label_regex(pattern: str) -> re.Pattern[str]:
    prefix, suffix = pattern.split("{label}")
    to_regex = lambda part: fnmatch.translate(part).removeprefix("(?s:").removesuffix(")\\Z")  # noqa: E731
    return re.compile(f"^{to_regex(prefix)}(?P<label>.+?){to_regex(suffix)}$")


def _read_vectors(path: Path, config: DataConfig, dim: int | None) -> Chunk:
    chunk = read_all(path, columns_of(config), dim)
    if dim is not None and len(chunk.ids) and chunk.vectors.shape[1] != dim:
        raise DataError(
            f"expected {dim} values per row, got {chunk.vectors.shape[1]} (id '{chunk.ids[0]}' in {path.name})"
        )
    chunk.vectors = np.asarray(chunk.vectors, dtype=np.float32)
    return chunk


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
        chunk = _read_vectors(path, config, dim)
        if not chunk.ids:
            raise DataError(f"class '{label}' is empty: {path.name} holds no embeddings")
        dim = chunk.vectors.shape[1]
        for sample_id in chunk.ids:
            if sample_id in first_file:
                raise DataError(f"duplicate id '{sample_id}' in {path.name} (already in {first_file[sample_id]})")
            first_file[sample_id] = path.name
        ids.extend(chunk.ids)
        vectors.append(chunk.vectors)
        labels.extend([(label,)] * len(chunk.ids))
    table = EmbeddingTable(np.array(ids, dtype=object), np.concatenate(vectors), labels, None, str(directory))
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


def _group_column(frame: pd.DataFrame, config: DataConfig, source: str) -> np.ndarray | None:
    if config.group_column is None:
        return None
    if config.group_column not in frame.columns:
        raise DataError(f"{source} has no group column '{config.group_column}' (columns: {list(frame.columns)})")
    return frame[config.group_column].astype(str).to_numpy(dtype=object)


def read_hdf5_with_labels(h5_path: Path, config: DataConfig) -> EmbeddingTable:
    """Read one HDF5 file and take labels (and optional groups) from `data.labels_file`, or from the file itself."""
    chunk = _read_vectors(h5_path, config, config.embedding_dim)
    if config.labels_file is None:
        if chunk.labels is None:
            raise DataError(
                f"{h5_path.name} is a single HDF5 file: set data.labels_file to a CSV with id and label columns"
            )
        return _table_from_chunk(chunk, config, h5_path)
    labels_path = Path(config.labels_file)
    frame = _read_label_frame(labels_path, config, "labels file")
    if config.label_column not in frame.columns:
        raise DataError(f"{labels_path.name} has no '{config.label_column}' column (columns: {list(frame.columns)})")
    if not chunk.ids:
        raise DataError(f"{h5_path.name} holds no embeddings")
    duplicated = frame[config.id_column][frame[config.id_column].duplicated()]
    if len(duplicated):
        raise DataError(f"duplicate id '{duplicated.iloc[0]}' in {labels_path.name}")
    position = {sample_id: i for i, sample_id in enumerate(chunk.ids)}
    missing = [sample_id for sample_id in frame[config.id_column] if sample_id not in position]
    if missing:
        raise DataError(
            f"id '{missing[0]}' in {labels_path.name} has no embedding in {h5_path.name} ({len(missing)} such ids)"
        )
    unlabelled = set(chunk.ids) - set(frame[config.id_column])
    if unlabelled:
        first = sorted(unlabelled)[0]
        raise DataError(
            f"id '{first}' in {h5_path.name} has no label in {labels_path.name} ({len(unlabelled)} such ids)"
        )
    order = [position[sample_id] for sample_id in frame[config.id_column]]
    table_ids = frame[config.id_column].to_numpy(dtype=object)
    labels = _parse_labels(frame[config.label_column].tolist(), config, labels_path.name, table_ids)
    # A missing group column is reported by `_attach_groups`, and only when groups are needed.
    groups = _group_column(frame, config, labels_path.name) if config.group_column in frame.columns else None
    table = EmbeddingTable(table_ids, chunk.vectors[order], labels, groups, str(h5_path))
    _check_finite(table, lambda i: f"id '{table.ids[i]}' in {h5_path.name}")
    return table


def _table_from_chunk(chunk: Chunk, config: DataConfig, path: Path) -> EmbeddingTable:
    if not chunk.ids:
        raise DataError(f"{path.name} has no rows")
    if chunk.labels is None:
        raise DataError(f"{path.name} has no '{config.label_column}' column or array: every row needs a label")
    ids = np.array(chunk.ids, dtype=object)
    _check_unique(ids, path.name)
    labels = _parse_labels(chunk.labels, config, path.name, ids)
    # Without a group column here, `_attach_groups` looks for one in data.labels_file.
    groups = np.array(chunk.groups, dtype=object) if config.group_column and chunk.groups is not None else None
    table = EmbeddingTable(ids, chunk.vectors, labels, groups, str(path))
    _check_finite(table, lambda i: f"row {i + 1}, id '{ids[i]}' of {path.name}")
    return table


def read_table(path: Path, config: DataConfig) -> EmbeddingTable:
    """Read a `.csv`, `.parquet` or `.npz` table with one sample per row."""
    return _table_from_chunk(_read_vectors(path, config, config.embedding_dim), config, path)


def _check_unique(ids: np.ndarray, source: str) -> None:
    counts = Counter(ids.tolist())
    duplicate = next((sample_id for sample_id, count in counts.items() if count > 1), None)
    if duplicate is not None:
        raise DataError(f"duplicate id '{duplicate}' in {source}")


def _check_finite(table: EmbeddingTable, where: Callable[[int], str]) -> None:
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


def load_embeddings(path: Path | str, config: DataConfig, need_groups: bool = True) -> EmbeddingTable:
    """Read and validate embeddings with labels from any supported layout.

    Args:
        path: a directory of per-class HDF5 files, an HDF5 file (with `data.labels_file`), or a CSV/Parquet/NPZ table.
        config: the data section of the run configuration.
        need_groups: false when groups are not used (scoring external data): `data.group_column` then only keeps
            that column out of the vector values.

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
    if not need_groups:
        table.groups = None
        return table
    return _attach_groups(table, config)
