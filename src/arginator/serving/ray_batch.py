"""Batch prediction on Ray Data: the same `Predictor` in `map_batches`, one ONNX Runtime session per actor.

The input files are cut into windows of rows (`WINDOW_ROWS`; a CSV, which has no row index, is one window). The
dataset Ray moves around holds only the windows (path, start, stop): each actor of the pool reads its window itself
with the shared readers, in chunks, and returns the predictions. The vectors never go through Ray's object store,
which is what made a first version (one read task feeding the actors) several times slower than one process.

Each actor is a callable class: the model is loaded once per actor, with intra-op threads = the actor's CPUs (Ray
sets each worker's OMP threads to its `num_cpus`; a default ORT pool would oversubscribe the cores). The driver
writes the predictions as they arrive, in input order, to one CSV or Parquet file with the columns `arginator
predict` writes (a few dozen bytes per row: 10^8 rows are a few GB). On a cluster, `ray.init(address="auto")`
(or `RAY_ADDRESS`) joins it; the input files must then be on storage every node reads.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from arginator.data.readers import iter_chunks, row_count
from arginator.errors import ArginatorError, InvalidInput
from arginator.serving.predictor import Predictor
from arginator.serving.streaming import check_output, output_columns, prediction_columns, write_predictions

log = logging.getLogger(__name__)
WINDOW_ROWS = 65536  # 16 windows for 1M rows: enough to balance 2-8 actors, few enough that scheduling is cheap


def windows(sources: list[Path], window_rows: int) -> list[dict[str, Any]]:
    """Windows of rows covering every file, in order: {path, start, stop} (stop -1: to the end, for CSV)."""
    items = []
    for source in sources:
        path = str(Path(source).resolve())
        total = row_count(source)
        if total is None:
            items.append({"path": path, "start": 0, "stop": -1})
            continue
        items += [{"path": path, "start": s, "stop": min(s + window_rows, total)} for s in range(0, total, window_rows)]
    return items


class PredictWindows:
    """The Ray Data actor: loads the model once, then reads and predicts each window of rows it is given."""

    def __init__(self, model: str, threads: int, min_confidence: float, chunk_rows: int) -> None:
        self.predictor = Predictor(model, threads=threads, min_confidence=min_confidence)
        self.chunk_rows = chunk_rows

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[pa.Table]:
        """Windows in (`path`, `start`, `stop`); predictions out, one Arrow table per chunk of rows."""
        for path, start, stop in zip(batch["path"], batch["start"], batch["stop"], strict=True):
            window = (int(start), None if stop < 0 else int(stop))
            for chunk in iter_chunks(str(path), chunk_rows=self.chunk_rows, window=window):
                if not chunk.ids:
                    continue
                try:
                    columns = prediction_columns(self.predictor, chunk.ids, chunk.vectors)
                except InvalidInput as exc:
                    raise InvalidInput(f"{Path(path).name}, chunk starting at id '{chunk.ids[0]}': {exc}") from None
                yield pa.table(columns)  # the conversion the single process makes; Ray takes Arrow blocks as they are


def predict_with_ray(
    sources: list[Path],
    model: Path | str,
    out: Path | str,
    workers: int = 2,
    cpus_per_worker: int = 1,
    chunk_rows: int = 8192,
    min_confidence: float = 0.5,
    address: str | None = None,
    window_rows: int = WINDOW_ROWS,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Predict every row of `sources` on Ray Data into `out` (`.parquet` or `.csv`, as `arginator predict` writes).

    Args:
        sources: embedding files (any format the readers take), read window by window by the actors.
        model: an exported model (a file or a directory holding one).
        out: the predictions file, written by this process as the actors' results arrive (atomically).
        workers: prediction actors.
        cpus_per_worker: CPUs per actor, also its ONNX Runtime intra-op threads.
        chunk_rows: rows per batch (read and predicted at a time).
        min_confidence: rows below it are flagged abstained, as in `arginator predict`.
        address: a Ray cluster to join (None: `RAY_ADDRESS`, else a local instance).
        window_rows: rows per window, the unit of work an actor takes.
        progress: called with the number of rows of each batch written.

    Returns:
        The number of rows written.
    """
    import ray

    model_path = str(Path(model).resolve())
    header = output_columns(Predictor(model_path))  # fails here, with the usual message, on a bad model
    check_output(out)  # before Ray starts: a bad name fails at once, not after the job
    started_here = not ray.is_initialized()
    if started_here:
        _init_ray(address)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # the output keeps the input's row order
        context.enable_progress_bars = False
        context.raise_original_map_exception = True  # bad rows surface as the readers' / Predictor's own errors
        items = windows(sources, window_rows)
        # One block per window, so that the windows spread over the whole pool.
        ranges = ray.data.from_items(items, override_num_blocks=max(len(items), 1))
        predicted = ranges.map_batches(
            PredictWindows,
            fn_constructor_kwargs={
                "model": model_path,
                "threads": cpus_per_worker,
                "min_confidence": min_confidence,
                "chunk_rows": chunk_rows,
            },
            batch_size=1,
            num_cpus=cpus_per_worker,
            compute=ray.data.ActorPoolStrategy(size=workers),
        )
        try:
            with warnings.catch_warnings():  # Ray warns from its plan's input estimate; chunks arrive as many blocks
                warnings.filterwarnings("ignore", message=r".*minimum number of concurrent actors.*")
                # The driver writes the blocks as they arrive, in order: Ray write tasks would each need a CPU that
                # the actors hold, and ran only after the last window (3-4 s of 7 for 1M rows on 2 cores).
                batches = predicted.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=4)
                total = write_predictions(batches, out, header, progress)
        except ray.exceptions.RayError as exc:
            raise _user_error(exc) from None
    finally:
        if started_here:
            ray.shutdown()
    log.info("%d rows -> %s (%d workers x %d CPUs)", total, out, workers, cpus_per_worker)
    return total


def _init_ray(address: str | None) -> None:
    """Join `address` (or RAY_ADDRESS), or start a local instance whose workers import Ray Data and this module early.

    Ray starts one idle worker process per CPU with the instance; with `RAY_preload_python_modules` they import the
    actors' modules while the driver plans, instead of when the actors start (about a second each on two cores). On
    a cluster, set the same variable where `ray start` runs.
    """
    import ray

    preload = "RAY_preload_python_modules"
    added = address is None and not os.environ.get("RAY_ADDRESS") and preload not in os.environ
    if added:
        os.environ[preload] = f"ray.data,{__name__}"
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    finally:
        if added:  # read by the instance at start; not left behind for whatever this process starts next
            del os.environ[preload]


def _user_error(exc: BaseException) -> ArginatorError:
    """The project's own error inside a failed Ray task (bad rows, unreadable file), or the Ray failure itself."""
    from ray.exceptions import RayError

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ArginatorError) and not isinstance(cause, RayError):  # not Ray's wrapper of it
            # Ray appends its retry advice to the message; the project's own messages are one line.
            return type(cause)(str(cause).splitlines()[0])
        cause = getattr(cause, "cause", None) or cause.__cause__
    return ArginatorError(f"the Ray job failed: {str(exc).splitlines()[0]}")
