"""The large input of the batch-prediction benchmarks: an (N x dim) float32 HDF5 file and the models it goes through.

Three models (`write_model`):
- `trained`: the shipped architecture (`configs/model.yaml`), trained by the project's own `train_run` on synthetic
  1024-dim data and exported by `export_run`, novelty score included: the work per row of a model on ProtT5 vectors;
- `shipped`: the pipeline's `deploy/arg-binary`, as `arginator predict --model deploy/arg-binary` loads it (its input
  has the bundled UniRep's 256 dimensions);
- `linear`: one matrix product, the least work per row there is, so that any engine's fixed cost shows most.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import write_linear_onnx  # noqa: E402

DIM = 1024
MODELS = ("trained", "shipped", "linear")
TRAINED_CLASSES = {name: 1500 for name in ("a", "b", "c", "d", "non")}  # 7,500 rows: the novelty bank fills up
TRAINED_EPOCHS = 2  # the work per row does not depend on how well it learnt


def write_embeddings(path: Path, rows: int, dim: int = DIM, seed: int = 0) -> Path:
    """An (rows x dim) float32 HDF5 matrix `embeddings` at `path`, written in slices (1M x 1024 = 4 GB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as handle:
        matrix = handle.create_dataset("embeddings", shape=(rows, dim), dtype="f4", chunks=(1024, dim))
        for start in range(0, rows, 65536):
            stop = min(rows, start + 65536)
            matrix[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32)
    return path


def write_linear_model(path: Path, dim: int = DIM, seed: int = 0) -> Path:
    """A 5-class linear ONNX model with arginator metadata at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = np.random.default_rng(seed).normal(size=(dim, 5)).astype(np.float32) / 32
    return write_linear_onnx(path, weights, "multiclass", list("abcde"))


def write_large_input(workdir: Path, rows: int, seed: int = 0) -> tuple[Path, Path]:
    """`workdir/embeddings.h5` (rows x 1024) and the linear `workdir/model.onnx`; returns both paths."""
    return write_embeddings(workdir / "embeddings.h5", rows, seed=seed), write_linear_model(workdir / "model.onnx")


def write_trained_model(workdir: Path) -> tuple[Path, str]:
    """`workdir/trained/model.onnx`, the shipped architecture trained briefly on synthetic data, and its description."""
    from arginator.config import load_config
    from arginator.shipping.export import export_run
    from arginator.sources import write_example_dataset
    from arginator.training.novelty import MAX_BANK
    from arginator.training.train import train_run

    data = write_example_dataset(workdir / "trained-data", class_sizes=TRAINED_CLASSES, dim=DIM, seed=0)
    config = load_config(
        overrides=[f"train.max_epochs={TRAINED_EPOCHS}", "train.progress_bar=false", "train.wandb.mode=disabled"]
    )
    run = workdir / "trained"
    noise = io.StringIO()  # the exporter prints the traced graph; errors still raise
    with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
        train_run(data, config, run, overwrite=True)
        export_run(run, embedder="prott5")
    hidden = " and ".join(str(size) for size in config.model.hidden_sizes)
    return run / "model.onnx", (
        f"a {len(TRAINED_CLASSES)}-class model of the shipped architecture (hidden {hidden}; novelty bank of up to "
        f"{MAX_BANK:,} training rows and input whitener), trained for {TRAINED_EPOCHS} epochs on "
        f"{sum(TRAINED_CLASSES.values()):,} synthetic {DIM}-dim rows and exported by `export_run`"
    )


def write_model(kind: str, workdir: Path) -> tuple[Path, str]:
    """The benchmark model of `kind` (`MODELS`) and a description for the report. Raises SystemExit if missing."""
    if kind == "trained":
        return write_trained_model(workdir)
    if kind == "linear":
        return write_linear_model(workdir / "model.onnx"), "a 5-class linear ONNX model (one matrix product per row)"
    from arginator.serving.predictor import resolve_model_path

    deploy = ROOT / "deploy" / "arg-binary"
    if not deploy.is_dir():
        raise SystemExit(f"{deploy} is missing: run the pipeline first (script/pipeline)")
    path = resolve_model_path(deploy)
    loaded = path.relative_to(deploy)
    return path, f"the shipped model `deploy/arg-binary` (`{loaded}`, as `arginator predict` loads it)"


def finish(lines: list[str], out: Path, workdir: Path) -> None:
    """Write the report, print it, and remove the (multi-GB) working directory."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(workdir)
