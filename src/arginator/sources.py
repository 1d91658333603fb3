"""Datasets turned into files the pipeline reads.

For now: a generated example in the seed project's exact layout (one HDF5 file per class, one 1024-value float32
dataset per protein id, ids containing `|`). Classes are Gaussian clusters with near-identical "variant" families
inside them, so that the task is learnable but not trivial, and grouped splits matter.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

EXAMPLE_PATTERN = "card_class_{label}_embeddings.h5"
# Class sizes echo the seed's imbalance: far more non-resistance proteins than any Ambler class.
FAMILY_SPREAD = 0.25
EXAMPLE_CLASS_SIZES = {"a": 120, "b": 60, "c": 80, "d": 70, "non": 400}


def write_example_dataset(
    out_dir: Path | str,
    class_sizes: dict[str, int] | None = None,
    dim: int = 1024,
    family_size: int = 4,
    separation: float = 6.0,
    seed: int = 0,
) -> Path:
    """Write per-class HDF5 files plus `groups.csv` (id, label, family) into `out_dir`.

    Args:
        out_dir: destination directory (created).
        class_sizes: proteins per class; defaults to `EXAMPLE_CLASS_SIZES`.
        dim: values per embedding (ProtT5: 1024).
        family_size: proteins per near-identical family (the group a homology-aware split keeps together).
        separation: distance between class centres in units of the family spread; smaller is harder.
        seed: random seed; the same seed writes identical files.

    Returns:
        `out_dir`.
    """
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = class_sizes or EXAMPLE_CLASS_SIZES
    shared = rng.normal(0.0, 0.1, dim).astype(np.float32)  # pLM embeddings share a common offset
    rows = []
    for class_index, (label, size) in enumerate(sizes.items()):
        centre = shared + rng.normal(0.0, separation * FAMILY_SPREAD / np.sqrt(2 * dim), dim).astype(np.float32)
        with h5py.File(out / EXAMPLE_PATTERN.format(label=label), "w") as handle:
            for start in range(0, size, family_size):
                family_id = f"{label}{start // family_size:03d}"
                family_centre = centre + rng.normal(0.0, FAMILY_SPREAD, dim).astype(np.float32)
                for member in range(start, min(start + family_size, size)):
                    protein_id = f"sp|Q{class_index}{member:04d}|{label.upper()}_{member:04d}_ECOLX"
                    vector = family_centre + rng.normal(0.0, 0.05, dim).astype(np.float32)
                    handle.create_dataset(protein_id, data=vector.astype(np.float32))
                    rows.append((protein_id, label, family_id))
    pd.DataFrame(rows, columns=["id", "label", "family"]).to_csv(out / "groups.csv", index=False)
    return out
