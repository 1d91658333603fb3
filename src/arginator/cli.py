"""The `arginator` command: one subcommand per stage. Stage logic lives in the stage modules."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from arginator.errors import ArginatorError

app = typer.Typer(
    help="Train, compare and evaluate classifiers of protein and text embeddings.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ConfigFiles = Annotated[list[Path] | None, typer.Option("--config", "-c", help="YAML config file (repeatable).")]
Overrides = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override, e.g. train.max_epochs=20.")]


def _setup_logging() -> None:
    # Deprecation chatter from dependencies is not actionable for users of the command.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


def _summary(metrics: dict) -> str:
    header = f"{'model':<9} {'accuracy':>9} {'macro_f1':>9} {'mcc':>7}"
    rows = [
        f"{name:<9} {m['accuracy']:>9.3f} {m['macro_f1']:>9.3f} {m['mcc']:>7.3f}"
        for name, m in metrics.items()
        if name != "evaluated_on"
    ]
    return "\n".join([header, *rows])


@app.command()
def train(
    data: Annotated[
        Path | None, typer.Option(help="Per-class HDF5 directory, HDF5 file, or CSV/Parquet/NPZ table.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="multiclass | binary | multilabel (default: from config).")] = None,
    negative: Annotated[list[str] | None, typer.Option(help="Binary task: label(s) of the negative class.")] = None,
    positive: Annotated[list[str] | None, typer.Option(help="Binary task: label(s) of the positive class.")] = None,
    config: ConfigFiles = None,
    set_: Overrides = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default: models/<data>-<task>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete an existing run in --out first.")] = False,
    evaluate: Annotated[bool, typer.Option(help="Evaluate both models on the test split afterwards.")] = True,
) -> None:
    """Train the FFNN and the logistic-regression baseline, then evaluate both on the test split."""
    _setup_logging()
    try:
        from arginator.config import load_config

        overrides = []
        if task is not None:
            overrides.append(f"data.task={task}")
        if negative:
            overrides.append(f"data.negative={json.dumps(negative)}")
        if positive:
            overrides.append(f"data.positive={json.dumps(positive)}")
        overrides += set_ or []
        if resume:
            if out is None:
                raise ArginatorError("--resume needs --out DIR, the run to continue")
            stored = out / "config.yaml"
            run_config = load_config([stored, *(config or [])], overrides) if stored.exists() else None
        else:
            if data is None:
                raise ArginatorError("--data is required (a directory of per-class HDF5 files or a table)")
            run_config = load_config(config, overrides)
        if out is None:
            out = Path("models") / f"{data.stem if data else 'run'}-{run_config.data.task}"
        from arginator.evaluate import evaluate_run
        from arginator.train import train_run

        if overwrite and not resume and out.exists():
            if not (out / "config.yaml").exists():
                raise ArginatorError(f"--overwrite refuses to delete {out}: it is not a run directory")
            shutil.rmtree(out)
        typer.echo(f"training into {out}", err=True)
        result = train_run(data, run_config, out, resume=resume)
        typer.echo(f"trained {result.epochs_trained} epochs; best checkpoint {result.best_checkpoint}", err=True)
        if evaluate:
            metrics = evaluate_run(out)
            typer.echo(_summary(metrics))
            typer.echo(f"wrote {out / 'metrics.json'}, {out / 'report.md'} and {out / 'figures'}/", err=True)
    except ArginatorError as exc:
        raise _fail(exc) from None


@app.command("evaluate")
def evaluate_command(
    run: Annotated[Path, typer.Option(help="Run directory written by `arginator train`.")],
    data: Annotated[Path | None, typer.Option(help="External labelled data (default: the run's test split).")] = None,
) -> None:
    """Score the FFNN and the baseline; write metrics.json, figures/ and report.md into the run directory."""
    _setup_logging()
    try:
        from arginator.evaluate import evaluate_run

        metrics = evaluate_run(run, data)
        typer.echo(_summary(metrics))
    except ArginatorError as exc:
        raise _fail(exc) from None


@app.command()
def example(
    out: Annotated[Path, typer.Option(help="Directory for the generated per-class HDF5 files.")] = Path("data/example"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a generated example in the seed's layout: card_class_{a,b,c,d,non}_embeddings.h5 (1024 dims)."""
    from arginator.sources import write_example_dataset

    write_example_dataset(out, seed=seed)
    typer.echo(f"wrote example embeddings to {out}")


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("WANDB_SILENT", "true")
    app()


if __name__ == "__main__":
    main()
