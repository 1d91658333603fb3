import json
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from arginator.config import load_config
from arginator.errors import ConfigError, DataError
from arginator.shipping.export import export_run
from arginator.sources import write_example_dataset
from arginator.training.evaluate import evaluate_run
from arginator.training.runs import load_baseline, load_model
from arginator.training.train import class_weights, train_run, tune_thresholds
from tests.conftest import FAST, SMALL_CLASSES, random_vectors, write_class_file


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
    counted = split["split"].value_counts().to_dict()
    assert set(counted) == {"train", "val", "test"}
    assert info["split_sizes"] == counted and sum(counted.values()) == sum(SMALL_CLASSES.values())
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


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_training_and_evaluation_are_device_agnostic(seed_layout, tmp_path, device):
    """A short fit on every available device (CUDA when there is one); what is written always loads on the CPU."""
    config = load_config(
        overrides=[*FAST, "train.max_epochs=2", f"train.accelerator={'gpu' if device == 'cuda' else 'cpu'}"]
    )
    train_run(seed_layout, config, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "model.ckpt", map_location="cpu", weights_only=True)
    assert all(tensor.device.type == "cpu" for tensor in state["state_dict"].values())
    module, _ = load_model(tmp_path / "run" / "model.ckpt")
    x = np.random.default_rng(0).normal(size=(5, 1024)).astype(np.float32)
    on_cpu = module.predict_proba(x)
    module.to(device)
    np.testing.assert_allclose(module.predict_proba(x), on_cpu, atol=1e-5)  # numpy out, from any device
    metrics = evaluate_run(tmp_path / "run")
    assert metrics["ffnn"]["n"] == (pd.read_csv(tmp_path / "run" / "split.csv")["split"] == "test").sum()


class _Payload:
    """An object whose unpickling would create a file: what a malicious checkpoint could run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_refuses_a_checkpoint_that_needs_pickle(seed_layout, tmp_path):
    run = tmp_path / "run"
    train_run(seed_layout, load_config(overrides=[*FAST, "train.max_epochs=1"]), run)
    marker = tmp_path / "executed"
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    state["payload"] = _Payload(str(marker))
    torch.save(state, run / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError, match=r"cannot load checkpoint .*last.ckpt safely \(weights only\)"):
        train_run(None, None, run, resume=True)
    assert not marker.exists()


def test_overwrite_keeps_the_old_run_when_the_new_data_is_bad(seed_layout, tmp_path):
    run = tmp_path / "run"
    train_run(seed_layout, load_config(overrides=[*FAST, "train.max_epochs=1"]), run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    bad = tmp_path / "bad"
    bad.mkdir()
    write_class_file(bad / "card_class_a_embeddings.h5", random_vectors("a", 6))
    (bad / "card_class_b_embeddings.h5").write_bytes(b"truncated")
    with pytest.raises(DataError, match=r"card_class_b_embeddings\.h5"):
        train_run(bad, load_config(overrides=FAST), run, overwrite=True)
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

    class Fails(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):  # training itself fails: the old run comes back
        train_run(seed_layout, load_config(overrides=FAST), run, overwrite=True, callbacks=[Fails()])
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    train_run(seed_layout, load_config(overrides=[*FAST, "train.max_epochs=2"]), run, overwrite=True)
    assert not run.with_name("run.replaced").exists()
    assert len(pd.read_csv(run / "logs" / "metrics.csv")["epoch"].dropna().unique()) == 2


def test_run_files_work_from_any_working_directory(tmp_path, monkeypatch):
    project = tmp_path / "project"
    write_example_dataset(project / "data" / "seed", class_sizes=SMALL_CLASSES, seed=1)
    monkeypatch.chdir(project)
    config = load_config(
        overrides=[*FAST, "train.max_epochs=1", "data.labels_file=data/seed/groups.csv", "data.group_column=family"]
    )
    train_run(Path("data/seed"), config, Path("models/run"))
    monkeypatch.chdir(tmp_path)  # somewhere else: every stage must still find the data and the labels
    metrics = evaluate_run(project / "models" / "run")
    assert metrics["evaluated_on"]["n"] == sum(pd.read_csv(project / "models/run/split.csv")["split"] == "test")
    assert export_run(project / "models" / "run", tmp_path / "deploy")["ffnn"]["max_abs_difference"] < 1e-5


KILLED_MID_EPOCH = """
import os, signal, sys

import lightning as L

from arginator.config import load_config
from arginator.training.train import train_run


class KillMidEpoch(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 3 and batch_idx == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as if the machine died


train_run(sys.argv[1], load_config(overrides=sys.argv[3:]), sys.argv[2], callbacks=[KillMidEpoch()])
"""


def test_killed_mid_epoch_then_resumed_equals_an_uninterrupted_run(seed_layout, tmp_path):
    overrides = [*FAST, "train.max_epochs=7", "train.patience=50"]
    killed = tmp_path / "killed"
    driver = tmp_path / "driver.py"
    driver.write_text(KILLED_MID_EPOCH)
    crash = subprocess.run([sys.executable, str(driver), str(seed_layout), str(killed), *overrides], check=False)
    assert crash.returncode == -signal.SIGKILL
    assert (killed / "checkpoints" / "last.ckpt").exists() and not (killed / "model.ckpt").exists()
    resumed = subprocess.run(
        [sys.executable, "-m", "arginator.cli", "train", "--resume", "--out", str(killed), "--no-evaluate"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # The uninterrupted run also in a fresh process: same threads and library state as the killed one.
    straight = [sys.executable, "-m", "arginator.cli", "train", "--data", str(seed_layout), "--no-evaluate"]
    straight += ["--out", str(tmp_path / "straight"), *(f"--set={override}" for override in overrides)]
    assert subprocess.run(straight, capture_output=True, check=False).returncode == 0

    def validation_curve(run: Path) -> list[float]:
        frame = pd.read_csv(run / "logs" / "metrics.csv")
        return frame.dropna(subset=["val_macro_f1"]).groupby("epoch")["val_macro_f1"].last().tolist()

    assert len(validation_curve(tmp_path / "straight")) == 7
    assert validation_curve(killed) == validation_curve(tmp_path / "straight")
    one = torch.load(killed / "model.ckpt", weights_only=True)["state_dict"]
    two = torch.load(tmp_path / "straight" / "model.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(one[key], two[key]) for key in one)
