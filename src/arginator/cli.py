"""The `arginator` command: one subcommand per stage. Stage logic lives in the stage modules."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from arginator.errors import ArginatorError

DATASET_NAMES = (
    "arg-drugclass", "arg-drugclass-multilabel", "arg-binary", "betalactamase-ambler", "bbc-news", "background",
)  # fmt: skip

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
    for noisy in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed", "onnx_ir", "onnxscript"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


def _summary(metrics: dict) -> str:
    header = f"{'model':<9} {'accuracy':>9} {'macro_f1':>9} {'mcc':>7}"
    rows = [
        f"{name:<9} {m['accuracy']:>9.3f} {m['macro_f1']:>9.3f} {m['mcc']:>7.3f}"
        for name, m in metrics.items()
        if name in ("ffnn", "baseline")
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
    split: Annotated[Path | None, typer.Option(help="Use this split file (from `arginator split`).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing run in --out (after the new data is validated).")
    ] = False,
    evaluate: Annotated[bool, typer.Option(help="Evaluate both models on the test split afterwards.")] = True,
    embedder: Annotated[str, typer.Option(help="The embedder of --data, recorded in the W&B model artifact.")] = (
        "unknown"
    ),
) -> None:
    """Train the FFNN and the logistic-regression baseline, then evaluate both on the test split.

    With W&B on (offline by default), the run's configuration, per-epoch metrics, figures and model (checkpoint and
    ONNX) are logged as one W&B run with a `model-<run>` artifact.
    """
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
            from arginator.training import runs

            stored = runs.read_config(out).model_dump(mode="json")
            run_config = load_config(config, overrides, base=stored)
        else:
            if data is None:
                raise ArginatorError("--data is required (a directory of per-class HDF5 files or a table)")
            run_config = load_config(config, overrides)
        if out is None:
            out = Path("models") / f"{data.stem if data else 'run'}-{run_config.data.task}"
        from arginator.training.evaluate import evaluate_run
        from arginator.training.train import train_run

        typer.echo(f"training into {out}", err=True)
        result = train_run(data, run_config, out, resume=resume, split_file=split, overwrite=overwrite)
        if not result.primary:  # a DDP worker process: rank 0 reports, evaluates and logs
            return
        typer.echo(f"trained {result.epochs_trained} epochs; best checkpoint {result.best_checkpoint}", err=True)
        if evaluate:
            metrics = evaluate_run(out)
            typer.echo(_summary(metrics))
            typer.echo(f"wrote {out / 'metrics.json'}, {out / 'report.md'} and {out / 'figures'}/", err=True)
        if result.tracking_run is not None:
            from arginator.shipping.artifacts import log_model_artifact

            name = log_model_artifact(result.tracking_run, out, report_dir=out if evaluate else None, embedder=embedder)
            typer.echo(f"logged W&B artifact {name}", err=True)
    except ArginatorError as exc:
        raise _fail(exc) from None


@app.command("cv")
def cross_validate_command(
    data: Annotated[Path, typer.Option(help="Embeddings with labels (any supported layout).")],
    out: Annotated[Path, typer.Option(help="Directory for cv.json.")],
    config: ConfigFiles = None,
    set_: Overrides = None,
    groups: Annotated[
        Path | None, typer.Option(help="A split file with a group column (grouped folds); none: random folds only.")
    ] = None,
    folds: Annotated[int, typer.Option(help="Number of folds.")] = 5,
    ood: Annotated[
        list[Path] | None, typer.Option(help="Embeddings the model should call novel (repeatable): novelty AUROC.")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Folds trained at once, each on one thread (0: one per core). Same figures for any.")
    ] = 0,
) -> None:
    """k-fold cross-validation of the FFNN and the baseline (grouped by homology and random): mean +- sd per score."""
    _setup_logging()
    try:
        from arginator.config import load_config
        from arginator.training.crossval import cross_validate

        result = cross_validate(
            data, load_config(config, set_ or []), groups, out, k=folds, ood=ood, workers=workers or None
        )
        for kind in ("grouped", "random"):
            if kind in result:
                ffnn, base = (
                    result[kind]["summary"]["ffnn"]["macro_f1"],
                    result[kind]["summary"]["baseline"]["macro_f1"],
                )
                typer.echo(
                    f"{kind}: macro-F1 FFNN {ffnn['mean']:.3f} +- {ffnn['sd']:.3f}, "
                    f"baseline {base['mean']:.3f} +- {base['sd']:.3f} ({folds} folds)"
                )
    except ArginatorError as exc:
        raise _fail(exc) from None


@app.command("evaluate")
def evaluate_command(
    run: Annotated[Path, typer.Option(help="Run directory written by `arginator train`.")],
    data: Annotated[Path | None, typer.Option(help="External labelled data (default: the run's test split).")] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Labels CSV (id, label) for --data when it is an HDF5 file without labels.")
    ] = None,
    ood: Annotated[
        list[Path] | None,
        typer.Option(help="Embeddings the model should call novel (repeatable): AUROC of its novelty score."),
    ] = None,
    report_dir: Annotated[
        Path | None, typer.Option(help="Where to write the results (default: the run; RUN/eval-<name>/ for --data).")
    ] = None,
) -> None:
    """Score the FFNN and the baseline; write metrics.json, figures/ and report.md (into the run, or --report-dir)."""
    _setup_logging()
    try:
        from arginator.training.evaluate import evaluate_run

        if labels is not None and data is None:
            raise ArginatorError("--labels describes --data: pass both, or neither for the run's test split")
        metrics = evaluate_run(run, data, report_dir, labels_file=labels, ood=ood)
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


@app.command()
def prepare(
    dataset: Annotated[str, typer.Option(help="Bundled dataset: " + ", ".join(DATASET_NAMES))],
    out: Annotated[Path | None, typer.Option(help="Raw data directory to write (default data/raw/<dataset>).")] = None,
    limit: Annotated[int, typer.Option(help="Keep at most this many records, stratified (0: all).")] = 0,
    background: Annotated[
        Path | None,
        typer.Option(help="A prepared `background` directory to reuse (arg-binary, betalactamase-ambler)."),
    ] = None,
) -> None:
    """Write a bundled real dataset as sequences.fasta or texts.csv, plus labels.csv."""
    _setup_logging()
    try:
        from arginator.sources import write_raw

        target = write_raw(dataset, out or Path("data/raw") / dataset, limit=limit or None, background_dir=background)
        typer.echo(f"wrote {dataset} to {target}", err=True)
    except ArginatorError as exc:
        raise _fail(exc) from None


@app.command()
def embed(
    raw: Annotated[
        Path,
        typer.Option(
            "--raw",
            "--input",
            help="A FASTA file (.fasta/.fa/.faa, .gz too), a texts CSV (id,text), or a prepared directory holding "
            "sequences.fasta or texts.csv.",
        ),
    ],
    out: Annotated[Path, typer.Option(help="HDF5 file to write (one vector per id).")],
    embedder: Annotated[str, typer.Option(help="unirep | minilm | transformers")] = "unirep",
    size: Annotated[int, typer.Option(help="UniRep size: 64, 256 or 1900.")] = 256,
    model: Annotated[str | None, typer.Option(help="transformers: local path or hub name of the model.")] = None,
    cache: Annotated[str, typer.Option(help="Content cache directory ('' disables).")] = "data/cache",
) -> None:
    """Embed sequences or texts (a FASTA file, a texts CSV or a prepared directory) into the id -> vector HDF5."""
    _setup_logging()
    try:
        from arginator.embed import embed_items, make_embedder
        from arginator.inputs import read_inputs

        ids, items = read_inputs(raw)
        options: dict[str, object] = {"size": size} if embedder == "unirep" else {}
        if embedder == "transformers":
            options["model"] = model
        backend = make_embedder(embedder, **options)

        def progress(done: int, total: int) -> None:
            typer.echo(f"  embedded {done}/{total}", err=True)

        embed_items(ids, items, backend, out, cache_dir=cache or None, progress=progress)
        typer.echo(f"wrote {len(ids)} {backend.name} vectors ({backend.dim} dims) to {out}", err=True)
    except ArginatorError as exc:
        raise _fail(exc) from None


@app.command()
def split(
    data: Annotated[Path, typer.Option(help="Embeddings (any supported layout).")],
    out: Annotated[Path, typer.Option(help="Split file for the grouped split.")],
    config: ConfigFiles = None,
    set_: Overrides = None,
    method: Annotated[str, typer.Option(help="mmseqs | embedding | none (stratified only)")] = "mmseqs",
    sequences: Annotated[Path | None, typer.Option(help="FASTA for mmseqs (default: next to labels).")] = None,
    identity: Annotated[float, typer.Option(help="mmseqs minimum sequence identity.")] = 0.4,
    min_cosine: Annotated[float, typer.Option(help="embedding method: link vectors at or above this cosine.")] = 0.95,
    random_out: Annotated[Path | None, typer.Option(help="Also write a plain stratified split here.")] = None,
) -> None:
    """Write train/val/test splits: grouped by homology (or embedding similarity), and optionally a random one."""
    _setup_logging()
    try:
        from arginator.config import load_config
        from arginator.data.cluster import table_groups
        from arginator.data.splits import make_split, write_split
        from arginator.data.targets import load_task_table

        run_config = load_config(config, set_)
        table, _ = load_task_table(data, run_config.data)
        if random_out is not None:
            random_table = type(table)(table.ids, table.vectors, table.labels, None, table.source)
            write_split(random_table, make_split(random_table, run_config.data), random_out)
        fasta_dir = sequences.parent if sequences else Path(run_config.data.labels_file or data).parent
        table.groups = table_groups(table, method, fasta_dir, identity=identity, min_cosine=min_cosine)
        write_split(table, make_split(table, run_config.data), out)
        n_groups = len(set(table.groups)) if table.groups is not None else 0
        typer.echo(f"wrote {out}: {len(table)} rows, {n_groups} groups ({method})", err=True)
    except ArginatorError as exc:
        raise _fail(exc) from None


@app.command("export")
def export_command(
    run: Annotated[Path, typer.Option(help="Run directory written by `arginator train`.")],
    out: Annotated[Path | None, typer.Option(help="Where model.onnx and baseline.onnx go (default: the run).")] = None,
    embedder: Annotated[str, typer.Option(help="Name of the embedder the inputs come from (metadata).")] = "unknown",
) -> None:
    """Export the FFNN and the baseline to ONNX with metadata; fails unless ONNX matches torch on the test split."""
    _setup_logging()
    try:
        from arginator.shipping.export import export_run

        summary = export_run(run, out, embedder=embedder)
        for kind in ("ffnn", "baseline"):
            entry = summary[kind]
            typer.echo(
                f"{kind}: {entry['file']} ({entry['bytes']:,} bytes), max |diff| {entry['max_abs_difference']:.2e}"
            )
    except ArginatorError as exc:
        raise _fail(exc) from None


@app.command()
def compress(
    run: Annotated[Path, typer.Option(help="Run directory written by `arginator train`.")],
    out: Annotated[Path | None, typer.Option(help="Output directory (default: <run>/compressed).")] = None,
    max_f1_drop: Annotated[
        float, typer.Option(help="Largest validation macro-F1 loss allowed (0.005 = 0.5 point).")
    ] = 0.005,
    threads: Annotated[
        int, typer.Option(help="ONNX Runtime threads for the speed measurements (1: per-core, repeatable figures).")
    ] = 1,
    embedder: Annotated[str, typer.Option(help="Name of the embedder the inputs come from (metadata).")] = "unknown",
) -> None:
    """Build pruned and quantized variants, measure size/speed/accuracy, and pick the one to ship."""
    _setup_logging()
    try:
        from arginator.shipping.compress import compress_run

        summary = compress_run(run, out, max_f1_drop=max_f1_drop, threads=threads, embedder=embedder)
        typer.echo(f"shipped: {summary['shipped']}")
    except ArginatorError as exc:
        raise _fail(exc) from None


@app.command()
def results(
    reports: Annotated[Path, typer.Option(help="Directory of <dataset>-<split>/metrics.json.")] = Path("reports/runs"),
    out: Annotated[Path, typer.Option(help="Markdown file to write.")] = Path("reports/results.md"),
    cv: Annotated[Path | None, typer.Option(help="Directory of <dataset>/cv.json (arginator cv).")] = None,
) -> None:
    """Collect the cross-validated figures (mean +- sd), every run's metrics and figures into one page."""
    from arginator.training.results import write_results

    typer.echo(write_results(reports, out, cv))


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("WANDB_SILENT", "true")
    app()


# The sweep, registry and prediction commands live in their own modules; importing them adds them to `app`.
from arginator import cli_models, cli_predict  # noqa: E402, F401

if __name__ == "__main__":
    # `python -m arginator.cli` runs this file as __main__, a second copy of the module; cli_models added its
    # commands to the imported arginator.cli's app, so run that one.
    from arginator.cli import main as imported_main

    imported_main()
