"""The `arginator` command, run as a user runs it: a real subprocess for the main paths, in-process for the rest."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arginator.cli import app
from tests.conftest import FAST

SET_FAST = [arg for override in FAST for arg in ("--set", override)]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "arginator.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def assert_complete_run(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"ffnn", "baseline"} <= set(metrics)
    assert all(
        (run / "figures" / name).exists() for name in ("confusion_matrix.png", "pr_curves.png", "learning_curves.png")
    )
    assert "| ffnn |" in (run / "report.md").read_text()
    return metrics


def test_train_multiclass_on_seed_layout(seed_layout, tmp_path):
    result = run_cli(
        "train", "--data", str(seed_layout), "--task", "multiclass", *SET_FAST, "--out", "run", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    metrics = assert_complete_run(tmp_path / "run")
    assert set(metrics["ffnn"]["per_class"]) == {"a", "b", "c", "d", "non"}
    assert "ffnn" in result.stdout and "baseline" in result.stdout


def test_train_binary_with_negative_class(seed_layout, tmp_path):
    result = run_cli(
        "train",
        "--data",
        str(seed_layout),
        "--task",
        "binary",
        "--negative",
        "non",
        *SET_FAST,
        "--out",
        "run",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    metrics = assert_complete_run(tmp_path / "run")
    assert metrics["evaluated_on"]["classes"] == ["non", "positive"]


def test_bad_file_gives_one_error_line_without_traceback(seed_layout, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in Path(seed_layout).glob("*.h5"):
        (broken / path.name).write_bytes(path.read_bytes())
    target = broken / "card_class_c_embeddings.h5"
    target.write_bytes(target.read_bytes()[:3000])
    result = run_cli("train", "--data", str(broken), *SET_FAST, "--out", "run", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "card_class_c_embeddings.h5" in errors[0]
    assert not (tmp_path / "run" / "model.ckpt").exists()


runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "nowhere"], "data path not found: nowhere"),
        (["train", "--data", ".", "--set", "train.epochs=3"], "unknown key 'train.epochs'"),
        (["train", "--data", ".", "--task", "regression"], "'data.task'"),
        (["train"], "--data is required"),
        (["train", "--resume"], "--resume needs --out"),
        (["evaluate", "--run", "not_a_run"], "not a trained run directory"),
    ],
)
def test_user_errors_are_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.stderr


def test_evaluate_and_resume_commands(seed_layout, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(seed_layout),
            *SET_FAST,
            "--set",
            "train.max_epochs=2",
            "--out",
            "run",
            "--no-evaluate",
        ],
    )
    assert first.exit_code == 0, first.output
    assert not (tmp_path / "run" / "metrics.json").exists()
    resumed = runner.invoke(app, ["train", "--resume", "--out", "run", "--set", "train.max_epochs=3", "--no-evaluate"])
    assert resumed.exit_code == 0, resumed.output
    assert "trained 3 epochs" in resumed.stderr
    evaluated = runner.invoke(app, ["evaluate", "--run", "run"])
    assert evaluated.exit_code == 0, evaluated.output
    assert_complete_run(tmp_path / "run")


def test_example_command_writes_seed_layout(tmp_path):
    result = runner.invoke(app, ["example", "--out", str(tmp_path / "ex")])
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "ex").glob("*.h5")) == [
        f"card_class_{label}_embeddings.h5" for label in ("a", "b", "c", "d", "non")
    ]
