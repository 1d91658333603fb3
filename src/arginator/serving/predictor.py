"""The `Predictor`: one ONNX Runtime session over an exported model, used by the batch CLI and the API alike.

It needs only onnxruntime and numpy (never torch, Lightning or a web framework): labels, task, input dimension and
decision thresholds come from the ONNX metadata (`serving.metadata`), and labels from the one decision rule
(`serving.decide`). Inputs are validated (shape, dtype, NaN/Inf) before they reach the session, so a bad row gets a
message instead of a wrong answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arginator.errors import InvalidInput, ModelLoadError
from arginator.serving import metadata
from arginator.serving.decide import decide, label_names
from arginator.serving.session import create_session

# Files the Predictor looks for, best first, when handed a directory (a deploy directory or its compressed/ subfolder).
MODEL_FILES = ("compressed/model.shipped.onnx", "model.shipped.onnx", "model.onnx")
# Rows per ONNX Runtime call. Small calls keep their intermediates (256 rows x a novelty bank of up to 4,096 rows:
# 4 MB) in the CPU cache: on one thread (a Ray actor's), 1.1-1.45x the rows/s of 4,096-row calls on every shipped
# model, with identical outputs; on two, 0.95-1.3x (the small int8 models move most between runs). 128 is no faster;
# a linear model, with no such intermediates, loses up to a tenth on one thread (reports/benchmarks/rows_per_call.md).
RUN_ROWS = 256


@dataclass
class Prediction:
    """Predictions for a batch: one entry per row, probability columns ordered as `classes`."""

    labels: list[str]
    probabilities: np.ndarray
    confidence: np.ndarray
    abstained: np.ndarray
    classes: list[str]
    novelty: np.ndarray | None = None  # None: the model has no novelty output

    def records(self, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One JSON-ready dict per row."""
        rows = []
        for i, label in enumerate(self.labels):
            row: dict[str, Any] = {
                "label": label,
                "confidence": float(self.confidence[i]),
                "abstained": bool(self.abstained[i]),
                "novelty": None if self.novelty is None else float(self.novelty[i]),
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


class Predictor:
    """Predictions from an exported arginator ONNX model, scikit-learn style.

    Args:
        model: an `.onnx` file, or a directory holding `model.shipped.onnx` / `model.onnx`.
        threads: ONNX Runtime intra-op threads (0: let ONNX Runtime decide).
        min_confidence: rows whose decision confidence is below this are flagged `abstained` (their label is still
            given). Confidence is the top probability (multiclass), the probability of the chosen side (binary), and
            the least certain label's (multilabel).
        name: model name for the API (default: derived from the path).
        chunk_rows: rows per ONNX Runtime call (`RUN_ROWS`); larger inputs are split, which bounds memory and keeps
            each call's intermediates in the CPU cache.

    Raises:
        ModelLoadError: the file is missing, corrupt or lacks arginator metadata.
    """

    def __init__(
        self,
        model: Path | str,
        threads: int = 0,
        min_confidence: float = 0.5,
        name: str | None = None,
        chunk_rows: int = RUN_ROWS,
    ) -> None:
        path = resolve_model_path(model)
        self.session = create_session(path, threads)
        self.info = metadata.decode(self.session.get_modelmeta().custom_metadata_map, path, name)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelLoadError(
                f"{path.name}: expected one input and one output, got {len(inputs)} and {len(outputs)}"
            )
        metadata.check_outputs(self.info, outputs[0].shape[-1] if outputs[0].shape else None)
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        names = {output.name for output in outputs}
        self.novelty_name = metadata.NOVELTY_NAME if self.info.novelty_threshold is not None else None
        if self.novelty_name is not None and self.novelty_name not in names:
            raise ModelLoadError(f"{path.name}: metadata gives a novelty threshold, the graph has no novelty output")
        self.min_confidence = float(min_confidence)
        self.chunk_rows = int(chunk_rows)

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

    def _run(self, x: np.ndarray, with_novelty: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        names = [self.output_name] + ([self.novelty_name] if with_novelty and self.novelty_name else [])
        parts = [
            self.session.run(names, {self.input_name: x[start : start + self.chunk_rows]})
            for start in range(0, len(x), self.chunk_rows)
        ]
        joined = [part[0] if len(parts) == 1 else np.concatenate(part) for part in zip(*parts, strict=True)]
        return joined[0], joined[1] if len(joined) > 1 else None

    def predict_proba(self, x: Any) -> np.ndarray:
        """(rows, len(classes_)) probabilities; for binary models the columns are (negative, positive)."""
        return self._columns(self._run(self.validate(x))[0])

    def predict_novelty(self, x: Any) -> np.ndarray | None:
        """Novelty score per row (novel above `info.novelty_threshold`), or None for a model without one."""
        return self._run(self.validate(x), with_novelty=True)[1]

    def _columns(self, raw: np.ndarray) -> np.ndarray:
        if self.task == "binary":
            both = np.empty((len(raw), 2), dtype=np.float32)
            both[:, 1] = raw[:, 0]
            np.subtract(1.0, raw[:, 0], out=both[:, 0])
            return both
        return raw

    def predict(self, x: Any) -> np.ndarray:
        """Labels (multiclass, binary) or a 0/1 indicator matrix over `classes_` (multilabel)."""
        chosen = decide(self.predict_proba(x), self.task, self.info.thresholds).chosen
        return chosen if self.task == "multilabel" else self.classes_[chosen]

    def predict_details(self, x: Any) -> Prediction:
        """Labels (multi-label: `;`-joined), probabilities, confidence, novelty and the abstained flag for each row.

        A row is abstained when its confidence is below `min_confidence` or its novelty above the model's threshold.
        """
        raw, novelty = self._run(self.validate(x), with_novelty=True)
        probabilities = self._columns(raw)
        decision = decide(
            probabilities, self.task, self.info.thresholds, self.min_confidence, novelty, self.info.novelty_threshold
        )
        return Prediction(
            labels=label_names(decision.chosen, self.task, self.info.classes),
            probabilities=probabilities,
            confidence=decision.confidence,
            abstained=decision.abstained,
            classes=self.info.classes,
            novelty=novelty,
        )
