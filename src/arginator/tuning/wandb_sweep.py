"""W&B sweeps for online users: the same search space as the Optuna sweep, run by W&B's controller and `wandb.agent`.

`configs/wandb_sweep.yaml` is generated from `configs/sweep.yaml` (`arginator sweep --backend wandb --write-config`),
and a test checks that the two agree. W&B sweeps cannot run offline: the controller that proposes the next point
lives on W&B's server. Without an API key, or with W&B offline or disabled, `--backend wandb` refuses with a message
and the Optuna backend (offline, SQLite or PostgreSQL) is the one to use.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from arginator import atomic
from arginator.config import RunConfig
from arginator.data.splits import prepare_dataset
from arginator.errors import ConfigError
from arginator.training.train import _fit
from arginator.tuning.sweep import MONITOR, Parameter, SweepSettings, best_validation_score, load_space, with_params

HEADER = (
    "# Generated from configs/sweep.yaml by `arginator sweep --backend wandb --write-config`; do not edit by hand.\n"
)


def _parameter(p: Parameter) -> dict[str, Any]:
    if p.kind == "categorical":
        return {"values": list(p.choices)}
    if p.kind == "int":
        if p.log:  # W&B's integer log scale: log-uniform values rounded to multiples of q = 1
            return {"distribution": "q_log_uniform_values", "min": int(p.low), "max": int(p.high), "q": 1}
        return {"distribution": "int_uniform", "min": int(p.low), "max": int(p.high)}
    if p.log:
        return {"distribution": "log_uniform_values", "min": p.low, "max": p.high}
    return {"distribution": "uniform", "min": p.low, "max": p.high}


def wandb_sweep_config(space: list[Parameter], settings: SweepSettings) -> dict[str, Any]:
    """The W&B sweep configuration equivalent to an Optuna search space: Bayesian search, Hyperband stopping."""
    return {
        "method": "bayes",
        "metric": {"name": MONITOR, "goal": "maximize"},
        "early_terminate": {"type": "hyperband", "min_iter": settings.warmup_epochs, "eta": 3},
        "run_cap": settings.trials,
        "parameters": {p.name: _parameter(p) for p in space},
    }


def write_wandb_config(space_file: Path | str, out: Path | str) -> dict[str, Any]:
    """Write the W&B sweep configuration generated from `space_file`."""
    config = wandb_sweep_config(*load_space(space_file))
    atomic.write_text(Path(out), HEADER + yaml.safe_dump(config, sort_keys=False))
    return config


def require_online() -> None:
    """Refuse clearly when W&B cannot run a sweep here."""
    mode, key = os.environ.get("WANDB_MODE", ""), "set" if os.environ.get("WANDB_API_KEY") else "unset"
    if key == "unset" or mode in ("offline", "disabled", "dryrun"):
        raise ConfigError(
            "W&B sweeps need W&B's server (the sweep controller runs there): set WANDB_API_KEY and leave WANDB_MODE "
            f"unset or 'online' (now: WANDB_MODE={mode or 'unset'}, key {key}). Offline, use the Optuna backend: "
            "arginator sweep --backend optuna (SQLite, or PostgreSQL for many workers)."
        )


def run_wandb_sweep(
    data_path: Path | str, base: RunConfig, split_file: Path | str, space_file: Path | str, trials: int | None
) -> str:
    """Create a W&B sweep from the search space and run `trials` of it here with `wandb.agent`; returns its id."""
    require_online()
    import wandb

    space, settings = load_space(space_file)
    data = prepare_dataset(data_path, base.data, Path(split_file), write=False)
    sweep_id = wandb.sweep(wandb_sweep_config(space, settings), project=base.train.wandb.project)

    def trial() -> None:
        with wandb.init() as run:
            config = with_params(base, dict(run.config))
            config.train.max_epochs = settings.max_epochs
            config.train.progress_bar = False
            config.train.wandb.mode = "online"
            with tempfile.TemporaryDirectory(prefix="arginator-wandb-sweep-") as tmp:
                _fit(data, data_path, config, Path(tmp) / "run", resume=False, extra_callbacks=[], with_baseline=False)
                run.summary[f"best_{MONITOR}"] = best_validation_score(Path(tmp) / "run")

    wandb.agent(sweep_id, function=trial, count=trials or settings.trials)
    return sweep_id
