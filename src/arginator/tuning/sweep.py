"""Hyperparameter sweeps with Optuna: TPE over `configs/sweep.yaml`, bad trials pruned through a Lightning callback.

The objective is the FFNN's best validation macro-F1 on the grouped split (never the test split); each trial trains
exactly as `arginator train` does, without the baseline, calibration or novelty (they do not change the objective).
The best few trials and the defaults are then re-scored with grouped cross-validation, and that decides: a sweep's
best validation score is optimistic, since it is the maximum of many noisy scores on the same validation rows.

The study lives in Optuna's RDB storage, any SQLAlchemy URL: a SQLite file by default, PostgreSQL for many workers
(each `arginator sweep --storage postgresql://... --study-name S` process adds its trials to the one study; Optuna's
storage hands out trial numbers, so nothing here coordinates workers). The same study name resumes.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import sqlalchemy.exc
import yaml
from optuna_integration import PyTorchLightningPruningCallback

from arginator import atomic
from arginator.config import RunConfig, config_from_dict
from arginator.data.splits import PreparedData, prepare_dataset
from arginator.errors import ConfigError
from arginator.training.crossval import cross_validate
from arginator.training.train import _fit

log = logging.getLogger(__name__)
MONITOR = "val_macro_f1"
# Where each sampled parameter goes in the run configuration; depth and width together make model.hidden_sizes.
TARGETS = {
    "dropout": ("model", "dropout"),
    "activation": ("model", "activation"),
    "norm": ("model", "norm"),
    "learning_rate": ("train", "learning_rate"),
    "weight_decay": ("train", "weight_decay"),
    "batch_size": ("train", "batch_size"),
    "class_weights": ("train", "class_weights"),
    "contrastive": ("model", "contrastive"),
}
KNOWN = {*TARGETS, "depth", "width"}


@dataclass(frozen=True)
class Parameter:
    """One dimension of the search space."""

    name: str
    kind: str  # int | float | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SweepSettings:
    """The `sweep:` section of the sweep file."""

    trials: int = 40
    max_epochs: int = 25
    rescore_top: int = 3
    folds: int = 5
    startup_trials: int = 5
    warmup_epochs: int = 3


def load_space(path: Path | str) -> tuple[list[Parameter], SweepSettings]:
    """Read and check a sweep file: `parameters:` (name -> type, low/high/log or choices) and `sweep:` settings."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read sweep file {path}: {exc}") from None
    parameters = []
    for name, spec in (raw.get("parameters") or {}).items():
        if name not in KNOWN:
            raise ConfigError(f"{path}: unknown sweep parameter '{name}' (known: {', '.join(sorted(KNOWN))})")
        kind = spec.get("type")
        if kind in ("int", "float"):
            low, high = spec.get("low"), spec.get("high")
            if low is None or high is None or not low < high:
                raise ConfigError(f"{path}: parameter '{name}' needs low < high")
            parameters.append(Parameter(name, kind, float(low), float(high), bool(spec.get("log", False))))
        elif kind == "categorical":
            choices = tuple(spec.get("choices") or ())
            if not choices:
                raise ConfigError(f"{path}: categorical parameter '{name}' needs choices")
            parameters.append(Parameter(name, kind, choices=choices))
        else:
            raise ConfigError(f"{path}: parameter '{name}' has type {kind!r}; use int, float or categorical")
    if not parameters:
        raise ConfigError(f"{path}: no parameters to search")
    try:
        settings = SweepSettings(**(raw.get("sweep") or {}))
    except TypeError as exc:
        raise ConfigError(f"{path}: bad sweep settings: {exc}") from None
    return parameters, settings


def suggest(trial: optuna.Trial, space: list[Parameter]) -> dict[str, Any]:
    """Sample one point of the space through the trial (so the sampler sees every dimension)."""
    values: dict[str, Any] = {}
    for p in space:
        if p.kind == "int":
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        elif p.kind == "float":
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
        else:
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
    return values


def config_sections(params: dict[str, Any], base: RunConfig) -> dict[str, dict[str, Any]]:
    """The `model:` / `train:` settings a parameter set stands for (what best.yaml holds)."""
    sections: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    if "depth" in params or "width" in params:
        depth = int(params.get("depth", len(base.model.hidden_sizes)))
        width = int(params.get("width", base.model.hidden_sizes[0] if base.model.hidden_sizes else 256))
        sections["model"]["hidden_sizes"] = [
            max(16, width // 2**layer) for layer in range(depth)
        ]  # halving, as the defaults
    for name, (section, key) in TARGETS.items():
        if name in params:
            sections[section][key] = params[name]
    return {name: values for name, values in sections.items() if values}


def with_params(base: RunConfig, params: dict[str, Any]) -> RunConfig:
    """`base` with a parameter set applied (validated like any configuration)."""
    raw = base.model_dump(mode="json")
    for section, values in config_sections(params, base).items():
        raw[section].update(values)
    return config_from_dict(raw, "sweep parameters")


def _trial_config(base: RunConfig, params: dict[str, Any], settings: SweepSettings) -> RunConfig:
    config = with_params(base, params)
    config.train.max_epochs = settings.max_epochs
    config.train.calibrate = False  # neither changes validation macro-F1; the winner gets them when trained for real
    config.train.novelty_quantile = 0.0
    config.train.progress_bar = False
    config.train.wandb.mode = "disabled"
    return config


def best_validation_score(run_dir: Path) -> float:
    """The best epoch's validation macro-F1 of a run, from its CSV log (NaN if none was logged)."""
    frame = pd.read_csv(run_dir / "logs" / "metrics.csv")
    values = frame[MONITOR].dropna() if MONITOR in frame else pd.Series(dtype=float)
    return float(values.max()) if len(values) else float("nan")


def make_objective(
    data: PreparedData, data_path: Path | str, base: RunConfig, space: list[Parameter], settings: SweepSettings
):
    """The function Optuna maximises: a trial's best validation macro-F1 (pruned early when it lags)."""

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        config = _trial_config(base, params, settings)
        pruning = PyTorchLightningPruningCallback(trial, monitor=MONITOR)
        with tempfile.TemporaryDirectory(prefix="arginator-sweep-") as tmp:
            run_dir = Path(tmp) / "run"
            # A lagging trial raises optuna.TrialPruned from the callback; Optuna records it as pruned.
            _fit(data, data_path, config, run_dir, resume=False, extra_callbacks=[pruning], with_baseline=False)
            return best_validation_score(run_dir)

    return objective


def _yaml_value(value: Any) -> str:
    """A value as one line of YAML (`false`, `[512, 256]`, `0.001`, `relu`)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(item) for item in value) + "]"
    return str(value)


def dvc_exp_run(sections: dict[str, dict[str, Any]]) -> str:
    """The `dvc exp run -S ...` line that runs the pipeline with these settings (model.yaml and train.yaml)."""
    sets = [
        f"-S 'configs/{section}.yaml:{section}.{key}={_yaml_value(value)}'"
        for section, values in sections.items()
        for key, value in values.items()
    ]
    return " ".join(["dvc exp run", *sets])


def _plots(study: optuna.Study, out: Path) -> list[str]:
    """Optuna's own history, parameter-importance and parallel-coordinate plots, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplt

    written = []
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    makers = {"history": oplt.plot_optimization_history, "parallel_coordinate": oplt.plot_parallel_coordinate}
    if len(complete) >= 2:
        makers["importance"] = oplt.plot_param_importances
    for name, maker in makers.items():
        try:
            axes = maker(study)
        except (ValueError, RuntimeError) as exc:  # e.g. importance when every trial scored the same
            log.warning("no %s plot: %s", name, exc)
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(9, 5.5)
        figure.tight_layout()
        with atomic.atomic_path(out / f"{name}.png") as partial:
            figure.savefig(partial, dpi=100, format="png")
        plt.close(figure)
        written.append(f"{name}.png")
    return written


def rescore_candidates(
    data_path: Path | str, base: RunConfig, split_file: Path | str, candidates: dict[str, dict[str, Any]], folds: int
) -> dict[str, Any]:
    """Grouped cross-validation of each candidate parameter set, on the same folds; paired with the first one.

    Returns:
        Per candidate: its parameters, the FFNN macro-F1 per fold and as mean ± sd, and the paired difference from
        the first candidate (the defaults) with the folds it won.
    """
    scored: dict[str, Any] = {}
    reference: list[float] | None = None
    for name, params in candidates.items():
        config = with_params(base, params)
        config.train.novelty_quantile = 0.0
        with tempfile.TemporaryDirectory(prefix="arginator-rescore-") as tmp:
            cv = cross_validate(data_path, config, split_file, tmp, k=folds, only=("grouped",))
        per_fold = [row["ffnn"]["macro_f1"] for row in cv["grouped"]["folds"]]
        entry: dict[str, Any] = {
            "params": params,
            "folds": per_fold,
            "macro_f1": cv["grouped"]["summary"]["ffnn"]["macro_f1"],
        }
        if reference is None:
            reference = per_fold
        else:
            differences = np.asarray(per_fold) - np.asarray(reference)
            entry["difference_from_first"] = {
                "mean": float(differences.mean()),
                "sd": float(differences.std(ddof=1)) if len(differences) > 1 else 0.0,
                "won": int((differences > 0).sum()),
                "n": len(differences),
            }
        scored[name] = entry
        log.info(
            "re-scored %s: grouped CV macro-F1 %.3f +- %.3f", name, entry["macro_f1"]["mean"], entry["macro_f1"]["sd"]
        )
    return scored


def _open_study(study_name: str, storage: str, seed: int, settings: SweepSettings) -> optuna.Study:
    """Create the study, or load it when it exists; retried, since workers started together race to create it."""
    for attempt in range(5):
        try:
            return optuna.create_study(
                study_name=study_name,
                storage=storage,
                direction="maximize",
                sampler=optuna.samplers.TPESampler(seed=seed),
                pruner=optuna.pruners.MedianPruner(
                    n_startup_trials=settings.startup_trials, n_warmup_steps=settings.warmup_epochs
                ),
                load_if_exists=True,
            )
        except (optuna.exceptions.DuplicatedStudyError, sqlalchemy.exc.SQLAlchemyError) as exc:
            # The loser of a race on the schema or the study row; a real connection problem fails every attempt.
            if attempt == 4:
                raise ConfigError(f"cannot open study {study_name} in {storage}: {exc}") from None
            log.info("study %s: retrying after %s", study_name, type(exc).__name__)
            time.sleep(0.5 + random.random() * (attempt + 1))
    raise AssertionError("unreachable")


def run_sweep(
    data_path: Path | str,
    base: RunConfig,
    split_file: Path | str,
    out_dir: Path | str,
    space_file: Path | str,
    trials: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    rescore: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Run (or resume) a study, write its trials, plots and best configuration; re-score the best by grouped CV.

    Args:
        data_path: embeddings with labels.
        base: the configuration every trial starts from (the dataset's data section, the default model and train).
        split_file: the grouped split (`arginator split`): trials train on its train rows and score its validation
            rows; its groups make the cross-validation folds of the re-scoring.
        out_dir: where trials.csv, best.yaml, summary.json and the plots go (the SQLite study too, by default).
        space_file: the search space (`configs/sweep.yaml`).
        trials: trials this process runs (default: the sweep file's); other workers may add theirs to the study.
        storage: an SQLAlchemy URL (default: `sqlite:///<out_dir>/study.db`).
        study_name: the study to create or resume (default: `arginator-<data file's folder>`).
        rescore: re-score the best trials and the defaults with grouped cross-validation (which then decides).
        seed: the TPE sampler's seed.

    Returns:
        The summary written to summary.json.
    """
    space, settings = load_space(space_file)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    study_name = study_name or f"arginator-{Path(data_path).parent.name or Path(data_path).stem}"
    data = prepare_dataset(data_path, base.data, Path(split_file), write=False)
    study = _open_study(study_name, storage, seed, settings)
    study.optimize(make_objective(data, data_path, base, space, settings), n_trials=trials or settings.trials)
    frame = study.trials_dataframe(attrs=("number", "value", "params", "state", "duration", "user_attrs"))
    atomic.write_text(out / "trials.csv", frame.to_csv(index=False))
    plots = _plots(study, out)
    complete = sorted(
        (t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value, reverse=True
    )
    if not complete:
        raise ConfigError(f"study {study_name} has no complete trial (all pruned or failed)")
    summary: dict[str, Any] = {
        "study": study_name,
        "trials": len(study.trials),
        "complete": len(complete),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "best_validation": {"trial": complete[0].number, "value": complete[0].value, "params": complete[0].params},
        "plots": plots,
    }
    winner = complete[0].params
    if rescore:
        candidates = {"defaults": {}} | {f"trial {t.number}": t.params for t in complete[: settings.rescore_top]}
        summary["rescored"] = rescore_candidates(data_path, base, split_file, candidates, settings.folds)
        best_name = max(summary["rescored"], key=lambda n: summary["rescored"][n]["macro_f1"]["mean"])
        summary["chosen"] = best_name
        winner = summary["rescored"][best_name]["params"]
    best = config_sections(winner, base)
    dvc_command = dvc_exp_run(best)
    atomic.write_text(
        out / "best.yaml",
        f"# Best configuration of study {study_name} ({'grouped cross-validation' if rescore else 'validation'}).\n"
        "# arginator train --config configs/model.yaml --config configs/train.yaml --config configs/data/<dataset>.yaml"
        f" --config {out / 'best.yaml'} ...\n# The DVC pipeline: {dvc_command}\n"
        + yaml.safe_dump(best, sort_keys=True),
    )
    summary["best_config"] = best
    summary["dvc_exp_run"] = dvc_command
    atomic.write_json(out / "summary.json", summary)
    return summary
