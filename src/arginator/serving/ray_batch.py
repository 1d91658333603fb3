"""Batch prediction on Ray Data: the same `Predictor` in `map_batches`, one ONNX Runtime session per actor.

The input files are read in chunks by the shared readers (one read task per file, streaming), the chunks go to a
pool of actors (a callable class: the model is loaded once per actor, with intra-op threads = the actor's CPUs, since
Ray sets each worker's OMP threads to its `num_cpus` and a default ORT pool would oversubscribe the cores), and the
predictions are written as a directory of Parquet files with the columns `arginator predict` writes, in input order.
On a cluster, `ray.init(address="auto")` (or `RAY_ADDRESS`) joins it; the same code runs there unchanged.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from arginator.data.readers import iter_chunks
from arginator.errors import ArginatorError, InvalidInput
from arginator.serving.predictor import Predictor
from arginator.serving.streaming import prediction_columns

log = logging.getLogger(__name__)
BLOCK_BYTES = 8 << 20


def _read_file(batch: dict[str, np.ndarray], chunk_rows: int) -> Iterator[dict[str, Any]]:
    """A batch of file paths -> chunks of (ids, vectors), one chunk at a time (bounded memory)."""
    for path in batch["path"]:
        for chunk in iter_chunks(str(path), chunk_rows=chunk_rows):
            if chunk.ids:
                yield {"id": np.asarray(chunk.ids, dtype=object), "embedding": chunk.vectors}


class PredictBatches:
    """The Ray Data actor: loads the model once, then predicts each batch of rows."""

    def __init__(self, model: str, threads: int, min_confidence: float) -> None:
        self.predictor = Predictor(model, threads=threads, min_confidence=min_confidence)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        """Rows in (`id`, `embedding`), prediction columns out."""
        vectors = np.stack(batch["embedding"]) if batch["embedding"].dtype == object else batch["embedding"]
        try:
            columns = prediction_columns(self.predictor, list(batch["id"]), vectors)
        except InvalidInput as exc:
            raise InvalidInput(f"batch starting at id '{batch['id'][0]}': {exc}") from None
        return {key: np.asarray(value) for key, value in columns.items()}


def predict_with_ray(
    sources: list[Path],
    model: Path | str,
    out: Path | str,
    workers: int = 2,
    cpus_per_worker: int = 1,
    chunk_rows: int = 8192,
    min_confidence: float = 0.5,
    address: str | None = None,
) -> int:
    """Predict every row of `sources` on Ray Data; write a directory of Parquet files to `out`.

    Args:
        sources: embedding files (any format the readers take); each is read by one streaming task.
        model: an exported model (a file or a directory holding one).
        out: the output directory (replaced only once the new one is complete).
        workers: prediction actors.
        cpus_per_worker: CPUs per actor, also its ONNX Runtime intra-op threads.
        chunk_rows: rows per batch (read and predicted at a time).
        min_confidence: rows below it are flagged abstained, as in `arginator predict`.
        address: a Ray cluster to join (None: `RAY_ADDRESS`, else a local instance).

    Returns:
        The number of rows written.
    """
    import ray

    model_path = str(Path(model).resolve())
    Predictor(model_path)  # fails here, with the usual message, on a missing or invalid model
    out = Path(out)
    if out.suffix.lower() in {".csv"}:
        raise InvalidInput("--engine ray writes Parquet: give --out a directory or a .parquet name")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # the output keeps the input's row order
        context.enable_progress_bars = False
        context.target_max_block_size = BLOCK_BYTES  # small blocks: a single file's chunks spread over every actor
        context.raise_original_map_exception = True  # bad rows surface as the readers' / Predictor's own errors
        paths = ray.data.from_items([{"path": str(Path(p).resolve())} for p in sources])
        # Reading takes no CPU reservation, so it is not fused into the actors' operator (fused, one file would feed
        # a single actor) and its chunks spread over the whole pool.
        rows = paths.map_batches(_read_file, batch_size=1, fn_kwargs={"chunk_rows": chunk_rows}, num_cpus=0)
        predicted = rows.map_batches(
            PredictBatches,
            fn_constructor_kwargs={"model": model_path, "threads": cpus_per_worker, "min_confidence": min_confidence},
            batch_size=chunk_rows,
            num_cpus=cpus_per_worker,
            compute=ray.data.ActorPoolStrategy(size=workers),
        )
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            with warnings.catch_warnings():  # Ray warns from its plan's input estimate; chunks arrive as many blocks
                warnings.filterwarnings("ignore", message=r".*minimum number of concurrent actors.*")
                predicted.write_parquet(str(partial))
        except ray.exceptions.RayError as exc:
            shutil.rmtree(partial, ignore_errors=True)  # nothing half-written stays behind
            raise _user_error(exc) from None
        total = sum(_row_count(f) for f in partial.glob("*.parquet"))
    finally:
        if started_here:
            ray.shutdown()
    if out.is_file():
        out.unlink()
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    log.info("%d rows -> %s (%d workers x %d CPUs)", total, out, workers, cpus_per_worker)
    return total


def _user_error(exc: BaseException) -> ArginatorError:
    """The project's own error inside a failed Ray task (bad rows, unreadable file), or the Ray failure itself."""
    from ray.exceptions import RayError

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ArginatorError) and not isinstance(cause, RayError):  # not Ray's wrapper of it
            return cause
        cause = getattr(cause, "cause", None) or cause.__cause__
    return ArginatorError(f"the Ray job failed: {str(exc).splitlines()[0]}")


def _row_count(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
