"""The large input of the batch-prediction benchmarks: an (N x 1024) float32 HDF5 file and a 5-class ONNX model."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import write_linear_onnx  # noqa: E402

DIM = 1024


def write_large_input(workdir: Path, rows: int, seed: int = 0) -> tuple[Path, Path]:
    """`workdir/embeddings.h5` written in slices (1M rows = 4 GB) and `workdir/model.onnx`; returns both paths."""
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "embeddings.h5"
    rng = np.random.default_rng(seed)
    with h5py.File(source, "w") as handle:
        matrix = handle.create_dataset("embeddings", shape=(rows, DIM), dtype="f4", chunks=(1024, DIM))
        for start in range(0, rows, 65536):
            stop = min(rows, start + 65536)
            matrix[start:stop] = rng.standard_normal((stop - start, DIM), dtype=np.float32)
    model = write_linear_onnx(
        workdir / "model.onnx", rng.normal(size=(DIM, 5)).astype(np.float32) / 32, "multiclass", list("abcde")
    )
    return source, model


def finish(lines: list[str], out: Path, workdir: Path) -> None:
    """Write the report, print it, and remove the (multi-GB) working directory."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(workdir)
