"""Shared fixtures: small data in the seed project's exact HDF5 layout, and fast training settings."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

from arginator.sources import write_example_dataset

DIM = 1024
SMALL_CLASSES = {"a": 24, "b": 16, "c": 16, "d": 16, "non": 48}
FAST = [
    "train.max_epochs=4",
    "train.batch_size=32",
    "train.progress_bar=false",
    "train.wandb.mode=disabled",
    "model.hidden_sizes=[64, 32]",
]


def write_class_file(path: Path, vectors: dict[str, np.ndarray]) -> Path:
    """One HDF5 file, one float32 dataset per protein id (as ProtT5 embedding scripts write them)."""
    with h5py.File(path, "w") as handle:
        for protein_id, vector in vectors.items():
            handle.create_dataset(protein_id, data=np.asarray(vector, dtype=np.float32))
    return path


def random_vectors(prefix: str, n: int, dim: int = DIM, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"sp|{prefix}{i:04d}|{prefix.upper()}_ECOLI": rng.normal(size=dim).astype(np.float32) for i in range(n)}


@pytest.fixture(scope="session")
def seed_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five per-class files card_class_{a,b,c,d,non}_embeddings.h5, 1024 dims, ids with '|', plus groups.csv."""
    return write_example_dataset(tmp_path_factory.mktemp("seed_layout"), class_sizes=SMALL_CLASSES, seed=1)


@pytest.fixture
def class_dir(tmp_path: Path) -> Path:
    """A writable copy-style directory with two small valid classes, for tests that add a broken file."""
    directory = tmp_path / "classes"
    directory.mkdir()
    write_class_file(directory / "card_class_a_embeddings.h5", random_vectors("a", 6, seed=1))
    write_class_file(directory / "card_class_non_embeddings.h5", random_vectors("n", 6, seed=2))
    return directory
