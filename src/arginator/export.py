"""ONNX export of a run's FFNN and baseline, with self-describing metadata and a parity check against torch.

Both models export with the same interface: input `embedding` (batch, input_dim) float32, output `probabilities`
(batch, C) float32 (softmax for multiclass; per-output sigmoid otherwise, one column for binary). The metadata carries
everything a consumer needs: labels, task, input dimension, decision thresholds, embedder and a training-data
fingerprint. Reading needs only `onnx` or `onnxruntime`; this module never imports FastAPI.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from arginator.errors import ArginatorError
from arginator.inference import METADATA_PREFIX
from arginator.model import EmbeddingClassifier, LogisticBaseline

log = logging.getLogger(__name__)
FORMAT_VERSION = "1"
INPUT_NAME, OUTPUT_NAME = "embedding", "probabilities"
PARITY_TOLERANCE = 1e-5


class ExportError(ArginatorError):
    """An export failed its parity check, or an ONNX file is corrupt or does not match what is expected."""


class _ProbabilityModel(nn.Module):
    """The FFNN followed by its output activation, so the exported graph returns probabilities."""

    def __init__(self, module: EmbeddingClassifier) -> None:
        super().__init__()
        self.net, self.task = module.net, module.task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        return torch.softmax(logits, dim=1) if self.task == "multiclass" else torch.sigmoid(logits)


def build_metadata(module_or_baseline: Any, thresholds: list[float], info: dict[str, Any], kind: str) -> dict[str, str]:
    """String metadata for the ONNX file (values JSON-encoded where not plain strings)."""
    classes = module_or_baseline.classes if kind == "ffnn" else module_or_baseline.classes_
    return {
        "format_version": FORMAT_VERSION,
        "model": kind,
        "task": info["task"],
        "classes": json.dumps(list(classes)),
        "input_dim": str(info["input_dim"]),
        "thresholds": json.dumps(list(thresholds)),
        "embedder": str(info.get("embedder", "unknown")),
        "data_fingerprint": str(info.get("data_fingerprint", "")),
    }


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace the model's metadata with `metadata`, keys prefixed `arginator.`."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value


def export_ffnn(module: EmbeddingClassifier, metadata: dict[str, str], path: Path) -> Path:
    """Export the FFNN (eval mode) with a dynamic batch axis, then write the metadata into the file."""
    module = module.cpu().eval()
    example = torch.zeros(2, module.hparams["input_dim"], dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _ProbabilityModel(module),
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
    model = program.model_proto
    set_metadata(model, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def export_baseline(baseline: LogisticBaseline, metadata: dict[str, str], path: Path) -> Path:
    """The baseline as a small ONNX graph: standardise, affine map, softmax or sigmoid."""
    coef = np.asarray(baseline.coef_, dtype=np.float32)
    intercept = np.asarray(baseline.intercept_, dtype=np.float32)
    initializers = [
        numpy_helper.from_array(np.asarray(baseline.mean_, dtype=np.float32), "mean"),
        numpy_helper.from_array(np.asarray(baseline.scale_, dtype=np.float32), "scale"),
        numpy_helper.from_array(coef.T.copy(), "weight"),
        numpy_helper.from_array(intercept, "bias"),
    ]
    activation = "Softmax" if baseline.task == "multiclass" else "Sigmoid"
    nodes = [
        helper.make_node("Sub", [INPUT_NAME, "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["standardised"]),
        helper.make_node("MatMul", ["standardised", "weight"], ["product"]),
        helper.make_node("Add", ["product", "bias"], ["logits"]),
        helper.make_node(activation, ["logits"], [OUTPUT_NAME], **({"axis": 1} if activation == "Softmax" else {})),
    ]
    graph = helper.make_graph(
        nodes,
        "arginator_baseline",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", coef.shape[1]])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", coef.shape[0]])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="arginator")
    onnx.checker.check_model(model)
    set_metadata(model, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def read_metadata(path: Path | str) -> dict[str, Any]:
    """The arginator metadata of an ONNX file, decoded (classes and thresholds as lists, input_dim as int).

    Raises:
        ExportError: the file is missing, not ONNX, or carries no arginator metadata.
    """
    path = Path(path)
    if not path.exists():
        raise ExportError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others for corrupt files
        raise ExportError(f"cannot read {path.name}: not a valid ONNX model ({type(exc).__name__})") from None
    raw = {
        p.key.removeprefix(METADATA_PREFIX): p.value for p in model.metadata_props if p.key.startswith(METADATA_PREFIX)
    }
    missing = {"task", "classes", "input_dim"} - set(raw)
    if missing:
        raise ExportError(f"{path.name} is not an arginator model: metadata {sorted(missing)} missing")
    decoded: dict[str, Any] = dict(raw)
    decoded["classes"] = json.loads(raw["classes"])
    decoded["thresholds"] = json.loads(raw.get("thresholds", "[]"))
    decoded["input_dim"] = int(raw["input_dim"])
    return decoded


def onnx_probabilities(path: Path | str, x: np.ndarray, threads: int = 0) -> np.ndarray:
    """Probabilities from an ONNX file with ONNX Runtime (CPU), in the FFNN's output shapes."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


def check_parity(reference: np.ndarray, exported: np.ndarray, task: str, thresholds: list[float], name: str) -> float:
    """Max |p_onnx - p_torch|; raises ExportError above the tolerance or if any prediction differs."""
    from arginator.evaluate import predict_labels

    exported = exported.reshape(reference.shape)
    difference = float(np.abs(exported - reference).max()) if reference.size else 0.0
    same = np.array_equal(predict_labels(reference, task, thresholds), predict_labels(exported, task, thresholds))
    if difference > PARITY_TOLERANCE or not same:
        raise ExportError(
            f"{name}: ONNX output differs from the reference (max |diff| {difference:.2e}, tolerance "
            f"{PARITY_TOLERANCE:.0e}; identical predictions: {same}); the export is not written"
        )
    return difference


def export_run(run_dir: Path | str, out_dir: Path | str | None = None, embedder: str = "unknown") -> dict[str, Any]:
    """Export a run's FFNN and baseline to `<out>/model.onnx` and `<out>/baseline.onnx`, checked on the test split.

    Returns:
        A summary with the files and the measured parity, also written to `<out>/export.json`.
    """
    from arginator.data import prepare_dataset
    from arginator.train import load_baseline, load_model, read_run_config, read_run_info

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    info = read_run_info(run_dir) | {"embedder": embedder}
    config = read_run_config(run_dir)
    module, thresholds = load_model(run_dir / "model.ckpt")
    baseline, baseline_thresholds = load_baseline(run_dir / "baseline.json")
    data = prepare_dataset(info["data_path"], config.data, run_dir / "split.csv", classes=info["classes"])
    x, _ = data.arrays("test")
    task = info["task"]
    summary: dict[str, Any] = {"test_rows": len(x)}
    for kind, model, cut, writer in (
        ("ffnn", module, thresholds, export_ffnn),
        ("baseline", baseline, baseline_thresholds, export_baseline),
    ):
        path = out / ("model.onnx" if kind == "ffnn" else "baseline.onnx")
        tmp = path.with_suffix(".onnx.partial")
        writer(model, build_metadata(model, cut, info, kind), tmp)
        reference = model.predict_proba(x)
        try:
            difference = check_parity(reference, onnx_probabilities(tmp, x), task, cut, f"{run_dir.name}/{kind}")
        except ExportError:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(path)
        summary[kind] = {"file": path.name, "bytes": path.stat().st_size, "max_abs_difference": difference}
        log.info("%s: %s, max |p_onnx - p_ref| = %.2e on %d test rows", kind, path, difference, len(x))
    (out / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
