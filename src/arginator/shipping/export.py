"""ONNX export of a run's FFNN and baseline, with self-describing metadata and a parity check against torch.

Both models export with the same interface: input `embedding` (batch, input_dim) float32, output `probabilities`
(batch, C) float32 (softmax for multiclass; per-output sigmoid otherwise, one column for binary). The metadata carries
everything a consumer needs: labels, task, input dimension, decision thresholds, embedder and a training-data
fingerprint. Reading needs only `onnx` or `onnxruntime`; this module never imports FastAPI.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from arginator import atomic
from arginator.errors import ArginatorError
from arginator.serving import metadata
from arginator.serving.decide import decide
from arginator.serving.metadata import INPUT_NAME, NOVELTY_NAME, OUTPUT_NAME
from arginator.serving.session import create_session
from arginator.training import runs
from arginator.training.network import ClassifierCore, LogisticBaseline, logits_to_probabilities
from arginator.training.novelty import threshold_of

log = logging.getLogger(__name__)
PARITY_TOLERANCE = 1e-5
NOVELTY_TOLERANCE = 1e-4  # relative: the score sums hundreds of squared terms in float32


class ExportError(ArginatorError):
    """An export failed its parity check, or an ONNX file is corrupt or does not match what is expected."""


class _ProbabilityModel(nn.Module):
    """The FFNN followed by its output activation (probabilities), plus its novelty score when it has one."""

    def __init__(self, module: ClassifierCore) -> None:
        super().__init__()
        self.net, self.task = module.net, module.task

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        probabilities = logits_to_probabilities(self.net(x), self.task)
        if threshold_of(self.net) is None:
            return probabilities
        return probabilities, self.net.novelty(x)


def build_metadata(
    model: ClassifierCore | LogisticBaseline, thresholds: list[float], info: dict[str, Any]
) -> dict[str, str]:
    """The ONNX metadata of a run's FFNN or baseline (`serving.metadata` holds the schema)."""
    kind = "baseline" if isinstance(model, LogisticBaseline) else "ffnn"
    classes = model.classes if kind == "ffnn" else model.classes_
    novelty = None if isinstance(model, LogisticBaseline) else threshold_of(model.net)
    return metadata.build(
        kind=kind,
        task=info["task"],
        classes=list(classes),
        input_dim=info["input_dim"],
        thresholds=thresholds,
        embedder=str(info.get("embedder", "unknown")),
        data_fingerprint=str(info.get("data_fingerprint", "")),
        novelty_threshold=novelty,
    )


def ffnn_graph(module: ClassifierCore) -> onnx.ModelProto:
    """The FFNN as an ONNX graph with a dynamic batch axis, without metadata (seconds per call: export once).

    The module is moved to the CPU and put in eval mode, in place.
    """
    module = module.cpu().eval()
    example = torch.zeros(2, module.hparams["input_dim"], dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _ProbabilityModel(module),
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME] if threshold_of(module.net) is None else [OUTPUT_NAME, NOVELTY_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
    model = program.model_proto
    for node in model.graph.node:  # the exporter's debugging notes hold absolute source paths: files would differ
        del node.metadata_props[:]  # between checkouts, and the ship policy compares file sizes
    return model


def save_graph(graph: onnx.ModelProto, meta: dict[str, str], path: Path) -> Path:
    """Save a copy of `graph` with `meta` as its metadata (the graph itself is left as it was)."""
    model = onnx.ModelProto()
    model.CopyFrom(graph)
    metadata.write(model, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def export_ffnn(module: ClassifierCore, meta: dict[str, str], path: Path) -> Path:
    """Export the FFNN (eval mode) with a dynamic batch axis, then write the metadata into the file."""
    return save_graph(ffnn_graph(module), meta, path)


def export_baseline(baseline: LogisticBaseline, meta: dict[str, str], path: Path) -> Path:
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
    metadata.write(model, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def onnx_probabilities(path: Path | str, x: np.ndarray, threads: int = 0) -> np.ndarray:
    """Probabilities from an ONNX file with ONNX Runtime (CPU), in the FFNN's output shapes."""
    session = create_session(path, threads, cpu_only=True)
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


def check_parity(reference: np.ndarray, exported: np.ndarray, task: str, thresholds: list[float], name: str) -> float:
    """Max |p_onnx - p_torch|; raises ExportError above the tolerance or if any prediction differs."""
    exported = exported.reshape(reference.shape)
    difference = float(np.abs(exported - reference).max()) if reference.size else 0.0
    same = np.array_equal(decide(reference, task, thresholds).chosen, decide(exported, task, thresholds).chosen)
    if difference > PARITY_TOLERANCE or not same:
        raise ExportError(
            f"{name}: ONNX output differs from the reference (max |diff| {difference:.2e}, tolerance "
            f"{PARITY_TOLERANCE:.0e}; identical predictions: {same}); the export is not written"
        )
    return difference


def onnx_novelty(path: Path | str, x: np.ndarray) -> np.ndarray | None:
    """The novelty output of an ONNX file, or None when its graph has none."""
    session = create_session(path, 0, cpu_only=True)
    if NOVELTY_NAME not in {output.name for output in session.get_outputs()}:
        return None
    return session.run([NOVELTY_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


def check_novelty_parity(module: ClassifierCore, path: Path, x: np.ndarray) -> float | None:
    """Max relative |novelty_onnx - novelty_torch|; raises ExportError above the tolerance or if a flag differs."""
    threshold = threshold_of(module.net)
    exported = onnx_novelty(path, x)
    if threshold is None or exported is None:
        return None
    reference = module.predict_novelty(x)
    relative = float((np.abs(exported - reference) / np.maximum(np.abs(reference), 1.0)).max()) if len(x) else 0.0
    near = np.abs(reference - threshold) <= 1e-4 * max(threshold, 1.0)  # a float-rounding tie may fall either way
    flags_differ = ((exported > threshold) != (reference > threshold)) & ~near
    if relative > NOVELTY_TOLERANCE or flags_differ.any():
        raise ExportError(
            f"novelty: ONNX differs from torch (max relative |diff| {relative:.2e}, tolerance {NOVELTY_TOLERANCE:.0e}; "
            f"{int(flags_differ.sum())} novelty flags differ); the export is not written"
        )
    return relative


def export_run(run_dir: Path | str, out_dir: Path | str | None = None, embedder: str = "unknown") -> dict[str, Any]:
    """Export a run's FFNN and baseline to `<out>/model.onnx` and `<out>/baseline.onnx`, checked on the test split.

    Returns:
        A summary with the files and the measured parity, also written to `<out>/export.json`.
    """
    from arginator.data.splits import prepare_dataset

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    info = runs.read_info(run_dir) | {"embedder": embedder}
    config = runs.read_config(run_dir)
    module, thresholds = runs.load_model(run_dir / runs.MODEL)
    baseline, baseline_thresholds = runs.load_baseline(run_dir / runs.BASELINE)
    split = run_dir / runs.SPLIT
    data = prepare_dataset(info["data_path"], config.data, split, classes=info["classes"], write=False, outliers=False)
    x, _ = data.arrays("test")
    task = info["task"]
    summary: dict[str, Any] = {"test_rows": len(x)}
    for kind, model, cut, writer in (
        ("ffnn", module, thresholds, export_ffnn),
        ("baseline", baseline, baseline_thresholds, export_baseline),
    ):
        path = out / ("model.onnx" if kind == "ffnn" else "baseline.onnx")
        with atomic.atomic_path(path) as tmp:  # a file that fails the parity check is never written
            writer(model, build_metadata(model, cut, info), tmp)
            exported = onnx_probabilities(tmp, x)
            difference = check_parity(model.predict_proba(x), exported, task, cut, f"{run_dir.name}/{kind}")
            novelty = check_novelty_parity(model, tmp, x) if kind == "ffnn" else None
        summary[kind] = {"file": path.name, "bytes": path.stat().st_size, "max_abs_difference": difference}
        if novelty is not None:
            summary[kind]["novelty_max_relative_difference"] = novelty
        log.info("%s: %s, max |p_onnx - p_ref| = %.2e on %d test rows", kind, path, difference, len(x))
    atomic.write_json(out / "export.json", summary)
    return summary
