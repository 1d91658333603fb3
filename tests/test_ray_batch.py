"""Batch prediction on Ray Data: a local Ray instance, two actors, the same answers as `arginator predict`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from arginator.errors import DataError, InvalidInput, ModelLoadError
from arginator.serving.predictor import Predictor
from arginator.serving.ray_batch import predict_with_ray, windows
from arginator.serving.streaming import predict_file
from tests.conftest import write_linear_onnx

DIM = 32


def _embeddings(path: Path, rows: int, seed: int, prefix: str) -> Path:
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as handle:
        handle["embeddings"] = rng.normal(size=(rows, DIM)).astype(np.float32)
        handle["ids"] = np.array([f"{prefix}{i:05d}" for i in range(rows)], dtype="S")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    weights = np.random.default_rng(0).normal(size=(DIM, 3)).astype(np.float32)
    model = write_linear_onnx(root / "model.onnx", weights, "multiclass", list("abc"))
    return root, model, [_embeddings(root / "one.h5", 30_000, 1, "x"), _embeddings(root / "two.h5", 7_000, 2, "y")]


def test_ray_actors_give_the_single_process_answers_in_input_order(inputs):
    root, model, files = inputs
    out = root / "ray-out.parquet"
    # 30,000 + 7,000 rows in windows of 4,096: 10 windows, both files' last windows partial.
    assert [(w["start"], w["stop"]) for w in windows(files, 4096)][-3:] == [(28672, 30000), (0, 4096), (4096, 7000)]
    rows = predict_with_ray(files, model, out, workers=2, cpus_per_worker=1, chunk_rows=2048, window_rows=4096)
    assert rows == 37_000
    got = pq.read_table(out).to_pandas()
    expected = []
    for file in files:
        predict_file(Predictor(model, threads=1), file, root / f"{file.stem}.parquet", chunk_rows=2048)
        expected.append(pq.read_table(root / f"{file.stem}.parquet").to_pandas())
    pd.testing.assert_frame_equal(got, pd.concat(expected, ignore_index=True))
    assert not list(root.glob(".ray-out*"))  # no temporary file left beside it


def test_cli_engine_ray_and_its_errors(inputs, tmp_path):
    _, model, files = inputs
    command = [sys.executable, "-m", "arginator.cli", "predict", str(files[1]), "--model", str(model)]
    done = subprocess.run([*command, "--out", str(tmp_path / "p.csv"), "--engine", "ray", "--workers", "2"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "7000 rows" in done.stdout
    local = subprocess.run(
        [*command, "--out", str(tmp_path / "local.csv")], capture_output=True, text=True, timeout=300, check=False
    )
    assert local.returncode == 0, local.stderr[-2000:]
    assert (tmp_path / "p.csv").read_text() == (tmp_path / "local.csv").read_text()  # the same file, byte for byte
    directory = subprocess.run(
        [*command, "--out", str(tmp_path / "folder"), "--engine", "ray"], capture_output=True, text=True, check=False
    )
    assert directory.returncode == 2 and "must end in .csv or .parquet" in directory.stderr
    wrong = subprocess.run(
        [*command, "--out", str(tmp_path / "q"), "--engine", "spark"], capture_output=True, text=True, check=False
    )
    assert wrong.returncode == 2 and "--engine must be local or ray" in wrong.stderr
    with pytest.raises(ModelLoadError):
        predict_with_ray(files, tmp_path / "missing.onnx", tmp_path / "r.parquet")


def test_bad_rows_fail_with_the_projects_error_and_leave_nothing(inputs, tmp_path):
    _, model, _ = inputs
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as handle:
        vectors = np.ones((100, DIM), dtype=np.float32)
        vectors[57, 3] = np.nan
        handle["embeddings"] = vectors
        handle["ids"] = np.array([f"b{i}" for i in range(100)], dtype="S")
    with pytest.raises(InvalidInput, match="NaN"):
        predict_with_ray([bad], model, tmp_path / "out.parquet", workers=1)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.h5"]  # no output, no temporary file


def test_csv_is_one_window_and_a_missing_file_is_named(inputs, tmp_path):
    _, model, _ = inputs
    table = pd.DataFrame(np.random.default_rng(4).normal(size=(50, DIM)), columns=[f"v{j}" for j in range(DIM)])
    table.insert(0, "id", [f"c{i}" for i in range(50)])
    table.to_csv(tmp_path / "rows.csv", index=False)
    assert windows([tmp_path / "rows.csv"], 16) == [{"path": str(tmp_path / "rows.csv"), "start": 0, "stop": -1}]
    assert predict_with_ray([tmp_path / "rows.csv"], model, tmp_path / "out.parquet", workers=1, chunk_rows=16) == 50
    got = pq.read_table(tmp_path / "out.parquet").to_pandas()
    predict_file(Predictor(model, threads=1), tmp_path / "rows.csv", tmp_path / "one.parquet", chunk_rows=16)
    pd.testing.assert_frame_equal(got, pq.read_table(tmp_path / "one.parquet").to_pandas())
    with pytest.raises(DataError, match="input not found"):
        predict_with_ray([tmp_path / "nowhere.h5"], model, tmp_path / "out2.parquet", workers=1)
    assert not list(tmp_path.glob("*out2*"))


def test_an_empty_input_gives_the_single_process_file_and_a_directory_is_refused(inputs, tmp_path):
    _, model, _ = inputs
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as handle:
        handle.create_dataset("embeddings", shape=(0, DIM), dtype="f4")
    for suffix in (".csv", ".parquet"):
        assert predict_with_ray([empty], model, tmp_path / f"ray{suffix}", workers=1) == 0
        predict_file(Predictor(model, threads=1), empty, tmp_path / f"local{suffix}")
        if suffix == ".csv":
            assert (tmp_path / "ray.csv").read_text() == (tmp_path / "local.csv").read_text()
        else:
            assert pq.read_table(tmp_path / "ray.parquet").equals(pq.read_table(tmp_path / "local.parquet"))
    (tmp_path / "old.parquet").mkdir()  # what an older `--engine ray` left: refused before any work, by both engines
    with pytest.raises(InvalidInput, match="is a directory"):
        predict_with_ray([empty], model, tmp_path / "old.parquet", workers=1)
    with pytest.raises(InvalidInput, match="is a directory"):
        predict_file(Predictor(model, threads=1), empty, tmp_path / "old.parquet")
