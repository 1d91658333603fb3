"""Sweeps: Optuna over configs/sweep.yaml on generated data (SQLite), and two workers on one PostgreSQL study."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import optuna
import pandas as pd
import pytest
import yaml

from arginator.config import DataConfig, load_config
from arginator.data.splits import make_split, write_split
from arginator.data.tables import load_embeddings
from arginator.errors import ConfigError
from arginator.tuning.sweep import config_sections, dvc_exp_run, load_space, run_sweep, with_params
from arginator.tuning.wandb_sweep import write_wandb_config
from tests.conftest import FAST, free_port

ROOT = Path(__file__).resolve().parents[1]


def small_space(tmp_path: Path, trials: int = 4, rescore_top: int = 1) -> Path:
    """The project's search space with few trials and epochs, so a test sweep takes seconds."""
    space = yaml.safe_load((ROOT / "configs" / "sweep.yaml").read_text())
    space["parameters"]["width"] = {"type": "int", "low": 16, "high": 64, "log": True}
    space["sweep"] |= {"trials": trials, "max_epochs": 4, "startup_trials": 2, "warmup_epochs": 1}
    space["sweep"] |= {"rescore_top": rescore_top, "folds": 2}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


@pytest.fixture
def grouped(seed_layout: Path, tmp_path: Path) -> tuple[Path, Path, DataConfig]:
    """The seed layout with its families as groups, and a grouped split file."""
    data = DataConfig(labels_file=str(seed_layout / "groups.csv"), group_column="family")
    table = load_embeddings(seed_layout, data)
    split = tmp_path / "split.csv"
    write_split(table, make_split(table, data), split)
    return seed_layout, split, data


def test_sweep_writes_trials_plots_and_a_best_config_that_train_accepts(grouped, tmp_path):
    data_path, split, data = grouped
    base = load_config(None, FAST)
    base.data = data
    out = tmp_path / "sweep"
    summary = run_sweep(data_path, base, split, out, small_space(tmp_path), rescore=True)
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == summary["trials"] == 4
    assert trials["number"].is_unique and {"params_depth", "params_width", "value", "state"} <= set(trials.columns)
    for plot in ("history.png", "parallel_coordinate.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    assert set(summary["rescored"]) == {"defaults", f"trial {summary['best_validation']['trial']}"}
    for entry in summary["rescored"].values():
        assert 0 <= entry["macro_f1"]["mean"] <= 1 and entry["macro_f1"]["n"] == 2
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best == summary["best_config"]
    # best.yaml is a config file like any other: it loads on top of the defaults
    loaded = load_config([out / "best.yaml"])
    for section, values in best.items():
        for key, value in values.items():
            assert getattr(getattr(loaded, section), key) == value
    # the same study resumes: two more trials are added to the four
    again = run_sweep(data_path, base, split, out, small_space(tmp_path, trials=2), rescore=False)
    assert again["trials"] == 6


def test_depth_and_width_make_halving_hidden_sizes_and_dvc_overrides():
    base = load_config(None, [])
    sections = config_sections({"depth": 3, "width": 512, "dropout": 0.1, "class_weights": False}, base)
    assert sections == {
        "model": {"hidden_sizes": [512, 256, 128], "dropout": 0.1},
        "train": {"class_weights": False},
    }
    assert with_params(base, {"depth": 3, "width": 512}).model.hidden_sizes == [512, 256, 128]
    line = dvc_exp_run(sections)
    assert "-S 'configs/model.yaml:model.hidden_sizes=[512, 256, 128]'" in line
    assert "-S 'configs/train.yaml:train.class_weights=false'" in line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("parameters: {depht: {type: int, low: 1, high: 4}}", "unknown sweep parameter 'depht'"),
        ("parameters: {depth: {type: int, low: 4, high: 1}}", "low < high"),
        ("parameters: {norm: {type: categorical}}", "needs choices"),
        ("parameters: {dropout: {type: normal}}", "use int, float or categorical"),
        ("parameters: {}", "no parameters"),
        ("parameters: {depth: {type: int, low: 1, high: 2}}\nsweep: {trails: 3}", "bad sweep settings"),
    ],
)
def test_bad_search_spaces_are_refused_with_a_clear_message(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_space(path)


def test_the_shipped_search_space_covers_the_issue_s_dimensions():
    space, settings = load_space(ROOT / "configs" / "sweep.yaml")
    names = {p.name: p for p in space}
    assert set(names) == {
        "depth", "width", "dropout", "learning_rate", "weight_decay", "batch_size", "class_weights", "norm",
        "activation", "contrastive",
    }  # fmt: skip
    assert names["contrastive"].choices == ("none", "supcon")
    assert (names["depth"].low, names["depth"].high) == (1, 4)
    assert (names["width"].low, names["width"].high, names["width"].log) == (64, 2048, True)
    assert names["learning_rate"].log and settings.trials == 40


def _postgres_binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (script/bootstrap does)")
    return found[-1].parent


@pytest.fixture
def postgres():
    """A private PostgreSQL server on a free loopback port, in a temporary directory, stopped afterwards."""
    binaries = _postgres_binaries()
    # Not pytest's tmp_path: its parents are private to this user, and the server may have to run as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="arginator-postgres-"))
    data, port = root / "data", free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the `postgres` user Debian's package creates
        shutil.chown(root, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    user = "postgres" if run_as else getpass.getuser()
    initdb = [*run_as, binaries / "initdb", "-D", data, "-U", user, "-A", "trust"]
    subprocess.run(initdb, check=True, capture_output=True)
    subprocess.run(
        [*run_as, binaries / "pg_ctl", "-D", data, "-l", root / "log", "-w", "-o", f"-p {port} -k {root} -h 127.0.0.1",
         "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, binaries / "pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_study_on_postgresql(grouped, tmp_path, postgres):
    data_path, split, data = grouped
    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"data": data.model_dump(mode="json")}))
    space = small_space(tmp_path, trials=3)
    command = [
        sys.executable, "-m", "arginator.cli", "sweep", "--data", str(data_path), "--split", str(split),
        "--space", str(space), "--storage", postgres, "--study-name", "shared", "--no-rescore", "--config", str(config),
        *[arg for override in FAST for arg in ("--set", override)],
    ]  # fmt: skip
    env = os.environ | {"WANDB_MODE": "disabled"}
    workers = [
        subprocess.Popen([*command, "--out", str(tmp_path / f"worker{i}"), "--seed", str(i)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]  # fmt: skip
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=postgres)
    numbers = [trial.number for trial in study.trials]
    assert len(numbers) == 6 and len(set(numbers)) == 6  # no trial number handed out twice
    by_worker = pd.Series([trial.user_attrs["worker"] for trial in study.trials]).value_counts()
    assert len(by_worker) == 2 and (by_worker == 3).all()  # both processes contributed their three trials


def test_wandb_sweep_config_is_generated_from_the_search_space_and_valid_for_wandb(tmp_path):
    generated = tmp_path / "wandb_sweep.yaml"
    write_wandb_config(ROOT / "configs" / "sweep.yaml", generated)
    assert generated.read_text() == (ROOT / "configs" / "wandb_sweep.yaml").read_text()  # the two agree
    config = yaml.safe_load(generated.read_text())
    space, _ = load_space(ROOT / "configs" / "sweep.yaml")
    assert set(config["parameters"]) == {p.name for p in space}
    schema = json.loads((ROOT / "tests" / "data" / "wandb_sweep_schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(config)
    broken = config | {"parameters": config["parameters"] | {"depth": {"distribution": "int_uniform", "min": "one"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_wandb_backend_refuses_offline_with_a_clear_message(grouped):
    data_path, split, _ = grouped
    env = os.environ | {"WANDB_MODE": "offline", "WANDB_API_KEY": ""}
    result = subprocess.run(
        [sys.executable, "-m", "arginator.cli", "sweep", "--backend", "wandb", "--data", str(data_path),
         "--split", str(split)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "W&B sweeps need W&B's server" in result.stderr and "--backend optuna" in result.stderr
