"""The large input of the batch-prediction benchmarks: an (N x 1024) float32 HDF5 file and the models it goes through.

Two models: a 5-class linear ONNX model (the least work per row there is, so any engine's fixed cost shows), and a
5-class model of the shipped architecture, trained by the project's own `train_run` on synthetic 1024-dim data and
exported by `export_run`: hidden layers 512 and 256, and the novelty score's bank of 4,096 training rows and input
whitener, as `deploy/arg-binary` has them (its 256-dim input aside).
"""

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


TRAINED_CLASSES = {name: 1500 for name in ("a", "b", "c", "d", "non")}  # 7,500 rows: the bank's 4,096 fill up
TRAINED_SETTINGS = ["train.max_epochs=2", "train.progress_bar=false", "train.wandb.mode=disabled"]


def write_trained_model(workdir: Path) -> Path:
    """`workdir/trained/model.onnx`: the shipped architecture, trained briefly on synthetic data and exported."""
    from arginator.config import load_config
    from arginator.shipping.export import export_run
    from arginator.sources import write_example_dataset
    from arginator.training.train import train_run

    data = write_example_dataset(workdir / "trained-data", class_sizes=TRAINED_CLASSES, dim=DIM, seed=0)
    run = workdir / "trained"
    train_run(data, load_config(overrides=TRAINED_SETTINGS), run, overwrite=True)
    export_run(run, embedder="prott5")
    return run / "model.onnx"


def finish(lines: list[str], out: Path, workdir: Path) -> None:
    """Write the report, print it, and remove the (multi-GB) working directory."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(workdir)
