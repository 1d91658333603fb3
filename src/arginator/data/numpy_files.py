"""NumPy files: NPZ archives (uncompressed members memory-mapped, so they stream) and NPY matrices."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from arginator.data.chunks import (
    VECTOR_KEYS,
    Chunk,
    Columns,
    Rows,
    first_key,
    numbered,
    text_values,
    window_bounds,
)
from arginator.errors import DataError


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


def npz_arrays(path: Path, keys: list[str | None]) -> list[np.ndarray | None]:
    """The named arrays of an NPZ archive (None for a None key); object arrays are refused."""
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


def iter_numpy(path: Path, columns: Columns, chunk_rows: int, dim: int | None, window: Rows) -> Iterator[Chunk]:
    """Chunks of an NPY matrix or an NPZ archive's embeddings (with its ids, labels and groups when present)."""
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
        wanted = [first_key(keys, k) for k in (columns.id_keys(), columns.label_keys(), columns.group_keys())]
        ids, labels, groups = npz_arrays(path, wanted)
        for name, array in zip(wanted, (ids, labels, groups), strict=True):
            if array is not None and len(array) != len(matrix):
                raise DataError(f"{path.name}: {len(matrix)} vectors but {len(array)} '{name}' values")
    if matrix.ndim != 2:
        raise DataError(f"{path.name}: embeddings have shape {matrix.shape}; expected (rows, dims)")
    first, last = window_bounds(matrix.shape[0], window)
    for start in range(first, last, chunk_rows):
        end = min(start + chunk_rows, last)
        rows = np.asarray(matrix[start:end])
        yield Chunk(
            text_values(ids[start:end]) if ids is not None else numbered(start, len(rows)),
            rows,
            text_values(labels[start:end]) if labels is not None else None,
            text_values(groups[start:end]) if groups is not None else None,
        )
