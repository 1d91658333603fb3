"""Embedding files read in chunks, one reader per format: the only readers, for training and streaming prediction alike.

Formats and what each holds (the same column conventions everywhere, see `Columns`):
- HDF5 `.h5`/`.hdf5`: either one dataset per id (ProtT5 / `arginator embed` style; nested groups give ids joined
  with '/'), or a (rows, dim) matrix under `embeddings` / `vectors` / `X` with optional `ids`, labels and groups;
- Parquet: one numeric column per dimension, or one list column holding each vector; plus id / label / group;
- CSV: one numeric column per dimension plus id / label / group columns;
- NPZ: arrays `embeddings` (or `vectors`, `X`) and optional ids / labels / groups; uncompressed members are
  memory-mapped, so files larger than memory stream; NPY: one (rows, dim) matrix (both in `numpy_files.py`).

Any reader can be limited to a window of rows (`iter_chunks(..., window=(start, stop))`): the Ray workers each read
their own part of one file that way. What a chunk holds and the column conventions are in `chunks.py`.

Only numpy, h5py and pandas/pyarrow are used (never torch), so the serving side can read files too. Every problem is a
`DataError` naming the file and, where it can, the row or id.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np

from arginator.data.chunks import (
    ALL_ROWS,
    VECTOR_KEYS,
    Chunk,
    Columns,
    Rows,
    first_key,
    numbered,
    text_values,
    window_bounds,
)
from arginator.data.numpy_files import iter_numpy, npz_member
from arginator.errors import DataError

__all__ = ["HDF5_SUFFIXES", "TABLE_SUFFIXES", "Chunk", "Columns", "Rows", "iter_chunks", "read_all", "row_count"]
HDF5_SUFFIXES = (".h5", ".hdf5")
# HDF5 type classes read as numbers: integers, floats, and enums (how h5py stores booleans).
NUMERIC_CLASSES = frozenset({h5py.h5t.INTEGER, h5py.h5t.FLOAT, h5py.h5t.ENUM})
TABLE_SUFFIXES = (".csv", ".parquet", ".npz", ".npy")


def open_hdf5(path: Path) -> h5py.File:
    """An HDF5 file opened for reading, or a DataError saying why it cannot be."""
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty (0 bytes)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        reason = str(exc).split("(", 1)[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise DataError(f"cannot read {path.name}: not a readable HDF5 file ({reason})") from None


def _iter_hdf5(path: Path, columns: Columns, chunk_rows: int, dim: int | None, window: Rows) -> Iterator[Chunk]:
    with open_hdf5(path) as handle:
        try:
            matrix_key = next((k for k in VECTOR_KEYS if k in handle and getattr(handle[k], "ndim", 0) == 2), None)
        except (RuntimeError, OSError, KeyError, ValueError) as exc:  # a damaged root group
            raise DataError(f"cannot read {path.name}: {exc} (truncated or corrupt file?)") from None
        if matrix_key is not None:  # one (rows, dim) dataset, read by slices
            matrix = handle[matrix_key]
            id_key, label_key, group_key = (
                first_key(handle, keys) for keys in (columns.id_keys(), columns.label_keys(), columns.group_keys())
            )
            for key in (id_key, label_key, group_key):
                if key is not None and len(handle[key]) != matrix.shape[0]:
                    raise DataError(f"{path.name}: {matrix.shape[0]} vectors but {len(handle[key])} '{key}' values")
            first, last = window_bounds(matrix.shape[0], window)
            for start in range(first, last, chunk_rows):
                end = min(start + chunk_rows, last)
                yield Chunk(
                    text_values(handle[id_key][start:end]) if id_key else numbered(start, end - start),
                    matrix[start:end],
                    text_values(handle[label_key][start:end]) if label_key else None,
                    text_values(handle[group_key][start:end]) if group_key else None,
                )
            return
        yield from _iter_hdf5_per_id(path, handle, chunk_rows, dim, window)


def _iter_hdf5_per_id(path: Path, handle: h5py.File, chunk_rows: int, dim: int | None, window: Rows) -> Iterator[Chunk]:
    """One dataset per id: each vector checked for shape and for `dim` (default: the first vector's length).

    Read through h5py's low-level calls (names from one `H5Ovisit` with object types, each vector straight into its row
    of the chunk): the high-level `visititems` and `handle[name][()]` build Python objects per id and took five times
    as long, about a second per 5,000 ids, paid by every command that reads the pipeline's embeddings.
    """
    names: list[str] = []

    def collect(name: bytes, info: h5py.h5o.ObjInfo) -> None:
        if info.type == h5py.h5o.TYPE_DATASET:
            names.append(name.decode(errors="surrogateescape"))  # any byte string HDF5 allows as a name

    try:
        h5py.h5o.visit(handle.id, collect, info=True)
    except (RuntimeError, OSError, KeyError, ValueError) as exc:  # a damaged object header
        raise DataError(f"cannot list the ids of {path.name}: {exc} (truncated or corrupt file?)") from None
    first, last = window_bounds(len(names), window)
    names = names[first:last]
    for start in range(0, len(names), chunk_rows):
        batch = names[start : start + chunk_rows]
        vectors = np.empty((0, 0), dtype=np.float32)  # sized at the first vector, once `dim` is known
        for row, name in enumerate(batch):
            try:
                dataset = h5py.h5d.open(handle.id, name.encode(errors="surrogateescape"))
                shape, kind = dataset.shape, dataset.get_type().get_class()
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise DataError(f"cannot read id '{name}' in {path.name}: {exc} (truncated or corrupt file?)") from None
            if shape is None:  # an HDF5 "null" dataset: no dataspace at all
                raise DataError(f"id '{name}' in {path.name} holds no data")
            if kind not in NUMERIC_CLASSES:
                raise DataError(
                    f"id '{name}' in {path.name} holds non-numeric values (text, compound, ...): a vector is numbers"
                )
            # A (1, n) or (n, 1) dataset is one vector too.
            size = shape[0] if len(shape) == 1 else int(np.prod(shape)) if len(shape) == 2 and 1 in shape else None
            if size is None:
                raise DataError(f"id '{name}' in {path.name} has shape {shape}; expected one vector per id")
            dim = size if dim is None else dim
            if size != dim:
                raise DataError(f"expected {dim} values per row, got {size} (id '{name}' in {path.name})")
            if row == 0:
                vectors = np.empty((len(batch), dim), dtype=np.float32)
            try:  # HDF5 converts any numeric type to float32 as it reads; the row's view has the dataset's own shape
                dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, vectors[row].reshape(shape))
            except (OSError, ValueError, TypeError) as exc:
                raise DataError(f"cannot read id '{name}' in {path.name}: {exc} (truncated or corrupt file?)") from None
        yield Chunk(batch, vectors)


def _iter_parquet(path: Path, columns: Columns, chunk_rows: int, dim: int | None, window: Rows) -> Iterator[Chunk]:
    try:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading Parquet needs pyarrow: pip install 'arginator[parquet]'") from None
    try:
        reader = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"cannot read {path.name}: not a readable Parquet file ({exc})") from None
    names = reader.schema_arrow.names
    id_column, label_column, group_column = (
        next((c for c in keys if c and c in names), None)
        for keys in (columns.id_keys(), columns.label_keys(), columns.group_keys())
    )
    value_columns = [c for c in names if c not in columns.meta()]
    if not value_columns:
        raise DataError(f"{path.name} has no vector columns (columns: {names[:8]})")
    first, last = window_bounds(reader.metadata.num_rows, window)
    wanted, offset, position = [], 0, None  # only the row groups that overlap the window are read
    for index in range(reader.num_row_groups):
        size = reader.metadata.row_group(index).num_rows
        if offset < last and offset + size > first:
            wanted.append(index)
            position = offset if position is None else position
        offset += size
    for batch in reader.iter_batches(batch_size=chunk_rows, row_groups=wanted) if wanted else []:
        batch_start, position = position, position + batch.num_rows
        start, end = max(first, batch_start), min(last, position)
        if start >= end:
            if batch_start >= last:
                break
            continue
        batch = batch.slice(start - batch_start, end - start)
        ids = text_values(batch.column(id_column).to_pylist()) if id_column else numbered(start, batch.num_rows)
        column = batch.column(value_columns[0])
        if len(value_columns) == 1 and hasattr(column, "flatten"):  # one list column holding the vectors
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(lengths != lengths[0])
            if len(bad):
                row = int(bad[0])
                raise DataError(
                    f"expected {lengths[0]} values per row, got {lengths[row]} "
                    f"(row {start + row + 1}, id '{ids[row]}' of {path.name})"
                )
            rows = column.flatten().to_numpy(zero_copy_only=False).reshape(batch.num_rows, -1)
        else:
            try:
                rows = np.column_stack(
                    [batch.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in value_columns]
                )
            except (ValueError, TypeError) as exc:
                raise DataError(f"{path.name}: vector columns must be numeric ({exc})") from None
        labels = text_values(batch.column(label_column).to_pylist()) if label_column else None
        groups = text_values(batch.column(group_column).to_pylist()) if group_column else None
        yield Chunk(ids, rows, labels, groups)


def _iter_csv(path: Path, columns: Columns, chunk_rows: int, dim: int | None, window: Rows) -> Iterator[Chunk]:
    import pandas as pd

    text_columns = {name: str for name in columns.meta()}
    try:
        first, last = window[0], window[1] if window[1] is not None else float("inf")
        position = 0  # a CSV has no index: rows before the window are parsed and skipped
        for frame in pd.read_csv(path, chunksize=chunk_rows, dtype=text_columns, keep_default_na=False):
            frame_start, position = position, position + len(frame)
            if position <= first:
                continue
            if frame_start >= last:
                break
            start = max(first, frame_start)
            frame = frame.iloc[start - frame_start : int(min(last, position)) - frame_start]
            id_column, label_column, group_column = (
                first_key(frame.columns, keys)
                for keys in (columns.id_keys(), columns.label_keys(), columns.group_keys())
            )
            values = frame.drop(columns=[c for c in frame.columns if c in columns.meta()])
            try:  # empty cells are missing values (NaN), reported as such by the callers' finiteness checks
                rows = values.replace("", np.nan).to_numpy(dtype=np.float32)
            except ValueError as exc:
                raise DataError(f"{path.name}: vector columns must be numeric ({exc})") from None
            yield Chunk(
                frame[id_column].tolist() if id_column else numbered(start, len(frame)),
                rows,
                frame[label_column].tolist() if label_column else None,
                frame[group_column].tolist() if group_column else None,
            )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path.name}: {exc}") from None


# Every reader takes (path, columns, chunk_rows, dim, window): `window` limits it to rows [start, stop), and `dim`
# checks per-id HDF5 vectors as they are read (tables are checked by the caller).
READERS: dict[str, Callable[[Path, Columns, int, int | None, Rows], Iterator[Chunk]]] = {
    ".h5": _iter_hdf5,
    ".hdf5": _iter_hdf5,
    ".parquet": _iter_parquet,
    ".csv": _iter_csv,
    ".npz": iter_numpy,
    ".npy": iter_numpy,
}


def iter_chunks(
    path: Path | str,
    columns: Columns | None = None,
    chunk_rows: int = 8192,
    dim: int | None = None,
    window: Rows = ALL_ROWS,
) -> Iterator[Chunk]:
    """Chunks of an embedding file, never more than `chunk_rows` rows in memory at once.

    `window` = (start, stop) reads only those rows (stop None: to the end), seeking straight to them in HDF5, NPY/NPZ
    and Parquet (by row group), so that many workers can each read their own part of one file.

    Raises:
        DataError: the file is missing, empty, of an unsupported type, or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty (0 bytes)")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"unsupported input '{path.suffix}': use one of {', '.join(sorted(READERS))}")
    yield from reader(path, columns or Columns(), chunk_rows, dim, window)


def row_count(path: Path | str) -> int | None:
    """Rows in an embedding file, read from its header (HDF5, Parquet, NPY, uncompressed NPZ).

    None for CSV and compressed NPZ, which cannot be read from the middle.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input not found: {path}")
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        with open_hdf5(path) as handle:
            matrix_key = next((k for k in VECTOR_KEYS if k in handle and getattr(handle[k], "ndim", 0) == 2), None)
            if matrix_key is not None:
                return int(handle[matrix_key].shape[0])
            names: list[str] = []
            handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            return len(names)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
            raise DataError(f"cannot read {path.name}: not a readable Parquet file ({exc})") from None
    try:
        if suffix == ".npy":
            return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        if suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            vector_key = next((k for k in VECTOR_KEYS if k in members), None)
            # A compressed member has no row index: reading any window means inflating the whole array, so it is one
            # window (None), as a CSV is.
            if vector_key is None or members[vector_key].compress_type != zipfile.ZIP_STORED:
                return None
            return int(npz_member(path, vector_key).shape[0])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path.name}: {exc}") from None
    return None


def read_all(path: Path | str, columns: Columns | None = None, dim: int | None = None) -> Chunk:
    """The whole file as one chunk (for training-sized data; use `iter_chunks` to stream)."""
    parts = list(iter_chunks(path, columns, chunk_rows=1 << 20, dim=dim))
    if not parts:
        return Chunk([], np.zeros((0, 0), dtype=np.float32))
    if len({part.vectors.shape[1] for part in parts}) > 1:
        raise DataError(f"{Path(path).name}: rows of different lengths")
    return Chunk(
        [i for part in parts for i in part.ids],
        np.concatenate([part.vectors for part in parts]),
        None if parts[0].labels is None else [x for part in parts for x in part.labels or []],
        None if parts[0].groups is None else [x for part in parts for x in part.groups or []],
    )
