"""The `Predictor`: one ONNX Runtime session over an exported model, used by the batch CLI and the API alike.

It needs only onnxruntime and numpy (never torch, Lightning or a web framework): labels, task, input dimension and
decision thresholds come from the ONNX metadata that `arginator export` writes. Inputs are validated (shape, dtype,
NaN/Inf) before they reach the session, so a bad row gets a message instead of a wrong answer.

`predict_file` streams an embedding file of any size (HDF5, Parquet, CSV, NPZ/NPY) in chunks and writes CSV or
Parquet with one row per input: id, label, confidence, abstained and one probability column per class.
"""

from __future__ import annotations

import csv
import json
import logging
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arginator.errors import ArginatorError

log = logging.getLogger(__name__)
METADATA_PREFIX = "arginator."
# Files the Predictor looks for, best first, when handed a directory (a deploy directory or its compressed/ subfolder).
MODEL_FILES = ("compressed/model.shipped.onnx", "model.shipped.onnx", "model.onnx")
VECTOR_KEYS = ("embeddings", "vectors", "X")
ID_KEYS = ("ids", "id")


class InvalidInput(ArginatorError, ValueError):  # noqa: N818 (the name clients and the API speak of)
    """Input rows the model cannot take: wrong shape or dimension, not numeric, NaN/Inf, empty."""


class ModelLoadError(ArginatorError):
    """The model file is missing, corrupt, or not an arginator ONNX model."""


@dataclass(frozen=True)
class ModelInfo:
    """What the ONNX metadata says about a model."""

    name: str
    path: Path
    task: str
    classes: list[str]
    input_dim: int
    thresholds: list[float]
    embedder: str
    data_fingerprint: str
    variant: str
    kind: str


@dataclass
class Prediction:
    """Predictions for a batch: one entry per row, probability columns ordered as `classes`."""

    labels: list[str]
    probabilities: np.ndarray
    confidence: np.ndarray
    abstained: np.ndarray
    classes: list[str]

    def records(self, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One JSON-ready dict per row."""
        rows = []
        for i, label in enumerate(self.labels):
            row: dict[str, Any] = {
                "label": label,
                "confidence": float(self.confidence[i]),
                "abstained": bool(self.abstained[i]),
                "probabilities": dict(zip(self.classes, self.probabilities[i].tolist(), strict=True)),
            }
            if ids is not None:
                row = {"id": ids[i], **row}
            rows.append(row)
        return rows


def resolve_model_path(model: Path | str) -> Path:
    """The ONNX file for a path that is either that file or a directory holding one (see `MODEL_FILES`)."""
    path = Path(model)
    if path.is_dir():
        for candidate in MODEL_FILES:
            if (path / candidate).is_file():
                return path / candidate
        raise ModelLoadError(f"no ONNX model in {path} (looked for {', '.join(MODEL_FILES)})")
    if not path.is_file():
        raise ModelLoadError(f"model not found: {path}")
    return path


def _decode_metadata(raw: dict[str, str], path: Path, name: str | None) -> ModelInfo:
    values = {k.removeprefix(METADATA_PREFIX): v for k, v in raw.items() if k.startswith(METADATA_PREFIX)}
    missing = {"task", "classes", "input_dim"} - set(values)
    if missing:
        raise ModelLoadError(f"{path.name} is not an arginator model: metadata {sorted(missing)} missing")
    try:
        classes = [str(c) for c in json.loads(values["classes"])]
        thresholds = [float(t) for t in json.loads(values.get("thresholds", "[]"))]
        input_dim = int(values["input_dim"])
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"{path.name}: unreadable arginator metadata ({exc})") from None
    if values["task"] not in {"multiclass", "binary", "multilabel"}:
        raise ModelLoadError(f"{path.name}: unknown task '{values['task']}' in the metadata")
    default_name = path.parent.name if path.stem.startswith("model") else path.stem
    if default_name == "compressed":
        default_name = path.parent.parent.name
    return ModelInfo(
        name=name or default_name or "model",
        path=path,
        task=values["task"],
        classes=classes,
        input_dim=input_dim,
        thresholds=thresholds,
        embedder=values.get("embedder", "unknown"),
        data_fingerprint=values.get("data_fingerprint", ""),
        variant=values.get("variant", "fp32"),
        kind=values.get("model", "ffnn"),
    )


class Predictor:
    """Predictions from an exported arginator ONNX model, scikit-learn style.

    Args:
        model: an `.onnx` file, or a directory holding `model.shipped.onnx` / `model.onnx`.
        threads: ONNX Runtime intra-op threads (0: let ONNX Runtime decide).
        min_confidence: rows whose decision confidence is below this are flagged `abstained` (their label is still
            given). Confidence is the top probability (multiclass), the probability of the chosen side (binary), and
            the least certain label's (multilabel).
        name: model name for the API (default: derived from the path).
        chunk_rows: rows per ONNX Runtime call; larger inputs are split, so memory stays bounded.

    Raises:
        ModelLoadError: the file is missing, corrupt or lacks arginator metadata.
    """

    def __init__(
        self,
        model: Path | str,
        threads: int = 0,
        min_confidence: float = 0.5,
        name: str | None = None,
        chunk_rows: int = 4096,
    ) -> None:
        import onnxruntime as ort

        path = resolve_model_path(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=self._providers(ort))
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/etc. for corrupt files
            raise ModelLoadError(f"cannot load {path.name}: not a valid ONNX model ({type(exc).__name__})") from None
        self.info = _decode_metadata(self.session.get_modelmeta().custom_metadata_map, path, name)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelLoadError(
                f"{path.name}: expected one input and one output, got {len(inputs)} and {len(outputs)}"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        width = outputs[0].shape[-1] if outputs[0].shape else None
        expected = 1 if self.info.task == "binary" else len(self.info.classes)
        if isinstance(width, int) and width != expected:
            raise ModelLoadError(
                f"{path.name}: a {self.info.task} model over {len(self.info.classes)} classes should output {expected} "
                f"column(s), this one outputs {width}"
            )
        self.min_confidence = float(min_confidence)
        self.chunk_rows = int(chunk_rows)
        thresholds = self.info.thresholds or [0.5] * (1 if self.info.task == "binary" else len(self.info.classes))
        self._cut = np.asarray(thresholds, dtype=np.float32)
        self._class_array = np.asarray(self.info.classes, dtype=object)

    @staticmethod
    def _providers(ort: Any) -> list[str]:
        available = ort.get_available_providers()
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]

    @property
    def classes_(self) -> np.ndarray:
        """Class names in the order of the probability columns."""
        return np.asarray(self.info.classes)

    @property
    def task(self) -> str:
        """multiclass, binary or multilabel."""
        return self.info.task

    @property
    def input_dim(self) -> int:
        """Values per input row."""
        return self.info.input_dim

    def validate(self, x: Any) -> np.ndarray:
        """A C-contiguous float32 (rows, input_dim) array from `x`, or InvalidInput saying what is wrong."""
        if isinstance(x, np.ndarray):
            array = x
        else:
            try:  # straight to float32: no float64 copy of the Python numbers
                with np.errstate(over="ignore"):  # beyond float32 becomes inf, reported below
                    array = np.array(x, dtype=np.float32)
            except ValueError as exc:
                if "could not convert" in str(exc):
                    raise InvalidInput("values must be numbers") from None
                raise InvalidInput(f"rows must all have {self.input_dim} values (ragged input)") from None
            except TypeError:
                raise InvalidInput(f"rows must all be lists of {self.input_dim} numbers") from None
        kind = array.dtype.kind
        if kind not in "fiu":
            if kind == "O":
                raise InvalidInput(f"rows must all be lists of {self.input_dim} numbers (ragged or mixed input)")
            raise InvalidInput(f"values must be numbers, got {array.dtype.name} values")
        if array.ndim == 1:
            array = array.reshape(1, -1)
        if array.ndim != 2:
            raise InvalidInput(f"expected one vector or a list of vectors, got an array of shape {array.shape}")
        if array.shape[0] == 0:
            raise InvalidInput("no rows given")
        if array.shape[1] != self.input_dim:
            raise InvalidInput(f"expected {self.input_dim} values per row, got {array.shape[1]}")
        if array.dtype != np.float32:
            with np.errstate(over="ignore"):  # values beyond float32 become inf and are reported just below
                array = array.astype(np.float32)
        array = np.ascontiguousarray(array)
        if not np.isfinite(array).all():
            bad_rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
            shown = ", ".join(str(i) for i in bad_rows[:5]) + (", ..." if len(bad_rows) > 5 else "")
            raise InvalidInput(f"NaN or infinite values (or beyond float32 range) in row(s) {shown}")
        return array

    def _run(self, x: np.ndarray) -> np.ndarray:
        if len(x) <= self.chunk_rows:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        parts = [
            self.session.run([self.output_name], {self.input_name: x[start : start + self.chunk_rows]})[0]
            for start in range(0, len(x), self.chunk_rows)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def predict_proba(self, x: Any) -> np.ndarray:
        """(rows, len(classes_)) probabilities; for binary models the columns are (negative, positive)."""
        raw = self._run(self.validate(x))
        if self.task == "binary":
            both = np.empty((len(raw), 2), dtype=np.float32)
            both[:, 1] = raw[:, 0]
            np.subtract(1.0, raw[:, 0], out=both[:, 0])
            return both
        return raw

    def _decide(self, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decision (class indices, or a 0/1 matrix for multilabel) and its confidence per row."""
        if self.task == "multiclass":
            return probabilities.argmax(axis=1), probabilities.max(axis=1)
        if self.task == "binary":
            positive = probabilities[:, 1]
            chosen = (positive >= self._cut[0]).astype(int)
            return chosen, np.where(chosen == 1, positive, 1.0 - positive)
        chosen = (probabilities >= self._cut).astype(int)
        side = np.where(chosen == 1, probabilities, 1.0 - probabilities)
        return chosen, side.min(axis=1)

    def _labels(self, decision: np.ndarray) -> list[str]:
        if self.task == "multilabel":
            classes = self.info.classes
            return [";".join(classes[j] for j in np.flatnonzero(row)) for row in decision]
        return self._class_array[decision].tolist()

    def predict(self, x: Any) -> np.ndarray:
        """Labels (multiclass, binary) or a 0/1 indicator matrix over `classes_` (multilabel)."""
        decision, _ = self._decide(self.predict_proba(x))
        return decision if self.task == "multilabel" else self.classes_[decision]

    def predict_details(self, x: Any) -> Prediction:
        """Labels (multi-label: `;`-joined), probabilities, confidence and the abstained flag for each row."""
        probabilities = self.predict_proba(x)
        decision, confidence = self._decide(probabilities)
        return Prediction(
            labels=self._labels(decision),
            probabilities=probabilities,
            confidence=confidence,
            abstained=confidence < self.min_confidence,
            classes=self.info.classes,
        )


# ----------------------------------------------------------------------------------------------------------------
# Streaming readers: (ids, rows) chunks from files of any size
# ----------------------------------------------------------------------------------------------------------------


def _numbered_ids(start: int, count: int) -> list[str]:
    return [str(i) for i in range(start, start + count)]


def _iter_hdf5(path: Path, chunk_rows: int) -> Iterator[tuple[list[str], np.ndarray]]:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path.name}: not a readable HDF5 file ({exc})") from None
    with handle:
        matrix_key = next((k for k in VECTOR_KEYS if k in handle and getattr(handle[k], "ndim", 0) == 2), None)
        if matrix_key is not None:  # one (rows, dim) dataset: read by slices
            matrix = handle[matrix_key]
            id_key = next((k for k in ID_KEYS if k in handle), None)
            for start in range(0, matrix.shape[0], chunk_rows):
                rows = matrix[start : start + chunk_rows]
                if id_key is not None:
                    ids = [
                        i.decode() if isinstance(i, bytes) else str(i)
                        for i in handle[id_key][start : start + len(rows)]
                    ]
                else:
                    ids = _numbered_ids(start, len(rows))
                yield ids, rows
            return
        names: list[str] = []  # the per-id layout: one dataset per sequence
        handle.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        for start in range(0, len(names), chunk_rows):
            batch = names[start : start + chunk_rows]
            try:
                rows = np.stack([np.asarray(handle[n][()], dtype=np.float32).reshape(-1) for n in batch])
            except ValueError as exc:
                raise InvalidInput(f"{path.name}: vectors of different lengths near id '{batch[0]}' ({exc})") from None
            yield batch, rows


def _iter_parquet(path: Path, chunk_rows: int) -> Iterator[tuple[list[str], np.ndarray]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InvalidInput("reading Parquet needs pyarrow: pip install 'arginator[parquet]'") from None
    try:
        reader = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise InvalidInput(f"cannot read {path.name}: not a readable Parquet file ({exc})") from None
    names = reader.schema_arrow.names
    id_column = next((c for c in ID_KEYS if c in names), None)
    value_columns = [c for c in names if c != id_column and c not in {"label", "labels", "group"}]
    start = 0
    columns = [*([id_column] if id_column else []), *value_columns]
    for batch in reader.iter_batches(batch_size=chunk_rows, columns=columns):
        first = batch.column(value_columns[0])
        if len(value_columns) == 1 and hasattr(first, "flatten"):  # one list column holding the vectors
            rows = first.flatten().to_numpy(zero_copy_only=False).reshape(len(batch), -1)
        else:  # one numeric column per dimension, as in the training tables
            rows = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in value_columns])
        ids = [str(i) for i in batch.column(id_column).to_pylist()] if id_column else _numbered_ids(start, len(rows))
        start += len(rows)
        yield ids, rows


def _iter_csv(path: Path, chunk_rows: int) -> Iterator[tuple[list[str], np.ndarray]]:
    import pandas as pd

    try:
        chunks = pd.read_csv(path, chunksize=chunk_rows, dtype={"id": str})
        start = 0
        for frame in chunks:
            id_column = next((c for c in ID_KEYS if c in frame.columns), None)
            values = frame.drop(columns=[c for c in (id_column, "label", "labels", "group") if c in frame.columns])
            ids = frame[id_column].astype(str).tolist() if id_column else _numbered_ids(start, len(frame))
            start += len(frame)
            yield ids, values.to_numpy()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path.name}: {exc}") from None


def _npz_member(path: Path, key: str) -> np.ndarray:
    """A member of an NPZ archive: memory-mapped when stored uncompressed (np.savez), else read whole."""
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo(key + ".npy")
        if member.compress_type == zipfile.ZIP_STORED:
            with path.open("rb") as raw:
                raw.seek(member.header_offset)
                local_header = raw.read(30)
                name_length = int.from_bytes(local_header[26:28], "little")
                extra_length = int.from_bytes(local_header[28:30], "little")
                raw.seek(member.header_offset + 30 + name_length + extra_length)
                version = np.lib.format.read_magic(raw)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(raw)
                if dtype.hasobject:
                    raise InvalidInput(f"{path.name}: '{key}' holds pickled objects, which are refused")
                return np.memmap(
                    path, dtype=dtype, mode="r", offset=raw.tell(), shape=shape, order="F" if fortran else "C"
                )
    log.info(
        "%s is compressed: '%s' is read whole (save with np.savez, or use HDF5/Parquet, to stream)", path.name, key
    )
    return np.load(path, allow_pickle=False)[key]


def _iter_npz(path: Path, chunk_rows: int) -> Iterator[tuple[list[str], np.ndarray]]:
    if path.suffix.lower() == ".npy":
        try:
            matrix, ids = np.load(path, mmap_mode="r", allow_pickle=False), None
        except ValueError as exc:
            raise InvalidInput(f"cannot read {path.name}: {exc}") from None
    else:
        if not zipfile.is_zipfile(path):
            raise InvalidInput(f"cannot read {path.name}: not an NPZ (zip) archive")
        with zipfile.ZipFile(path) as archive:
            keys = [n.removesuffix(".npy") for n in archive.namelist()]
        vector_key = next((k for k in VECTOR_KEYS if k in keys), None)
        if vector_key is None:
            raise InvalidInput(f"{path.name} must hold an 'embeddings' array (has {sorted(keys)})")
        try:
            matrix = _npz_member(path, vector_key)
            id_key = next((k for k in ID_KEYS if k in keys), None)
            ids = np.load(path, allow_pickle=False)[id_key].astype(str) if id_key else None
        except ValueError as exc:
            raise InvalidInput(f"cannot read {path.name}: {exc}") from None
    if matrix.ndim != 2:
        raise InvalidInput(f"{path.name}: embeddings have shape {matrix.shape}; expected (rows, dims)")
    for start in range(0, matrix.shape[0], chunk_rows):
        rows = np.asarray(matrix[start : start + chunk_rows])
        yield (ids[start : start + len(rows)].tolist() if ids is not None else _numbered_ids(start, len(rows))), rows


READERS: dict[str, Callable[[Path, int], Iterator[tuple[list[str], np.ndarray]]]] = {
    ".h5": _iter_hdf5,
    ".hdf5": _iter_hdf5,
    ".parquet": _iter_parquet,
    ".csv": _iter_csv,
    ".npz": _iter_npz,
    ".npy": _iter_npz,
}


def iter_embedding_chunks(path: Path | str, chunk_rows: int = 8192) -> Iterator[tuple[list[str], np.ndarray]]:
    """(ids, rows) chunks of an embedding file, never more than `chunk_rows` rows in memory at once."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"input not found: {path}")
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path.name} is empty (0 bytes)")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise InvalidInput(f"unsupported input '{path.suffix}': use one of {', '.join(sorted(READERS))}")
    yield from reader(path, chunk_rows)


class _CsvSink:
    def __init__(self, path: Path, header: list[str]) -> None:
        self.handle = path.open("w", newline="")
        self.writer = csv.writer(self.handle)
        self.writer.writerow(header)

    def write(self, columns: dict[str, Any]) -> None:
        self.writer.writerows(zip(*columns.values(), strict=True))

    def close(self) -> None:
        self.handle.close()


class _ParquetSink:
    def __init__(self, path: Path, header: list[str]) -> None:
        self.path, self.writer = path, None

    def write(self, columns: dict[str, Any]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(columns)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def predict_file(
    predictor: Predictor,
    source: Path | str,
    out: Path | str,
    chunk_rows: int = 8192,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Stream `source` through the predictor into `out` (`.csv` or `.parquet`); returns the number of rows.

    The output is written to a temporary name and renamed at the end, so a failure never leaves a partial file
    that looks complete. Raises InvalidInput (with the chunk's first id) for an unreadable file or bad rows.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in {".csv", ".parquet"}:
        raise InvalidInput(f"output must end in .csv or .parquet, got '{out.name}'")
    classes = predictor.info.classes
    header = ["id", "label", "confidence", "abstained", *(f"p_{c}" for c in classes)]
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    sink = _CsvSink(partial, header) if suffix == ".csv" else _ParquetSink(partial, header)
    total = 0
    try:
        for ids, rows in iter_embedding_chunks(source, chunk_rows):
            try:
                result = predictor.predict_details(rows)
            except InvalidInput as exc:
                raise InvalidInput(f"{Path(source).name}, chunk starting at id '{ids[0]}': {exc}") from None
            columns: dict[str, Any] = {
                "id": ids,
                "label": result.labels,
                "confidence": result.confidence.astype(np.float32),
                "abstained": result.abstained,
            }
            for j, name in enumerate(classes):
                columns[f"p_{name}"] = result.probabilities[:, j]
            if suffix == ".csv":  # fixed precision keeps CSVs small and diffable
                for key in ("confidence", *(f"p_{c}" for c in classes)):
                    columns[key] = [f"{v:.6g}" for v in columns[key]]
            sink.write(columns)
            total += len(ids)
            if progress is not None:
                progress(len(ids))
    except BaseException:
        sink.close()
        partial.unlink(missing_ok=True)
        raise
    sink.close()
    partial.replace(out)
    return total
