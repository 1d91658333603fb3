import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from arginator.config import load_config
from arginator.errors import ModelLoadError
from arginator.serving.metadata import read as read_metadata
from arginator.shipping.export import ExportError, check_parity, export_ffnn, export_run, onnx_probabilities
from arginator.training.runs import load_baseline, load_model
from arginator.training.train import train_run
from tests.conftest import FAST


@pytest.fixture(scope="module", params=["multiclass", "binary"])
def exported(request, seed_layout, tmp_path_factory):
    overrides = [*FAST, f"data.task={request.param}"] + (["data.negative=non"] if request.param == "binary" else [])
    run = tmp_path_factory.mktemp(f"export_{request.param}") / "run"
    train_run(seed_layout, load_config(overrides=overrides), run)
    summary = export_run(run, embedder="prott5")
    return run, summary


def test_export_parity_and_files(exported):
    run, summary = exported
    for kind, name in (("ffnn", "model.onnx"), ("baseline", "baseline.onnx")):
        assert (run / name).exists() and summary[kind]["max_abs_difference"] <= 1e-5
    assert json.loads((run / "export.json").read_text())["test_rows"] == summary["test_rows"] > 0


def test_onnx_needs_only_onnxruntime_and_numpy(exported):
    run, _ = exported
    module, _ = load_model(run / "model.ckpt")
    x = np.random.default_rng(0).normal(size=(7, 1024)).astype(np.float32)
    probabilities = onnx_probabilities(run / "model.onnx", x)  # any batch size: the batch axis is dynamic
    np.testing.assert_allclose(probabilities.reshape(module.predict_proba(x).shape), module.predict_proba(x), atol=1e-5)
    baseline, _ = load_baseline(run / "baseline.json")
    baseline_probabilities = onnx_probabilities(run / "baseline.onnx", x[:1])
    np.testing.assert_allclose(baseline_probabilities.reshape(-1), baseline.predict_proba(x[:1]).reshape(-1), atol=1e-5)


def test_metadata_round_trip(exported):
    run, _ = exported
    module, thresholds = load_model(run / "model.ckpt")
    info = json.loads((run / "run.json").read_text())
    for name, kind in (("model.onnx", "ffnn"), ("baseline.onnx", "baseline")):
        metadata = read_metadata(run / name)
        assert metadata.classes == module.classes and metadata.task == module.task
        assert metadata.input_dim == 1024 and metadata.embedder == "prott5" and metadata.kind == kind
        assert metadata.data_fingerprint == info["data_fingerprint"]
    assert read_metadata(run / "model.onnx").thresholds == thresholds


def test_corrupt_or_foreign_onnx_is_a_clear_error(exported, tmp_path):
    run, _ = exported
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes((run / "model.onnx").read_bytes()[:500])
    with pytest.raises(ModelLoadError, match=r"cannot load corrupt.onnx: not a valid ONNX model"):
        read_metadata(corrupt)
    foreign = onnx.load(run / "baseline.onnx")
    del foreign.metadata_props[:]
    onnx.save(foreign, tmp_path / "foreign.onnx")
    with pytest.raises(
        ModelLoadError,
        match=r"foreign.onnx is not an arginator model: metadata \['task', 'classes', 'input_dim'\] missing",
    ):
        read_metadata(tmp_path / "foreign.onnx")
    with pytest.raises(ModelLoadError, match="model not found"):
        read_metadata(tmp_path / "absent.onnx")


def test_parity_failure_is_loud():
    reference = np.array([[0.7, 0.3], [0.2, 0.8]], dtype=np.float32)
    with pytest.raises(ExportError, match=r"ONNX output differs .* identical predictions: True"):
        check_parity(reference, reference + 1e-4, "multiclass", [], "run/ffnn")
    with pytest.raises(ExportError, match="identical predictions: False"):
        check_parity(reference, reference[:, ::-1].copy(), "multiclass", [], "run/ffnn")
    assert check_parity(reference, reference + 1e-7, "multiclass", [], "run/ffnn") < 1e-5


def test_export_is_byte_identical_whatever_the_checkout_path(exported, tmp_path):
    """No absolute source paths in the graph: the ship policy compares file sizes, which must not depend on them."""
    run, _ = exported
    module, _ = load_model(run / "model.ckpt")
    first = export_ffnn(module, {"task": module.task}, tmp_path / "a" / "model.onnx")
    second = export_ffnn(module, {"task": module.task}, tmp_path / "b" / "c" / "model.onnx")
    assert first.read_bytes() == second.read_bytes()
    assert not any(node.metadata_props for node in onnx.load(first).graph.node)
    assert str(Path(__file__).resolve().parents[1]).encode() not in first.read_bytes()


def test_onnx_novelty_matches_torch_and_novel_inputs_abstain(exported):
    from arginator.data.splits import prepare_dataset
    from arginator.serving.predictor import Predictor
    from arginator.training import runs

    run, summary = exported
    module, _ = load_model(run / runs.MODEL)
    info = runs.read_info(run)
    data = prepare_dataset(info["data_path"], runs.read_config(run).data, run / runs.SPLIT, write=False)
    x, _ = data.arrays("test")
    predictor = Predictor(run / "model.onnx")
    threshold = float(module.net.novelty_threshold)
    assert predictor.info.novelty_threshold == pytest.approx(threshold)
    np.testing.assert_allclose(predictor.predict_novelty(x), module.predict_novelty(x), rtol=1e-4, atol=1e-5)
    assert summary["ffnn"]["novelty_max_relative_difference"] <= 1e-4
    far = np.full((3, x.shape[1]), 50.0, dtype=np.float32)
    details = predictor.predict_details(np.r_[x[:5], far])
    assert details.abstained[-3:].all() and (details.novelty[-3:] > threshold).all()
    assert all(row["novelty"] is not None for row in details.records())
