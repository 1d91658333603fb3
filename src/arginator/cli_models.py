"""`arginator sweep`, `register` and `resolve-model`: choosing, registering and finding models.

Kept apart from `cli.py` (one module per concern); the commands are added to the same `app`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from arginator.cli import ConfigFiles, Overrides, _fail, _setup_logging, app
from arginator.errors import ArginatorError, ConfigError


@app.command()
def sweep(
    data: Annotated[Path | None, typer.Option(help="Embeddings with labels (any supported layout).")] = None,
    split: Annotated[
        Path | None, typer.Option(help="The grouped split file (`arginator split`): trials score its val rows.")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Directory for trials.csv, best.yaml, summary.json, plots (and study.db).")
    ] = Path("reports/sweeps/default"),
    config: ConfigFiles = None,
    set_: Overrides = None,
    space: Annotated[Path, typer.Option(help="The search space.")] = Path("configs/sweep.yaml"),
    trials: Annotated[
        int | None, typer.Option(min=1, help="Trials this process runs (default: the space file's).")
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the study (default: sqlite in --out); e.g. postgresql://...")
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="Study to create or resume (workers share it by name).")
    ] = None,
    rescore: Annotated[bool, typer.Option(help="Re-score the best trials and the defaults by grouped CV.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
    backend: Annotated[
        str, typer.Option(help="optuna (offline; SQLite or PostgreSQL) | wandb (W&B's controller; needs a key).")
    ] = "optuna",
    write_config: Annotated[
        Path | None, typer.Option(help="wandb: only write the W&B sweep config generated from --space here.")
    ] = None,
) -> None:
    """Hyperparameter sweep (Optuna): validation macro-F1 of the grouped split, best trials re-scored by grouped CV."""
    _setup_logging()
    try:
        from arginator.config import load_config

        if backend not in ("optuna", "wandb"):
            raise ConfigError(f"--backend must be optuna or wandb, not {backend!r}")
        if backend == "wandb":
            from arginator.tuning.wandb_sweep import run_wandb_sweep, write_wandb_config

            if write_config is not None:
                write_wandb_config(space, write_config)
                typer.echo(f"wrote {write_config}")
            else:
                if data is None or split is None:
                    raise ConfigError("--data and --split are required (only --write-config needs neither)")
                sweep_id = run_wandb_sweep(data, load_config(config, set_ or []), split, space, trials)
                typer.echo(f"W&B sweep {sweep_id} done here; more agents: wandb agent {sweep_id}")
            return
        from arginator.tuning.sweep import run_sweep

        if data is None or split is None:
            raise ConfigError("--data and --split are required (only --write-config needs neither)")
        summary = run_sweep(
            data, load_config(config, set_ or []), split, out, space, trials, storage, study_name, rescore, seed
        )
    except ArginatorError as exc:
        raise _fail(exc) from None
    best = summary["best_validation"]
    typer.echo(
        f"{summary['trials']} trials ({summary['complete']} complete, {summary['pruned']} pruned); best validation "
        f"macro-F1 {best['value']:.3f} (trial {best['trial']})"
    )
    for name, entry in summary.get("rescored", {}).items():
        typer.echo(f"  grouped CV {name}: {entry['macro_f1']['mean']:.3f} +- {entry['macro_f1']['sd']:.3f}")
    typer.echo(f"best configuration: {out / 'best.yaml'}  (chosen: {summary.get('chosen', 'best validation')})")


@app.command()
def register(
    model: Annotated[Path, typer.Option(help="The model to register: deploy/<name>, an artifact of dvc.yaml.")],
    version: Annotated[str, typer.Option(help="Semantic version, e.g. v1.0.0.")],
    stage: Annotated[str | None, typer.Option(help="Promote the version to this stage too (e.g. prod).")] = None,
    ref: Annotated[str, typer.Option(help="The commit holding the model.")] = "HEAD",
) -> None:
    """Register a model version in the git-tag registry (GTO), and promote it to a stage."""
    _setup_logging()
    try:
        from arginator.shipping.registry import register as register_version

        name = register_version(model, version, stage, ref=ref)
    except ArginatorError as exc:
        raise _fail(exc) from None
    typer.echo(f"{name} {version} registered" + (f" and promoted to {stage}" if stage else ""))


@app.command("resolve-model")
def resolve_model(
    reference: Annotated[str, typer.Argument(help="name@stage or name@v1.2.3 (a path is printed back unchanged).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print path, name, version, stage and commit as JSON.")
    ] = False,
) -> None:
    """Print the local path of a registered model (fetched from the DVC cache)."""
    try:
        from arginator.shipping.registry import is_reference, resolve

        if not is_reference(reference):
            typer.echo(json.dumps({"path": reference}) if as_json else reference)
            return
        resolved = resolve(reference)
    except ArginatorError as exc:
        raise _fail(exc) from None
    if as_json:
        fields = {"path": str(resolved.path), "name": resolved.name, "version": resolved.version}
        typer.echo(json.dumps(fields | {"stage": resolved.stage, "rev": resolved.rev}))
    else:
        typer.echo(str(resolved.path))


@app.command("model-card")
def model_card_command(
    dataset: Annotated[str, typer.Option(help="The dataset whose shipped model the card describes.")],
    out: Annotated[list[Path], typer.Option(help="Where to write the card (repeatable: beside the model, docs).")],
    model: Annotated[Path | None, typer.Option(help="The exported model (default deploy/<dataset>).")] = None,
    run: Annotated[Path | None, typer.Option(help="Its training run (default models/<dataset>-grouped).")] = None,
    metrics: Annotated[Path | None, typer.Option(help="Its held-out metrics.json (default reports/runs/...).")] = None,
    cv: Annotated[Path | None, typer.Option(help="Its cv.json (default reports/cv/<dataset>/cv.json).")] = None,
    cards: Annotated[Path, typer.Option(help="Sources, intended use and limits per model.")] = Path(
        "configs/model_cards.yaml"
    ),
) -> None:
    """Write the model card of a shipped model from the pipeline's outputs."""
    try:
        from arginator.shipping.model_card import write_model_card

        write_model_card(
            dataset,
            list(out),
            model=model or Path("deploy") / dataset,
            run_dir=run or Path("models") / f"{dataset}-grouped",
            metrics=metrics or Path("reports") / "runs" / f"{dataset}-grouped" / "metrics.json",
            cv=cv or Path("reports") / "cv" / dataset / "cv.json",
            cards=cards,
        )
    except ArginatorError as exc:
        raise _fail(exc) from None
    typer.echo(f"model card of {dataset} -> {', '.join(str(p) for p in out)}")


@app.command("rank-embeddings")
def rank_embeddings_command(
    raw: Annotated[Path, typer.Option(help="A prepared dataset directory (sequences.fasta or texts.csv, labels.csv).")],
    embedders: Annotated[str, typer.Option(help="Candidates, comma-separated: unirep:64,unirep:256,minilm,...")],
    split: Annotated[Path, typer.Option(help="The grouped split of the dataset (`arginator split`).")],
    out: Annotated[Path, typer.Option(help="Directory for rank.json.")],
    config: ConfigFiles = None,
    set_: Overrides = None,
    limit: Annotated[int, typer.Option(help="At most this many rows, stratified by label (0: all).")] = 0,
    check: Annotated[bool, typer.Option(help="Also train the FFNN (grouped CV) per candidate: Kendall's tau.")] = False,
    folds: Annotated[int, typer.Option(help="Folds of the check.")] = 5,
    cache: Annotated[Path, typer.Option(help="The embedding content cache.")] = Path("data/cache"),
) -> None:
    """Rank candidate embeddings for a task before training: LogME and a k-NN score (optionally checked by CV)."""
    _setup_logging()
    try:
        from arginator.config import load_config
        from arginator.tuning.rank import rank_embeddings

        candidates = [name.strip() for name in embedders.split(",") if name.strip()]
        if not candidates:
            raise ConfigError("--embedders names no candidate")
        result = rank_embeddings(
            raw, candidates, load_config(config, set_ or []), split, out, cache, limit=limit, check=check, folds=folds
        )
    except ArginatorError as exc:
        raise _fail(exc) from None
    for name, entry in sorted(result["candidates"].items(), key=lambda item: -item[1]["logme"]):
        trained = entry.get("ffnn_cv_macro_f1")
        typer.echo(
            f"{name:<16} LogME {entry['logme']:8.4f}  k-NN macro-F1 {entry['knn_macro_f1']:.3f}"
            + (f"  FFNN CV macro-F1 {trained['mean']:.3f} +- {trained['sd']:.3f}" if trained else "")
        )
    for score in ("logme", "knn_macro_f1"):
        if f"kendall_tau_{score}" in result:
            typer.echo(f"Kendall's tau, {score} vs trained: {result[f'kendall_tau_{score}']:.2f}")
