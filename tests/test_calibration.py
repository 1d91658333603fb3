"""Calibration: a miscalibrated model gets a lower ECE on held-out rows, keeps its decisions, and ONNX agrees."""

import numpy as np
import pytest
import torch

from arginator.config import ModelConfig, TrainConfig
from arginator.serving.decide import decide
from arginator.shipping.export import export_ffnn, onnx_probabilities
from arginator.training.calibration import calibrate, carry_thresholds, fit_temperature, uncalibrated
from arginator.training.metrics import expected_calibration_error, reliability_points
from arginator.training.model import EmbeddingClassifier

DIM = 16


def overconfident_model(task: str, classes: list[str], rng: np.random.Generator) -> EmbeddingClassifier:
    """A linear model whose logits are 8x too large: its ranking is right, but it is far too sure of itself."""
    module = EmbeddingClassifier(
        DIM, classes, task, ModelConfig(hidden_sizes=[], dropout=0).model_dump(), TrainConfig().model_dump()
    )
    with torch.no_grad():
        module.net.layers[-1].weight.copy_(torch.from_numpy(rng.normal(size=(module.net.layers[-1].out_features, DIM))))
        module.net.layers[-1].weight.mul_(8.0)
        module.net.layers[-1].bias.zero_()
    return module.eval()


def sampled_labels(module: EmbeddingClassifier, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels drawn from the probabilities the model would give with logits 8x smaller: the truth it overstates."""
    probabilities = uncalibrated(module).predict_proba(x / 8.0)  # linear, no bias: logits / 8
    if module.task == "binary":
        return (rng.random(len(x)) < probabilities).astype(np.float32)
    return np.array([rng.choice(len(row), p=row / row.sum()) for row in probabilities])


@pytest.mark.parametrize(("task", "classes"), [("multiclass", ["a", "b", "c"]), ("binary", ["non", "arg"])])
def test_calibration_lowers_ece_on_held_out_rows_and_keeps_decisions(task, classes):
    rng = np.random.default_rng(0)
    module = overconfident_model(task, classes, rng)
    x_val, x_test = rng.normal(size=(600, DIM)).astype(np.float32), rng.normal(size=(600, DIM)).astype(np.float32)
    y_val, y_test = sampled_labels(module, x_val, rng), sampled_labels(module, x_test, rng)
    before = module.predict_proba(x_test)
    calibrate(module, x_val, y_val)
    after = module.predict_proba(x_test)
    ece_before = expected_calibration_error(*reliability_points(y_test, before, task))
    ece_after = expected_calibration_error(*reliability_points(y_test, after, task))
    assert ece_before > 0.1 and ece_after < ece_before / 2
    if task == "multiclass":  # temperature scaling never changes the argmax
        np.testing.assert_array_equal(decide(before, task).chosen, decide(after, task).chosen)
    np.testing.assert_allclose(uncalibrated(module).predict_proba(x_test), before, atol=1e-6)


def test_temperature_of_a_calibrated_model_is_one():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4000, 3)) * 2
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in probabilities])  # labels drawn from the model's own probabilities
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=0.1)


def test_the_onnx_graph_carries_the_calibration(tmp_path):
    rng = np.random.default_rng(2)
    module = overconfident_model("multiclass", ["a", "b", "c"], rng)
    x = rng.normal(size=(300, DIM)).astype(np.float32)
    calibrate(module, x, sampled_labels(module, x, rng))
    assert not torch.allclose(module.net.output_scale, torch.ones(3))
    path = export_ffnn(module, {"task": "multiclass"}, tmp_path / "model.onnx")
    np.testing.assert_allclose(onnx_probabilities(path, x), module.predict_proba(x), atol=1e-5)


def test_carried_thresholds_take_the_same_decisions():
    rng = np.random.default_rng(3)
    module = overconfident_model("multilabel", ["x", "y"], rng)
    x = rng.normal(size=(500, DIM)).astype(np.float32)
    y = np.column_stack([sampled_labels(overconfident_model("binary", ["n", "p"], rng), x, rng) for _ in range(2)])
    raw_thresholds = [0.3, 0.8]
    before = decide(module.predict_proba(x), "multilabel", raw_thresholds).chosen
    calibration = calibrate(module, x, y)
    carried = carry_thresholds(raw_thresholds, calibration, "multilabel")
    assert carried != raw_thresholds
    np.testing.assert_array_equal(decide(module.predict_proba(x), "multilabel", carried).chosen, before)


def test_calibration_that_does_not_carry_across_groups_is_not_applied():
    """One validation group is overconfident, the other underconfident: a map fitted on either hurts the other."""
    rng = np.random.default_rng(4)
    module = overconfident_model("multiclass", ["a", "b", "c"], rng)
    x = rng.normal(size=(1200, DIM)).astype(np.float32)
    raw = uncalibrated(module).predict_proba(x)
    sharper = uncalibrated(module).predict_proba(x * 3.0)  # the truth of group "u": even surer than the model
    softer = uncalibrated(module).predict_proba(x / 8.0)  # the truth of group "o": far less sure
    groups = np.array(["o"] * 600 + ["u"] * 600, dtype=object)
    truth = np.concatenate([softer[:600], sharper[600:]])
    y = np.array([rng.choice(3, p=row / row.sum()) for row in truth])
    calibration = calibrate(module, x, y, groups)
    assert calibration["applied"] is False and calibration["cross_fitted_ece_gain"] <= 0
    np.testing.assert_allclose(module.predict_proba(x), raw, atol=1e-6)  # left uncalibrated
    assert calibrate(module, x, y)["applied"] is True  # random halves: both kinds on each side, the map carries
