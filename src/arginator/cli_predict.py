"""The prediction command: `arginator predict`, one process or Ray Data, on a model file, directory or registry name.

Importing this module adds the command to `arginator.cli.app` (as `cli_models` does for the model commands).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from arginator.cli import _fail, app
from arginator.errors import ArginatorError


@app.command()
def predict(
    source: Annotated[
        Path,
        typer.Argument(
            help="Embeddings (.h5/.hdf5, .parquet, .csv, .npz, .npy), protein sequences (.fasta/.fa/.faa, .gz too) "
            "or a texts CSV (id,text); any size."
        ),
    ],
    model: Annotated[
        str,
        typer.Option(
            envvar="ARGINATOR_MODEL",
            help="An exported .onnx file, a directory holding one (e.g. deploy/X), or a registered name@stage / "
            "name@v1.2.3.",
        ),
    ],
    out: Annotated[Path, typer.Option(help="Predictions: .csv or .parquet.")],
    chunk_rows: Annotated[int, typer.Option(help="Rows read and predicted at a time (bounds memory).")] = 8192,
    min_confidence: Annotated[float, typer.Option(help="Flag rows whose confidence is below this.")] = 0.5,
    threads: Annotated[
        int,
        typer.Option(help="ONNX Runtime threads (0: all cores); --engine ray: per worker (UniRep: a call per core)."),
    ] = 0,
    engine: Annotated[str, typer.Option(help="local (one process) or ray (Ray Data actors).")] = "local",
    workers: Annotated[int, typer.Option(help="--engine ray: prediction actors.")] = 2,
    cache: Annotated[str, typer.Option(help="Sequences/texts: content cache of their vectors ('' disables).")] = (
        "data/cache"
    ),
    ray_address: Annotated[
        str | None, typer.Option(envvar="RAY_ADDRESS", help="--engine ray: a cluster to join (default: local Ray).")
    ] = None,
) -> None:
    """Predict every row of an embedding file, or every sequence or text, with an exported ONNX model, in chunks.

    Sequences and texts are embedded first with the embedder recorded in the model (through the content cache).
    """
    from tqdm import tqdm

    from arginator.serving.predictor import Predictor
    from arginator.serving.streaming import predict_file

    if engine not in ("local", "ray"):
        raise _fail(ArginatorError(f"--engine must be local or ray, not '{engine}'"))
    raw_inputs = _holds_raw_inputs(source)
    if raw_inputs and engine == "ray":
        raise _fail(ArginatorError("--engine ray predicts embedding files: `arginator embed` the sequences first"))
    if raw_inputs:
        _predict_raw(source, model, out, min(chunk_rows, 1024), min_confidence, threads, cache)
        return
    if engine == "ray":
        from arginator.serving.ray_batch import predict_with_ray

        try:
            with tqdm(unit=" rows", unit_scale=True, mininterval=0.5, file=sys.stderr, desc=source.name) as bar:
                rows = predict_with_ray(
                    [source], _model_path(model), out, workers, max(threads, 1), chunk_rows, min_confidence,
                    ray_address, progress=bar.update,
                )  # fmt: skip
        except ArginatorError as exc:
            raise _fail(exc) from None
        typer.echo(f"{rows} rows -> {out} (Ray Data, {workers} workers)")
        return
    try:
        predictor = Predictor(_model_path(model), threads=threads, min_confidence=min_confidence)
        with tqdm(unit=" rows", unit_scale=True, mininterval=0.5, file=sys.stderr, desc=source.name) as bar:
            rows = predict_file(predictor, source, out, chunk_rows=chunk_rows, progress=bar.update)
    except ArginatorError as exc:
        raise _fail(exc) from None
    typer.echo(f"{rows} rows -> {out} (model {predictor.info.name}, {predictor.info.variant}, {predictor.task})")


def _holds_raw_inputs(source: Path) -> bool:
    """Whether `source` holds sequences (a FASTA file) or texts (a CSV with a `text` column), not vectors."""
    from arginator.inputs import is_fasta, is_texts_csv

    return is_fasta(source) or is_texts_csv(source)


def _predict_raw(
    source: Path, model: str, out: Path, chunk: int, min_confidence: float, threads: int, cache: str
) -> None:
    """`arginator predict` on sequences or texts: embed each chunk with the model's embedder, then predict it."""
    from tqdm import tqdm

    from arginator.embed import embed_cached, embedder_for_model
    from arginator.inputs import is_fasta
    from arginator.serving.predictor import Predictor
    from arginator.serving.streaming import predict_sequences

    try:
        predictor = Predictor(_model_path(model), threads=threads, min_confidence=min_confidence)
        if is_fasta(source) and not predictor.info.embedder.startswith("unirep"):
            raise ArginatorError(
                f"{source.name} holds protein sequences, but model '{predictor.info.name}' was trained on "
                f"'{predictor.info.embedder}' vectors: give it inputs of that kind"
            )
        embedder = embedder_for_model(predictor.info.embedder, predictor.input_dim)
        cache_dir = cache or None  # '' (as typed) disables the cache
        with tqdm(unit=" seqs", mininterval=0.5, file=sys.stderr, desc=source.name) as bar:
            rows = predict_sequences(
                predictor, source, lambda items: embed_cached(items, embedder, cache_dir), out, chunk, bar.update
            )
    except ArginatorError as exc:
        raise _fail(exc) from None
    typer.echo(f"{rows} rows -> {out} (model {predictor.info.name}, embedded with {embedder.name})")


def _model_path(model: str) -> Path:
    """A model path as given, or the local copy of a registered `name@stage` / `name@vX.Y.Z`."""
    from arginator.shipping.registry import is_reference, resolve

    if not is_reference(model):
        return Path(model)
    resolved = resolve(model)
    logging.getLogger(__name__).info("%s is %s %s (%s)", model, resolved.name, resolved.version, resolved.path)
    return resolved.path
