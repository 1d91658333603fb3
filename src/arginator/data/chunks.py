"""What every reader returns and shares: the column conventions, a chunk of rows, and row windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VECTOR_KEYS = ("embeddings", "vectors", "X")


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


Rows = tuple[int, int | None]  # a window of rows [start, stop) of a file; stop None: to the end
ALL_ROWS: Rows = (0, None)


def window_bounds(total: int, rows: Rows) -> tuple[int, int]:
    """The window's (start, stop) within a file of `total` rows."""
    return min(rows[0], total), total if rows[1] is None else min(rows[1], total)


def numbered(start: int, count: int) -> list[str]:
    """Row numbers as ids, for files without an id column."""
    return [str(i) for i in range(start, start + count)]


def text_values(values) -> list[str]:
    """Stored values (bytes, strings, None) as strings."""
    return ["" if v is None else v.decode() if isinstance(v, bytes) else str(v) for v in values]


def first_key(container, keys: tuple[str, ...]) -> str | None:
    """The first of `keys` present in `container`."""
    return next((key for key in keys if key and key in container), None)
