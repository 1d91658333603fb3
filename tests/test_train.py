import json

import numpy as np
import pandas as pd
import pytest
import torch

from arginator.config import load_config
from arginator.errors import ConfigError
from arginator.train import class_weights, load_baseline, load_model, train_run, tune_thresholds
from tests.conftest import FAST


def test_multiclass_run_writes_a_self_contained_model(seed_layout, tmp_path):
    run = tmp_path / "run"
    result = train_run(seed_layout, load_config(overrides=FAST), run)
    for name in (
        "config.yaml",
        "run.json",
        "split.csv",
        "model.ckpt",
        "baseline.json",
        "logs/metrics.csv",
        "checkpoints/last.ckpt",
    ):
        assert (run / name).exists(), name
    assert result.best_checkpoint.exists()
    state = torch.load(run / "model.ckpt", weights_only=True)  # no pickle needed to read it
    hyper = state["hyper_parameters"]
    assert hyper["classes"] == ["a", "b", "c", "d", "non"]
    assert hyper["input_dim"] == 1024 and hyper["task"] == "multiclass"
    assert hyper["model_config"]["hidden_sizes"] == [64, 32]
    module, thresholds = load_model(run / "model.ckpt")
    assert thresholds == []
    info = json.loads((run / "run.json").read_text())
    split = pd.read_csv(run / "split.csv")
    assert info["split_sizes"] == split["split"].value_counts().to_dict() | info["split_sizes"]
    x = np.random.default_rng(0).normal(size=(3, 1024)).astype(np.float32)
    assert module.predict_proba(x).shape == (3, 5)
    baseline, _ = load_baseline(run / "baseline.json")
    assert baseline.predict_proba(x).shape == (3, 5)


def test_binary_run_tunes_thresholds(seed_layout, tmp_path):
    config = load_config(overrides=[*FAST, "data.task=binary", "data.negative=non"])
    train_run(seed_layout, config, tmp_path / "run")
    module, thresholds = load_model(tmp_path / "run" / "model.ckpt")
    assert module.classes == ["non", "positive"]
    assert len(thresholds) == 1 and 0.05 <= thresholds[0] <= 0.95
    _, baseline_thresholds = load_baseline(tmp_path / "run" / "baseline.json")
    assert len(baseline_thresholds) == 1


def test_multilabel_run(tmp_path):
    rng = np.random.default_rng(0)
    n, dim = 90, 32
    centres = rng.normal(0, 2, size=(3, dim))
    y = rng.random((n, 3)) < 0.4
    y[y.sum(1) == 0, 0] = True
    x = y.astype(float) @ centres + rng.normal(size=(n, dim))
    labels = [";".join(name for name, on in zip("xyz", row, strict=True) if on) for row in y]
    frame = pd.DataFrame(x.astype(np.float32), columns=[f"f{i}" for i in range(dim)])
    frame.insert(0, "label", labels)
    frame.insert(0, "id", [f"t{i}" for i in range(n)])
    frame.to_csv(tmp_path / "ml.csv", index=False)
    config = load_config(overrides=[*FAST, "data.task=multilabel", "train.max_epochs=15"])
    train_run(tmp_path / "ml.csv", config, tmp_path / "run")
    module, thresholds = load_model(tmp_path / "run" / "model.ckpt")
    assert module.classes == ["x", "y", "z"] and len(thresholds) == 3
    assert module.predict_proba(x[:4]).shape == (4, 3)


def test_same_seed_same_model(seed_layout, tmp_path):
    config = load_config(overrides=[*FAST, "train.max_epochs=2"])
    train_run(seed_layout, config, tmp_path / "one")
    train_run(seed_layout, config, tmp_path / "two")
    one = torch.load(tmp_path / "one" / "model.ckpt", weights_only=True)["state_dict"]
    two = torch.load(tmp_path / "two" / "model.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(one[key], two[key]) for key in one)


def test_resume_continues_from_last_checkpoint(seed_layout, tmp_path):
    run = tmp_path / "run"
    first = train_run(seed_layout, load_config(overrides=[*FAST, "train.max_epochs=2", "train.patience=50"]), run)
    assert first.epochs_trained == 2
    split_before = (run / "split.csv").read_text()
    with pytest.raises(ConfigError, match="already holds a trained run: pass --resume"):
        train_run(seed_layout, load_config(overrides=FAST), run)
    more = load_config([run / "config.yaml"], ["train.max_epochs=4"])
    resumed = train_run(None, more, run, resume=True)
    assert resumed.epochs_trained == 4
    epochs = pd.read_csv(run / "logs" / "metrics.csv")["epoch"].dropna().astype(int)
    assert sorted(set(epochs)) == [0, 1, 2, 3]
    assert (run / "split.csv").read_text() == split_before


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_run(None, None, tmp_path / "empty", resume=True)


def test_wandb_offline_needs_no_account(seed_layout, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    config = load_config(overrides=[*FAST, "train.max_epochs=1", "train.wandb.mode=auto"])
    train_run(seed_layout, config, tmp_path / "run")
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))


def test_class_weights_and_threshold_tuning():
    assert class_weights(np.array([0, 0, 0, 1]), "multiclass", 2) == pytest.approx([4 / 6, 2.0])
    assert class_weights(np.array([0.0, 0, 0, 1]), "binary", 2) == pytest.approx([3.0])
    y = np.array([0, 0, 0, 1, 1, 1], dtype=np.float32)
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.9])  # 0.5 misses two positives; ~0.33 separates perfectly
    (threshold,) = tune_thresholds(y, p, "binary")
    assert 0.3 < threshold <= 0.35
    assert tune_thresholds(np.array([0, 1]), np.array([0.1, 0.9]), "binary") == [0.5]  # ties keep 0.5
