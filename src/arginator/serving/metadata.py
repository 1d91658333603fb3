"""ONNX metadata, written once: the schema, how it is written into a model, read back and validated.

Every exported or compressed model carries, under keys prefixed `arginator.`: format version, model kind, task, class
names, input dimension, decision thresholds, embedder, training-data fingerprint and compression variant. A consumer
needs nothing else to use the file. Writing works on any `onnx.ModelProto` without importing onnx here; reading goes
through ONNX Runtime, so serving needs neither torch nor onnx.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arginator.errors import ModelLoadError
from arginator.serving.decide import TASKS
from arginator.serving.session import create_session

PREFIX = "arginator."
FORMAT_VERSION = "1"
INPUT_NAME, OUTPUT_NAME = "embedding", "probabilities"
NOVELTY_NAME = "novelty"  # optional second output: novelty score per row, novel above `novelty_threshold`
REQUIRED = ("task", "classes", "input_dim")


@dataclass(frozen=True)
class ModelInfo:
    """What the metadata says about a model."""

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
    novelty_threshold: float | None = None  # None: the model has no novelty output

    @property
    def outputs(self) -> int:
        """Columns of the model's output: one for binary (P(positive)), one per class otherwise."""
        return 1 if self.task == "binary" else len(self.classes)


def build(
    kind: str,
    task: str,
    classes: list[str],
    input_dim: int,
    thresholds: list[float],
    embedder: str = "unknown",
    data_fingerprint: str = "",
    variant: str = "fp32",
    novelty_threshold: float | None = None,
) -> dict[str, str]:
    """The metadata of one model as strings (lists JSON-encoded), without the prefix."""
    novelty = {} if novelty_threshold is None else {"novelty_threshold": repr(float(novelty_threshold))}
    return novelty | {
        "format_version": FORMAT_VERSION,
        "model": kind,
        "task": task,
        "classes": json.dumps(list(classes)),
        "input_dim": str(int(input_dim)),
        "thresholds": json.dumps([float(t) for t in thresholds]),
        "embedder": embedder,
        "data_fingerprint": data_fingerprint,
        "variant": variant,
    }


def write(model: Any, metadata: dict[str, str]) -> None:
    """Replace the `metadata_props` of an `onnx.ModelProto` with `metadata`, keys prefixed `arginator.`."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = PREFIX + key, value


def _default_name(path: Path) -> str:
    name = path.parent.name if path.stem.startswith("model") else path.stem
    if name == "compressed":
        name = path.parent.parent.name
    return name or "model"


def decode(raw: dict[str, str], path: Path, name: str | None = None) -> ModelInfo:
    """A validated `ModelInfo` from a model's raw metadata map (prefixed keys; other keys are ignored).

    Raises:
        ModelLoadError: arginator metadata missing, unreadable, or inconsistent (thresholds vs classes).
    """
    values = {k.removeprefix(PREFIX): v for k, v in raw.items() if k.startswith(PREFIX)}
    missing = [key for key in REQUIRED if key not in values]
    if missing:
        raise ModelLoadError(f"{path.name} is not an arginator model: metadata {missing} missing")
    try:
        classes = [str(c) for c in json.loads(values["classes"])]
        thresholds = [float(t) for t in json.loads(values.get("thresholds", "[]"))]
        input_dim = int(values["input_dim"])
        novelty_threshold = float(values["novelty_threshold"]) if "novelty_threshold" in values else None
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(f"{path.name}: unreadable arginator metadata ({exc})") from None
    version = values.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ModelLoadError(
            f"{path.name}: metadata format {version}, this arginator reads format {FORMAT_VERSION} (upgrade arginator)"
        )
    task = values["task"]
    if task not in TASKS:
        raise ModelLoadError(f"{path.name}: unknown task '{task}' in the metadata")
    if len(classes) < 2 or input_dim <= 0:
        raise ModelLoadError(f"{path.name}: metadata needs at least two classes and a positive input_dim")
    expected = {"multiclass": 0, "binary": 1, "multilabel": len(classes)}[task]
    if thresholds and len(thresholds) != expected:
        raise ModelLoadError(f"{path.name}: {len(thresholds)} thresholds in the metadata for a {task} model")
    return ModelInfo(
        name=name or _default_name(path),
        path=path,
        task=task,
        classes=classes,
        input_dim=input_dim,
        thresholds=thresholds,
        embedder=values.get("embedder", "unknown"),
        data_fingerprint=values.get("data_fingerprint", ""),
        variant=values.get("variant", "fp32"),
        kind=values.get("model", "ffnn"),
        novelty_threshold=novelty_threshold,
    )


def check_outputs(info: ModelInfo, width: Any) -> None:
    """Raise ModelLoadError when the graph's output width disagrees with the task and classes in the metadata."""
    if isinstance(width, int) and width != info.outputs:
        raise ModelLoadError(
            f"{info.path.name}: a {info.task} model over {len(info.classes)} classes should output {info.outputs} "
            f"column(s), this one outputs {width}"
        )


def read(path: Path | str, name: str | None = None) -> ModelInfo:
    """The validated metadata of an ONNX file (opened with ONNX Runtime).

    Raises:
        ModelLoadError: the file is missing, not ONNX, or carries no valid arginator metadata.
    """
    path = Path(path)
    session = create_session(path, threads=1, cpu_only=True)
    info = decode(session.get_modelmeta().custom_metadata_map, path, name)
    outputs = session.get_outputs()
    check_outputs(info, outputs[0].shape[-1] if outputs and outputs[0].shape else None)
    if info.novelty_threshold is not None and NOVELTY_NAME not in {output.name for output in outputs}:
        raise ModelLoadError(f"{path.name}: the metadata gives a novelty threshold but the graph has no novelty output")
    return info
