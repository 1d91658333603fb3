"""Embedding files read in chunks, one reader per format: the only readers, for training and streaming prediction alike.

Formats and what each holds (the same column conventions everywhere, see `Columns`):
- HDF5 `.h5`/`.hdf5`: either one dataset per id (ProtT5 / `arginator embed` style; nested groups give ids joined
  with '/'), or a (rows, dim) matrix under `embeddings` / `vectors` / `X` with optional `ids`, labels and groups;
- Parquet: one numeric column per dimension, or one list column holding each vector; plus id / label / group;
- CSV: one numeric column per dimension plus id / label / group columns;
- NPZ: arrays `embeddings` (or `vectors`, `X`) and optional ids / labels / groups; uncompressed members are
  memory-mapped, so files larger than memory stream; NPY: one (rows, dim) matrix.

Only numpy, h5py and pandas/pyarrow are used (never torch), so the serving side can read files too. Every problem is a
`DataError` naming the file and, where it can, the row or id.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from arginator.errors import DataError

VECTOR_KEYS = ("embeddings", "vectors", "X")
HDF5_SUFFIXES = (".h5", ".hdf5")
TABLE_SUFFIXES = (".csv", ".parquet", ".npz", ".npy")


@dataclass(frozen=True)
class Columns:
    """Names of the non-vector columns (tables) or arrays (NPZ, HDF5 matrix); every other column is a vector value."""

    id: str = "id"
    label: str = "label"
    group: str | None = "group"

    def id_keys(self) -> tuple[str, ...]:
        """Array names that may hold ids."""
        return (self.id, "ids")

    def label_keys(self) -> tuple[str, ...]:
        """Array names that may hold labels."""
        return (self.label, "labels", "y")

    def group_keys(self) -> tuple[str, ...]:
        """Array names that may hold groups."""
        return (self.group, "groups") if self.group else ()

    def meta(self) -> set[str]:
        """Column names that are never vector values."""
        return {*self.id_keys(), *self.label_keys(), *self.group_keys()}


@dataclass
class Chunk:
    """Consecutive rows of a file: ids, vectors (as stored), and labels and groups when the file has them."""

    ids: list[str]
    vectors: np.ndarray
    labels: list[str] | None = None
    groups: list[str] | None = None


def _numbered(start: int, count: int) -> list[str]:
    return [str(i) for i in range(start, start + count)]


def _text(values) -> list[str]:
    return ["" if v is None else v.decode() if isinstance(v, bytes) else str(v) for v in values]


def open_hdf5(path: Path) -> h5py.File:
    """An HDF5 file opened for reading, or a DataError saying why it cannot be."""
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty (0 bytes)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        reason = str(exc).split("(", 1)[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise DataError(f"cannot read {path.name}: not a readable HDF5 file ({reason})") from None


def _first_key(container, keys: tuple[str, ...]) -> str | None:
    return next((key for key in keys if key and key in container), None)


def _iter_hdf5(path: Path, columns: Columns, chunk_rows: int, dim: int | None) -> Iterator[Chunk]:
    with open_hdf5(path) as handle:
        matrix_key = next((k for k in VECTOR_KEYS if k in handle and getattr(handle[k], "ndim", 0) == 2), None)
        if matrix_key is not None:  # one (rows, dim) dataset, read by slices
            matrix = handle[matrix_key]
            id_key, label_key, group_key = (
                _first_key(handle, keys) for keys in (columns.id_keys(), columns.label_keys(), columns.group_keys())
            )
            for key in (id_key, label_key, group_key):
                if key is not None and len(handle[key]) != matrix.shape[0]:
                    raise DataError(f"{path.name}: {matrix.shape[0]} vectors but {len(handle[key])} '{key}' values")
            for start in range(0, matrix.shape[0], chunk_rows):
                rows = matrix[start : start + chunk_rows]
                end = start + len(rows)
                yield Chunk(
                    _text(handle[id_key][start:end]) if id_key else _numbered(start, len(rows)),
                    rows,
                    _text(handle[label_key][start:end]) if label_key else None,
                    _text(handle[group_key][start:end]) if group_key else None,
                )
            return
        yield from _iter_hdf5_per_id(path, handle, chunk_rows, dim)


def _iter_hdf5_per_id(path: Path, handle: h5py.File, chunk_rows: int, dim: int | None) -> Iterator[Chunk]:
    """One dataset per id: each vector checked for shape and for `dim` (default: the first vector's length)."""
    names: list[str] = []
    handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    for start in range(0, len(names), chunk_rows):
        batch = names[start : start + chunk_rows]
        vectors = []
        for name in batch:
            try:
                vector = np.asarray(handle[name][()], dtype=np.float32)
            except (OSError, ValueError, TypeError) as exc:
                raise DataError(f"cannot read id '{name}' in {path.name}: {exc} (truncated or corrupt file?)") from None
            vector = vector.reshape(-1) if vector.ndim == 2 and 1 in vector.shape else vector
            if vector.ndim != 1:
                raise DataError(f"id '{name}' in {path.name} has shape {vector.shape}; expected one vector per id")
            dim = vector.shape[0] if dim is None else dim
            if vector.shape[0] != dim:
                raise DataError(f"expected {dim} values per row, got {vector.shape[0]} (id '{name}' in {path.name})")
            vectors.append(vector)
        yield Chunk(batch, np.stack(vectors))


def _iter_parquet(path: Path, columns: Columns, chunk_rows: int, dim: int | None) -> Iterator[Chunk]:
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
    start = 0
    for batch in reader.iter_batches(batch_size=chunk_rows):
        ids = _text(batch.column(id_column).to_pylist()) if id_column else _numbered(start, batch.num_rows)
        first = batch.column(value_columns[0])
        if len(value_columns) == 1 and hasattr(first, "flatten"):  # one list column holding the vectors
            lengths = pc.list_value_length(first).to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(lengths != lengths[0])
            if len(bad):
                row = int(bad[0])
                raise DataError(
                    f"expected {lengths[0]} values per row, got {lengths[row]} "
                    f"(row {start + row + 1}, id '{ids[row]}' of {path.name})"
                )
            rows = first.flatten().to_numpy(zero_copy_only=False).reshape(batch.num_rows, -1)
        else:
            try:
                rows = np.column_stack(
                    [batch.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in value_columns]
                )
            except (ValueError, TypeError) as exc:
                raise DataError(f"{path.name}: vector columns must be numeric ({exc})") from None
        labels = _text(batch.column(label_column).to_pylist()) if label_column else None
        groups = _text(batch.column(group_column).to_pylist()) if group_column else None
        start += batch.num_rows
        yield Chunk(ids, rows, labels, groups)


def _iter_csv(path: Path, columns: Columns, chunk_rows: int, dim: int | None) -> Iterator[Chunk]:
    import pandas as pd

    text_columns = {name: str for name in columns.meta()}
    try:
        start = 0
        for frame in pd.read_csv(path, chunksize=chunk_rows, dtype=text_columns, keep_default_na=False):
            id_column, label_column, group_column = (
                _first_key(frame.columns, keys)
                for keys in (columns.id_keys(), columns.label_keys(), columns.group_keys())
            )
            values = frame.drop(columns=[c for c in frame.columns if c in columns.meta()])
            try:  # empty cells are missing values (NaN), reported as such by the callers' finiteness checks
                rows = values.replace("", np.nan).to_numpy(dtype=np.float32)
            except ValueError as exc:
                raise DataError(f"{path.name}: vector columns must be numeric ({exc})") from None
            yield Chunk(
                frame[id_column].tolist() if id_column else _numbered(start, len(frame)),
                rows,
                frame[label_column].tolist() if label_column else None,
                frame[group_column].tolist() if group_column else None,
            )
            start += len(frame)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path.name}: {exc}") from None


def npz_member(path: Path, key: str) -> np.ndarray:
    """A member of an NPZ archive: memory-mapped when stored uncompressed (np.savez), else read whole."""
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo(key + ".npy")
        if member.compress_type == zipfile.ZIP_STORED:
            with path.open("rb") as raw:
                raw.seek(member.header_offset)
                local_header = raw.read(30)
                name_length = int.from_bytes(local_header[26:28], "little")
                extra_length = int.from_bytes(local_header[28:30], "little")
                raw.seek(member.header_offset + 30 + name_length + extra_length)
                version = np.lib.format.read_magic(raw)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(raw)
                if dtype.hasobject:
                    raise DataError(f"{path.name} holds object (pickled) arrays, which are refused")
                return np.memmap(
                    path, dtype=dtype, mode="r", offset=raw.tell(), shape=shape, order="F" if fortran else "C"
                )
    return np.load(path, allow_pickle=False)[key]


def _npz_arrays(path: Path, keys: list[str | None]) -> list[np.ndarray | None]:
    try:
        archive = np.load(path, allow_pickle=False)
        return [archive[key] if key else None for key in keys]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{path.name} holds object (pickled) arrays, which are refused: save text as arr.astype(str)"
            ) from None
        raise DataError(f"cannot read {path.name}: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path.name}: {exc}") from None


def _iter_numpy(path: Path, columns: Columns, chunk_rows: int, dim: int | None) -> Iterator[Chunk]:
    ids = labels = groups = None
    if path.suffix.lower() == ".npy":
        try:
            matrix = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"cannot read {path.name}: {exc}") from None
    else:
        if not zipfile.is_zipfile(path):
            raise DataError(f"cannot read {path.name}: not an NPZ (zip) archive")
        with zipfile.ZipFile(path) as archive:
            keys = [n.removesuffix(".npy") for n in archive.namelist()]
        vector_key = next((k for k in VECTOR_KEYS if k in keys), None)
        if vector_key is None:
            raise DataError(f"{path.name} must hold an 'embeddings' array (has {sorted(keys)})")
        try:
            matrix = npz_member(path, vector_key)
        except ValueError as exc:
            raise DataError(f"cannot read {path.name}: {exc}") from None
        wanted = [_first_key(keys, k) for k in (columns.id_keys(), columns.label_keys(), columns.group_keys())]
        ids, labels, groups = _npz_arrays(path, wanted)
        for name, array in zip(wanted, (ids, labels, groups), strict=True):
            if array is not None and len(array) != len(matrix):
                raise DataError(f"{path.name}: {len(matrix)} vectors but {len(array)} '{name}' values")
    if matrix.ndim != 2:
        raise DataError(f"{path.name}: embeddings have shape {matrix.shape}; expected (rows, dims)")
    for start in range(0, matrix.shape[0], chunk_rows):
        rows = np.asarray(matrix[start : start + chunk_rows])
        end = start + len(rows)
        yield Chunk(
            _text(ids[start:end]) if ids is not None else _numbered(start, len(rows)),
            rows,
            _text(labels[start:end]) if labels is not None else None,
            _text(groups[start:end]) if groups is not None else None,
        )


# Every reader takes (path, columns, chunk_rows, dim); `dim` checks per-id HDF5 vectors as they are read (tables are
# checked by the caller).
READERS: dict[str, Callable[[Path, Columns, int, int | None], Iterator[Chunk]]] = {
    ".h5": _iter_hdf5,
    ".hdf5": _iter_hdf5,
    ".parquet": _iter_parquet,
    ".csv": _iter_csv,
    ".npz": _iter_numpy,
    ".npy": _iter_numpy,
}


def iter_chunks(
    path: Path | str, columns: Columns | None = None, chunk_rows: int = 8192, dim: int | None = None
) -> Iterator[Chunk]:
    """Chunks of an embedding file, never more than `chunk_rows` rows in memory at once.

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
    yield from reader(path, columns or Columns(), chunk_rows, dim)


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
