"""Streaming batch prediction: an embedding file, or a FASTA / texts file, of any size in, one row per input out.

Files are read in chunks by the shared readers (`arginator.data.readers`: HDF5, Parquet, CSV, NPZ/NPY, the same
column conventions as training); sequences and texts are read in chunks by `arginator.inputs` and embedded by the
caller's embedder. Each chunk is predicted by the `Predictor` and written as CSV or Parquet: id, label, confidence,
abstained, novelty and one probability column per class. The output appears under its name only when complete.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from arginator.atomic import atomic_path
from arginator.data.readers import iter_chunks
from arginator.errors import InvalidInput
from arginator.inputs import input_chunks
from arginator.serving.predictor import Predictor

if TYPE_CHECKING:
    import pyarrow as pa

_TEXT_COLUMNS = {"id", "label", "abstained"}


class _CsvSink:
    def __init__(self, path: Path, header: list[str]) -> None:
        self.handle = path.open("w", newline="")
        self.header = header
        self.writer = csv.writer(self.handle)
        self.writer.writerow(header)

    def write(self, columns: dict[str, Any]) -> None:
        self.writer.writerows(zip(*(columns[name] for name in self.header), strict=True))

    def close(self) -> None:
        self.handle.close()


class _ParquetSink:
    def __init__(self, path: Path, header: list[str]) -> None:
        self.path, self.header, self.writer = path, header, None

    def write(self, columns: dict[str, Any] | pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = (columns if isinstance(columns, pa.Table) else pa.table(columns)).select(self.header)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is None:  # no rows at all: still a valid Parquet file, with the columns and no rows
            import pyarrow as pa
            import pyarrow.parquet as pq

            types = {"id": pa.string(), "label": pa.string(), "abstained": pa.bool_()}
            schema = pa.schema([(name, types.get(name, pa.float32())) for name in self.header])
            pq.write_table(schema.empty_table(), self.path)
        else:
            self.writer.close()


def output_columns(predictor: Predictor) -> list[str]:
    """The prediction columns, in order: id, label, confidence, abstained, novelty (if the model has it), p_<class>."""
    novelty = ["novelty"] if predictor.info.novelty_threshold is not None else []
    return ["id", "label", "confidence", "abstained", *novelty, *(f"p_{c}" for c in predictor.info.classes)]


def prediction_columns(predictor: Predictor, ids: list[str], vectors: np.ndarray) -> dict[str, Any]:
    """One chunk's predictions as columns (`output_columns` order). Raises InvalidInput for bad rows."""
    result = predictor.predict_details(vectors)
    columns: dict[str, Any] = {
        "id": list(ids),
        "label": result.labels,
        "confidence": result.confidence.astype(np.float32),
        "abstained": result.abstained,
    }
    if result.novelty is not None:
        columns["novelty"] = result.novelty.astype(np.float32)
    for j, name in enumerate(predictor.info.classes):
        columns[f"p_{name}"] = result.probabilities[:, j]
    return columns


def predict_file(
    predictor: Predictor,
    source: Path | str,
    out: Path | str,
    chunk_rows: int = 8192,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Stream the embedding file `source` through the predictor into `out` (`.csv` or `.parquet`); returns the rows.

    The output is written to a temporary name and renamed at the end, so a failure never leaves a partial file
    that looks complete. Raises DataError for an unreadable file, InvalidInput (with the chunk's first id) for bad
    rows.
    """
    chunks = ((chunk.ids, chunk.vectors) for chunk in iter_chunks(source, chunk_rows=chunk_rows))
    return predict_chunks(predictor, chunks, out, Path(source).name, progress)


def predict_sequences(
    predictor: Predictor,
    source: Path | str,
    embed: Callable[[list[str]], np.ndarray],
    out: Path | str,
    chunk_rows: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Stream a FASTA file (or texts CSV) through `embed` and the predictor into `out`; returns the rows.

    Args:
        predictor: the model.
        source: sequences or texts (anything `arginator.inputs.iter_inputs` reads); checked as they are read.
        embed: inputs -> vectors with the model's embedder (the caller builds it, with its cache).
        out: `.csv` or `.parquet`, written as `predict_file` writes it.
        chunk_rows: inputs read, embedded and predicted at a time (bounds memory).
        progress: called with the number of rows of each chunk written.
    """
    chunks = ((ids, embed(items)) for ids, items in input_chunks(source, chunk_rows))
    return predict_chunks(predictor, chunks, out, Path(source).name, progress)


def predict_chunks(
    predictor: Predictor,
    chunks: Iterable[tuple[list[str], np.ndarray]],
    out: Path | str,
    source_name: str,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Predict (ids, vectors) chunks into `out` (`.csv` or `.parquet`, atomically); returns the number of rows."""

    def predicted() -> Iterator[dict[str, Any]]:
        for ids, vectors in chunks:
            if not ids:  # e.g. a CSV with a header only
                continue
            try:
                yield prediction_columns(predictor, ids, vectors)
            except InvalidInput as exc:
                raise InvalidInput(f"{source_name}, chunk starting at id '{ids[0]}': {exc}") from None

    return write_predictions(predicted(), out, output_columns(predictor), progress)


def check_output(out: Path | str) -> Path:
    """`out` as a predictions file may be: a `.csv` or `.parquet` name that is not a directory. Raises InvalidInput."""
    out = Path(out)
    if out.suffix.lower() not in {".csv", ".parquet"}:
        raise InvalidInput(f"output must end in .csv or .parquet, got '{out.name}'")
    if out.is_dir():  # e.g. left by an older `--engine ray`, which wrote a directory of parts
        raise InvalidInput(f"output '{out}' is a directory: remove it or give another file name")
    return out


def write_predictions(
    batches: Iterable[dict[str, Any] | pa.Table],
    out: Path | str,
    header: list[str],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write batches of prediction columns (`header` order) to `out`, `.csv` or `.parquet`; returns the rows.

    The file appears under its name only once every batch is written (a failure mid-way leaves nothing).
    """
    out = check_output(out)
    suffix = out.suffix.lower()
    total = 0
    with atomic_path(out) as partial:
        sink = _CsvSink(partial, header) if suffix == ".csv" else _ParquetSink(partial, header)
        try:
            for batch in batches:
                columns = batch.to_pydict() if suffix == ".csv" and not isinstance(batch, dict) else batch
                if suffix == ".csv":  # fixed precision keeps CSVs small and diffable
                    for key in header:
                        if key not in _TEXT_COLUMNS:
                            columns[key] = [f"{v:.6g}" for v in columns[key]]
                sink.write(columns)
                rows = len(columns["id"]) if isinstance(columns, dict) else columns.num_rows
                total += rows
                if progress is not None:
                    progress(rows)
        finally:
            sink.close()
    return total
