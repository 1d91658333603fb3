"""The ONNX Runtime Predictor and streaming batch prediction, on real ONNX files and real embedding files."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from arginator.config import load_config
from arginator.data.readers import iter_chunks
from arginator.errors import DataError, InvalidInput, ModelLoadError
from arginator.serving.predictor import Predictor
from arginator.serving.streaming import predict_file
from arginator.shipping.export import export_run
from arginator.training.runs import load_model
from arginator.training.train import train_run
from tests.conftest import FAST, write_linear_onnx

DIM = 16
RNG = np.random.default_rng(7)
WEIGHTS = RNG.normal(size=(DIM, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def multiclass_model(tmp_path_factory):
    return write_linear_onnx(tmp_path_factory.mktemp("mc") / "model.onnx", WEIGHTS, "multiclass", ["x", "y", "z"])


@pytest.fixture
def rows():
    return np.random.default_rng(0).normal(size=(50, DIM)).astype(np.float32)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_predictor_on_a_trained_and_exported_run(seed_layout, tmp_path):
    run = tmp_path / "run"
    train_run(seed_layout, load_config(overrides=FAST), run)
    export_run(run, embedder="prott5")
    predictor = Predictor(run)  # a directory: picks model.onnx
    module, _ = load_model(run / "model.ckpt")
    x = np.random.default_rng(1).normal(size=(9, 1024)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict_proba(x), module.predict_proba(x), atol=1e-5)
    assert list(predictor.classes_) == list(module.classes)
    assert list(predictor.predict(x)) == [module.classes[i] for i in module.predict_proba(x).argmax(1)]
    assert predictor.info.embedder == "prott5" and predictor.input_dim == 1024
    # Calls of a few rows (the last one shorter) answer exactly as one call: probabilities and novelty, bit for bit.
    whole, split = Predictor(run, chunk_rows=len(x)).predict_details(x), Predictor(run, chunk_rows=4).predict_details(x)
    assert split.novelty is not None and len(split.novelty) == len(x)
    np.testing.assert_array_equal(split.probabilities, whole.probabilities)
    np.testing.assert_array_equal(split.novelty, whole.novelty)


def test_multiclass_probabilities_labels_and_abstention(multiclass_model, rows):
    predictor = Predictor(multiclass_model, min_confidence=0.9)
    expected = softmax(rows @ WEIGHTS)
    np.testing.assert_allclose(predictor.predict_proba(rows), expected, atol=1e-5)
    details = predictor.predict_details(rows)
    assert details.labels == [["x", "y", "z"][i] for i in expected.argmax(1)]
    np.testing.assert_array_equal(details.abstained, expected.max(1) < 0.9)
    assert 0 < details.abstained.sum() < len(rows)  # the flag separates rows, it is not constant
    single = predictor.predict_details(rows[0].tolist())  # one vector as a plain list
    assert single.labels == details.labels[:1]


def test_binary_uses_the_tuned_threshold(tmp_path, rows):
    weights = WEIGHTS[:, :1]
    predictor = Predictor(write_linear_onnx(tmp_path / "b.onnx", weights, "binary", ["non", "arg"], [0.8]))
    positive = 1 / (1 + np.exp(-(rows @ weights)[:, 0]))
    probabilities = predictor.predict_proba(rows)
    np.testing.assert_allclose(probabilities, np.stack([1 - positive, positive], 1), atol=1e-5)
    assert list(predictor.predict(rows)) == ["arg" if p >= 0.8 else "non" for p in positive]
    assert np.any((positive > 0.5) & (positive < 0.8))  # rows the 0.8 threshold decides differently from 0.5


def test_multilabel_labels_and_indicator_matrix(tmp_path, rows):
    path = write_linear_onnx(tmp_path / "m.onnx", WEIGHTS, "multilabel", ["p", "q", "r"], [0.5, 0.3, 0.7])
    predictor = Predictor(path)
    p = 1 / (1 + np.exp(-(rows @ WEIGHTS)))
    chosen = (p >= np.array([0.5, 0.3, 0.7])).astype(int)
    np.testing.assert_array_equal(predictor.predict(rows), chosen)
    assert predictor.predict_details(rows).labels == [";".join(np.array(["p", "q", "r"])[c == 1]) for c in chosen]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, DIM + 1)), f"expected {DIM} values per row, got {DIM + 1}"),
        (np.full((1, DIM), np.nan), "NaN or infinite"),
        (np.array([[1e39] * DIM]), "NaN or infinite"),  # beyond float32
        ([["a"] * DIM], "values must be numbers"),
        ([[0.0] * DIM, [0.0] * 3], f"rows must all have {DIM} values"),
        (np.zeros((0, DIM)), "no rows given"),
        (np.zeros((2, 2, DIM)), "expected one vector or a list of vectors"),
    ],
)
def test_bad_rows_are_refused_with_a_reason(multiclass_model, bad, message):
    with pytest.raises(InvalidInput, match=message):
        Predictor(multiclass_model).predict_proba(bad)


def test_model_files_that_cannot_be_served(tmp_path, multiclass_model):
    with pytest.raises(ModelLoadError, match="model not found"):
        Predictor(tmp_path / "missing.onnx")
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07not onnx at all")
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        Predictor(tmp_path / "corrupt.onnx")
    with pytest.raises(ModelLoadError, match="no ONNX model in"):
        Predictor(tmp_path)
    import onnx

    foreign = onnx.load(multiclass_model)
    del foreign.metadata_props[:]
    onnx.save(foreign, tmp_path / "foreign.onnx")
    with pytest.raises(ModelLoadError, match="not an arginator model"):
        Predictor(tmp_path / "foreign.onnx")
    two_columns = write_linear_onnx(tmp_path / "mismatch.onnx", WEIGHTS[:, :2], "binary", ["non", "arg"])
    with pytest.raises(ModelLoadError, match="should output 1 column"):
        Predictor(two_columns)


def write_inputs(directory, x):
    """The same rows in every supported layout."""
    ids = [f"r{i}" for i in range(len(x))]
    with h5py.File(directory / "matrix.h5", "w") as f:
        f["embeddings"], f["ids"] = x, np.array(ids, dtype="S")
    with h5py.File(directory / "per_id.h5", "w") as f:
        for i, row in zip(ids, x, strict=True):
            f[i] = row
    frame = pd.DataFrame(x, columns=[str(j) for j in range(x.shape[1])])
    frame.insert(0, "id", ids)
    frame.to_csv(directory / "table.csv", index=False)
    frame.to_parquet(directory / "table.parquet")
    pq.write_table(pa.table({"id": ids, "embedding": list(x)}), directory / "lists.parquet")
    np.savez(directory / "stored.npz", embeddings=x, ids=np.array(ids))
    np.savez_compressed(directory / "compressed.npz", embeddings=x, ids=np.array(ids))
    np.save(directory / "plain.npy", x)
    return ids


FORMATS = (
    "matrix.h5",
    "per_id.h5",
    "table.csv",
    "table.parquet",
    "lists.parquet",
    "stored.npz",
    "compressed.npz",
    "plain.npy",
)


@pytest.mark.parametrize("name", FORMATS)
def test_predict_file_streams_every_format(tmp_path, multiclass_model, rows, name):
    ids = write_inputs(tmp_path, rows)
    predictor = Predictor(multiclass_model)
    out = tmp_path / "out.csv"
    seen = []
    assert predict_file(predictor, tmp_path / name, out, chunk_rows=7, progress=seen.append) == len(rows)
    assert max(seen) <= 7 and sum(seen) == len(rows)
    result = pd.read_csv(out, dtype={"id": str})
    if name == "per_id.h5":  # one dataset per id: HDF5 lists them by name (r0, r1, r10, ...), so compare by id
        result = result.set_index("id").loc[ids].reset_index()
    expected = predictor.predict_details(rows)
    assert result["label"].tolist() == expected.labels
    np.testing.assert_allclose(result[["p_x", "p_y", "p_z"]].to_numpy(), expected.probabilities, atol=1e-5)
    assert result["id"].tolist() == (ids if name != "plain.npy" else [str(i) for i in range(len(rows))])


@pytest.mark.parametrize("name", FORMATS)
def test_windows_of_rows_tile_the_file(tmp_path, rows, name):
    # The Ray workers each read a window; the windows together must give every row once, in file order.
    import pyarrow.parquet as pq

    from arginator.data.readers import read_all, row_count

    write_inputs(tmp_path, rows)
    path = tmp_path / name
    if name == "table.parquet":  # several row groups, so that a window starts and ends inside them
        pq.write_table(pq.read_table(path), path, row_group_size=4)
    whole = read_all(path)
    total = row_count(path)
    assert total == (None if name in ("table.csv", "compressed.npz") else len(rows))  # no row index: one window
    for chunk_rows in (3, 50):
        pieces = [
            chunk
            for start in range(0, len(rows) + 5, 5)
            for chunk in iter_chunks(path, chunk_rows=chunk_rows, window=(start, start + 5))
        ]
        assert all(len(piece.ids) <= chunk_rows for piece in pieces)
        assert [i for piece in pieces for i in piece.ids] == whole.ids
        np.testing.assert_array_equal(np.concatenate([piece.vectors for piece in pieces]), whole.vectors)
    assert list(iter_chunks(path, window=(len(rows), None))) == []
    tail = [i for chunk in iter_chunks(path, chunk_rows=2, window=(len(rows) - 3, None)) for i in chunk.ids]
    assert tail == whole.ids[-3:]


def test_row_count_of_a_corrupt_file_is_a_clear_error(tmp_path):
    from arginator.data.readers import row_count
    from arginator.errors import DataError

    for name in ("bad.npy", "bad.npz", "bad.parquet"):
        (tmp_path / name).write_bytes(b"not what the suffix says")
        with pytest.raises(DataError, match="cannot read"):
            row_count(tmp_path / name)


def test_stored_npz_is_memory_mapped_not_loaded(tmp_path, rows):
    write_inputs(tmp_path, rows)
    from arginator.data.numpy_files import npz_member as _npz_member

    assert isinstance(_npz_member(tmp_path / "stored.npz", "embeddings"), np.memmap)
    with zipfile.ZipFile(tmp_path / "compressed.npz") as archive:
        assert archive.getinfo("embeddings.npy").compress_type == zipfile.ZIP_DEFLATED
    assert max(len(chunk) for chunk in (c.vectors for c in iter_chunks(tmp_path / "stored.npz", chunk_rows=8))) == 8


def test_parquet_output_and_failures_leave_no_partial_file(tmp_path, multiclass_model, rows):
    write_inputs(tmp_path, rows)
    predictor = Predictor(multiclass_model)
    out = tmp_path / "out.parquet"
    predict_file(predictor, tmp_path / "matrix.h5", out, chunk_rows=16)
    table = pd.read_parquet(out)
    assert list(table.columns) == ["id", "label", "confidence", "abstained", "p_x", "p_y", "p_z"]
    assert table["abstained"].dtype == bool and len(table) == len(rows)
    broken = rows.copy()
    broken[40, 3] = np.nan
    np.save(tmp_path / "broken.npy", broken)
    with pytest.raises(InvalidInput, match=r"chunk starting at id '32'.*NaN"):
        predict_file(predictor, tmp_path / "broken.npy", tmp_path / "broken.csv", chunk_rows=16)
    assert not list(tmp_path.glob("broken.csv*"))
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        predict_file(predictor, tmp_path / "empty.h5", tmp_path / "x.csv")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5"):
        predict_file(predictor, tmp_path / "bad.h5", tmp_path / "x.csv")
    with pytest.raises(InvalidInput, match="output must end in"):
        predict_file(predictor, tmp_path / "matrix.h5", tmp_path / "x.txt")


def run_predict(source, model, out):
    command = [sys.executable, "-m", "arginator.cli", "predict", str(source), "--model", str(model), "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_cli_predict(tmp_path, multiclass_model, rows):
    write_inputs(tmp_path, rows)
    ok = run_predict(tmp_path / "matrix.h5", multiclass_model, tmp_path / "p.csv")
    assert ok.returncode == 0, ok.stderr
    assert f"{len(rows)} rows" in ok.stdout and len(pd.read_csv(tmp_path / "p.csv")) == len(rows)
    wrong = run_predict(tmp_path / "matrix.h5", tmp_path / "nope.onnx", tmp_path / "q.csv")
    assert wrong.returncode == 2 and "error: model not found" in wrong.stderr and "Traceback" not in wrong.stderr


def test_serving_modules_import_no_training_stack():
    code = (
        "import sys, arginator.serving.api.app, arginator.serving.predictor, arginator.serving.streaming; "
        "print(sorted(m for m in ('torch', 'lightning', 'wandb', 'dvc', 'sklearn') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_empty_inputs_give_valid_empty_outputs(tmp_path, multiclass_model):
    predictor = Predictor(multiclass_model)
    header_only = tmp_path / "header.csv"
    header_only.write_text("id," + ",".join(str(j) for j in range(predictor.input_dim)) + "\n")
    assert predict_file(predictor, header_only, tmp_path / "out.csv") == 0
    assert predict_file(predictor, header_only, tmp_path / "out.parquet") == 0
    assert list(pd.read_parquet(tmp_path / "out.parquet").columns)[:4] == ["id", "label", "confidence", "abstained"]


def test_matrix_hdf5_with_misaligned_ids_is_refused(tmp_path):
    with h5py.File(tmp_path / "m.h5", "w") as handle:
        handle["embeddings"] = np.zeros((4, 3), np.float32)
        handle["ids"] = np.array([b"a", b"b", b"c"])
    with pytest.raises(DataError, match="4 vectors but 3 'ids' values"):
        list(iter_chunks(tmp_path / "m.h5"))
