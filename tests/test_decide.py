"""The one decision rule, its metadata and atomic writes: the small shared pieces every stage relies on."""

import json
import os

import numpy as np
import pytest

from arginator import atomic
from arginator.errors import ModelLoadError
from arginator.serving import metadata
from arginator.serving.decide import decide, label_names


def test_binary_layouts_of_every_producer_decide_alike():
    positive = np.array([0.2, 0.55, 0.7, 0.9])
    layouts = (positive, positive[:, None], np.column_stack([1 - positive, positive]))  # torch, ONNX, Predictor
    decisions = [decide(p, "binary", [0.6], min_confidence=0.6) for p in layouts]
    for decision in decisions:
        np.testing.assert_array_equal(decision.chosen, [0, 0, 1, 1])
        np.testing.assert_allclose(decision.confidence, [0.8, 0.45, 0.7, 0.9])
        np.testing.assert_array_equal(decision.abstained, [False, True, False, False])
    assert label_names(decisions[0].chosen, "binary", ["non", "arg"]) == ["non", "non", "arg", "arg"]


def test_multiclass_and_multilabel():
    p = np.array([[0.1, 0.7, 0.2], [0.4, 0.3, 0.3]])
    decision = decide(p, "multiclass", min_confidence=0.5)
    assert decision.chosen.tolist() == [1, 0] and decision.abstained.tolist() == [False, True]
    multi = decide(np.array([[0.9, 0.35, 0.1], [0.2, 0.2, 0.2]]), "multilabel", [0.5, 0.3, 0.5])
    assert multi.chosen.tolist() == [[1, 1, 0], [0, 0, 0]]
    np.testing.assert_allclose(multi.confidence, [0.35, 0.8])  # the least certain label's
    assert label_names(multi.chosen, "multilabel", ["x", "y", "z"]) == ["x;y", ""]
    with pytest.raises(ValueError, match="needs 3 threshold"):
        decide(np.zeros((1, 3)), "multilabel", [0.5])


def test_metadata_is_validated_when_read(tmp_path):
    good = metadata.build("ffnn", "binary", ["non", "arg"], 8, [0.4], "unirep256", "abc")
    raw = {metadata.PREFIX + key: value for key, value in good.items()}
    info = metadata.decode(raw, tmp_path / "model.onnx")
    assert info.classes == ["non", "arg"] and info.thresholds == [0.4] and info.outputs == 1
    bad = raw | {metadata.PREFIX + "thresholds": json.dumps([0.4, 0.5])}
    with pytest.raises(ModelLoadError, match="2 thresholds in the metadata for a binary model"):
        metadata.decode(bad, tmp_path / "model.onnx")
    with pytest.raises(ModelLoadError, match="unknown task 'regression'"):
        metadata.decode(raw | {metadata.PREFIX + "task": "regression"}, tmp_path / "model.onnx")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = atomic.write_text(tmp_path / "metrics.json", "old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as partial:
        partial.write_text("half of the ne")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    atomic.write_json(target, {"new": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert json.loads(target.read_text()) == {"new": 1} and target.stat().st_mode & 0o777 == 0o666 & ~umask
