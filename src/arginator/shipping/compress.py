"""Compression variants of a run's FFNN, each measured for size, speed and accuracy, and a policy that picks one.

Variants:
- `fp32`: the exported model (ONNX Runtime);
- `int8`: ONNX Runtime dynamic int8 quantization (after `quant_pre_process`, which the dynamo export needs):
  activation scales come from each batch, so an outlier row coarsens its neighbours' inputs;
- `int8-static`: ONNX Runtime static int8 with activation ranges calibrated (min/max) on the training split: fixed
  scales, so a row's prediction never depends on its batch, and no per-batch range search;
- `prune-l1-<s>`: unstructured L1 pruning at sparsity s, made permanent (same dense shapes: smaller only compressed);
- `narrow-<k>`: structured pruning keeping the fraction k of each hidden layer's neurons (by weight norm), giving
  genuinely narrower layers, then a short fine-tune on the training split; also exported as static int8
  (`narrow-<k>-int8`, calibrated like `int8-static`);
- `torch-int8`: torch's dynamic quantization, for comparison (measured in torch, not exportable to ONNX).

The policy (`choose_shipped`) is deterministic: among the ONNX variants whose validation macro-F1 is at most
`max_f1_drop` below fp32's and whose answer for a row does not depend on the other rows of its batch (dynamic `int8`
is measured and reported, never shipped: a protein's label must not change with what it is screened beside), the
smallest file, then the best validation macro-F1, then the name. Speed is measured and
reported but never decides, so two machines ship the same file for the same data. Speeds are measured at one ONNX
Runtime thread by default: on a small shared machine, several sessions' thread pools interfere with each other (an
idle pool's spinning workers slow the next session by up to 5x), while single-thread figures repeat within a few
percent; `invoke bench` reports 1 and 2 threads.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from arginator import atomic
from arginator.serving import metadata
from arginator.serving.decide import decide
from arginator.serving.metadata import INPUT_NAME
from arginator.shipping.export import build_metadata, ffnn_graph, onnx_novelty, save_graph
from arginator.shipping.pruning import fine_tune, narrow, prune_unstructured, sparsity
from arginator.shipping.timing import measure, session_predictor
from arginator.training import runs, visualize
from arginator.training.metrics import macro_f1
from arginator.training.network import TrainedClassifier, logits_to_probabilities
from arginator.training.novelty import fit_novelty, threshold_of

log = logging.getLogger(__name__)
# Variants whose output for a row depends on the rest of its batch (activation scales taken per batch): never shipped.
BATCH_DEPENDENT = frozenset({"int8", "torch-int8"})


def quantize_onnx(
    fp32_path: Path, int8_path: Path, meta: dict[str, str], calibration: np.ndarray | None = None
) -> Path:
    """ONNX Runtime int8: dynamic (activations quantized per batch), or static when `calibration` rows are given."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = int8_path.with_suffix(".pre.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        if calibration is None:
            quantize_dynamic(str(prepared), str(int8_path), weight_type=QuantType.QInt8)
        else:
            batches = [{INPUT_NAME: chunk} for chunk in np.array_split(calibration.astype(np.float32), 16)]

            class Batches(CalibrationDataReader):
                def get_next(self) -> dict[str, np.ndarray] | None:
                    return batches.pop() if batches else None

            quantize_static(
                str(prepared),
                str(int8_path),
                Batches(),
                quant_format=QuantFormat.QOperator,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    prepared.unlink(missing_ok=True)
    model = onnx.load(int8_path)
    metadata.write(model, meta)
    onnx.save(model, int8_path)
    return int8_path


def retune_novelty_threshold(path: Path, meta: dict[str, str], x_val: np.ndarray, quantile: float) -> None:
    """Set a quantized file's novelty threshold from its own validation scores (int8 features shift them a little)."""
    scores = onnx_novelty(path, x_val)
    if scores is None:
        return
    model = onnx.load(path)
    metadata.write(model, meta | {"novelty_threshold": repr(float(np.quantile(scores, quantile)))})
    with atomic.atomic_path(path) as tmp:
        onnx.save(model, tmp)


def compress_run(
    run_dir: Path | str,
    out_dir: Path | str | None = None,
    max_f1_drop: float = 0.005,
    sparsities: tuple[float, ...] = (0.5, 0.9),
    keep_ratios: tuple[float, ...] = (0.5, 0.25),
    fine_tune_epochs: int = 20,
    threads: int = 1,
    embedder: str = "unknown",
) -> dict[str, Any]:
    """Build, measure and choose among the variants; write `<out>/compression.{json,md}` and the variant files."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # for torch-int8's timing; restored so the caller's own work is not slowed
    try:
        return _build_and_choose(
            run_dir, out_dir, max_f1_drop, sparsities, keep_ratios, fine_tune_epochs, threads, embedder
        )
    finally:
        torch.set_num_threads(previous)


def _build_and_choose(
    run_dir: Path | str,
    out_dir: Path | str | None,
    max_f1_drop: float,
    sparsities: tuple[float, ...],
    keep_ratios: tuple[float, ...],
    fine_tune_epochs: int,
    threads: int,
    embedder: str,
) -> dict[str, Any]:
    """Everything `compress_run` does, at the thread count it has set."""
    from arginator.data.splits import prepare_dataset

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "compressed"
    variants_dir = out / "variants"
    variants_dir.mkdir(parents=True, exist_ok=True)
    info = runs.read_info(run_dir)
    config = runs.read_config(run_dir)
    module, thresholds = runs.load_model(run_dir / runs.MODEL)
    split = run_dir / runs.SPLIT
    data = prepare_dataset(info["data_path"], config.data, split, classes=info["classes"], write=False, outliers=False)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (data.arrays(s) for s in ("train", "val", "test"))
    x_val, x_test = x_val.astype(np.float32), x_test.astype(np.float32)
    task = info["task"]
    holdout = np.random.default_rng(0).random(len(x_train)) < 0.1
    x_fit, y_fit, x_hold, y_hold = x_train[~holdout], y_train[~holdout], x_train[holdout], y_train[holdout]

    def labels_of(probabilities: np.ndarray) -> np.ndarray:
        return decide(probabilities, task, thresholds).chosen

    def f1(probabilities: np.ndarray, y: np.ndarray) -> float:
        return macro_f1(y, labels_of(probabilities), task, len(info["classes"]))

    rows: dict[str, dict[str, Any]] = {}
    fp32_predictions = None
    predictors: dict[str, Callable[[np.ndarray], np.ndarray]] = {}

    def add(name: str, predict, path: Path | None, size: int, extra: dict[str, Any]) -> None:
        nonlocal fp32_predictions
        test_probabilities = predict(x_test)
        predictions = labels_of(test_probabilities)
        if fp32_predictions is None:
            fp32_predictions = predictions
        same = predictions == fp32_predictions
        rows[name] = {
            "file": path.name if path else None,
            "bytes": size,
            "val_macro_f1": f1(predict(x_val), y_val),
            "test_macro_f1": f1(test_probabilities, y_test),
            "agreement_with_fp32": float(np.mean(same.all(axis=1) if same.ndim > 1 else same)),
            **extra,
        }
        predictors[name] = predict

    exported: tuple[TrainedClassifier, onnx.ModelProto] | None = None  # the last network exported, and its graph

    def onnx_variant(
        name: str, candidate: TrainedClassifier, extra: dict[str, Any], int8: bool = False, static: bool = False
    ) -> None:
        nonlocal exported
        if exported is None or exported[0] is not candidate:  # a network's fp32 and int8 variants come in a row
            if candidate is not module and threshold_of(module.net) is not None:  # pruned features: a new bank
                fit_novelty(candidate.net, x_train, x_val, config.train.novelty_quantile, seed=config.train.seed)
            exported = (candidate, ffnn_graph(candidate))
        meta = build_metadata(candidate, thresholds, info | {"embedder": embedder}) | {"variant": name}
        path = save_graph(exported[1], meta, variants_dir / f"{name}.onnx")
        if int8:
            fp32 = path
            calibration = x_train if static else None
            path = quantize_onnx(fp32, variants_dir / f"{name}.onnx.int8", meta, calibration)
            fp32.unlink()
            path = path.rename(variants_dir / f"{name}.onnx")
            retune_novelty_threshold(path, meta, x_val, config.train.novelty_quantile)
        add(name, session_predictor(path, threads), path, path.stat().st_size, extra)

    onnx_variant("fp32", module, {"sparsity": sparsity(module.net)})
    onnx_variant("int8", module, {"sparsity": sparsity(module.net)}, int8=True)
    onnx_variant("int8-static", module, {"sparsity": sparsity(module.net)}, int8=True, static=True)
    for amount in sparsities:
        pruned = prune_unstructured(module, amount)
        onnx_variant(f"prune-l1-{amount:g}", pruned, {"sparsity": sparsity(pruned.net)})
    for keep in keep_ratios:
        smaller = narrow(module, keep)
        # Fine-tuning stops on a held-out tenth of the training split, so validation stays unbiased for the policy.
        fine_tune(smaller, x_fit, y_fit, fine_tune_epochs, lambda m=smaller: f1(m.predict_proba(x_hold), y_hold))
        hidden = smaller.hparams["model_config"]["hidden_sizes"]
        onnx_variant(f"narrow-{keep:g}", smaller, {"hidden_sizes": hidden, "sparsity": 0.0})
        onnx_variant(
            f"narrow-{keep:g}-int8", smaller, {"hidden_sizes": hidden, "sparsity": 0.0}, int8=True, static=True
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(module.net).eval(), {nn.Linear}, dtype=torch.qint8
        )
    buffer = io.BytesIO()
    torch.save(quantized.state_dict(), buffer)

    def torch_predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = quantized(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return logits_to_probabilities(logits, task).numpy()

    add("torch-int8", torch_predict, None, buffer.getbuffer().nbytes, {"sparsity": 0.0})
    # torch's OpenMP workers busy-wait after each op and would slow whatever runs next: timed on its own, last.
    torch_only = {"torch-int8": predictors.pop("torch-int8")}
    for name, speed in (measure(predictors, x_test) | measure(torch_only, x_test, rounds=3)).items():
        rows[name].update(speed)
        log.info("%s: %s", name, {k: v for k, v in rows[name].items() if k != "file"})

    base = rows["fp32"]
    for name, row in rows.items():
        row["batch_independent"] = name not in BATCH_DEPENDENT
        row["val_f1_drop"] = base["val_macro_f1"] - row["val_macro_f1"]
        row["test_f1_delta"] = row["test_macro_f1"] - base["test_macro_f1"]
        row["speedup_batch1024"] = row["batch1024_rows_per_s"] / base["batch1024_rows_per_s"]
        row["size_ratio"] = base["bytes"] / row["bytes"]
    shipped = choose_shipped(rows, max_f1_drop)
    atomic.copy_file(variants_dir / rows[shipped]["file"], out / "model.shipped.onnx")
    summary = {
        "run": str(run_dir),
        "threads": threads,
        "max_f1_drop": max_f1_drop,
        "shipped": shipped,
        "variants": rows,
    }
    atomic.write_json(out / "compression.json", summary)
    atomic.write_text(out / "compression.md", compression_table(summary))
    visualize.compression_tradeoff(rows, shipped, out / "tradeoff.png")
    return summary


def choose_shipped(rows: dict[str, dict[str, Any]], max_f1_drop: float) -> str:
    """The variant to ship: within the accuracy budget, the smallest file, then the best validation F1, then the name.

    Only exported (ONNX) variants whose rows do not depend on their batch are eligible; fp32 always is (its drop is
    zero). Speed is not a criterion: it differs between machines and runs, and the shipped file must not.
    """
    eligible = [
        name
        for name, row in rows.items()
        if row["file"]
        and row["val_f1_drop"] <= max_f1_drop
        and name not in BATCH_DEPENDENT
        and row.get("batch_independent", True)
    ]
    return min(eligible, key=lambda name: (rows[name]["bytes"], -rows[name]["val_macro_f1"], name))


def compression_table(summary: dict[str, Any]) -> str:
    """Markdown table of the variants, the shipped one in bold."""
    lines = [
        f"# Compression of {summary['run']}",
        "",
        f"{summary['threads']} threads; shipped: **{summary['shipped']}** (the smallest file whose validation "
        f"macro-F1 is at most {summary['max_f1_drop'] * 100:.1f} points below fp32, among the variants that answer "
        "each row independently of its batch; † marks those that do not, which are never shipped; speed is "
        "reported, not decisive).",
        "",
        "| variant | size (KB) | x smaller | sparsity | batch 1 µs (p50 / p99) | batch 1024 rows/s | x fp32 | "
        "test macro-F1 | delta (points) | agreement |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in summary["variants"].items():
        marked = name if r.get("batch_independent", True) else f"{name} †"
        label = f"**{name}**" if name == summary["shipped"] else marked
        lines.append(
            f"| {label} | {r['bytes'] / 1024:.0f} | {r['size_ratio']:.2f} | {r['sparsity']:.2f} | "
            f"{r['batch1_us_median']:.0f} / {r['batch1_us_p99']:.0f} | {r['batch1024_rows_per_s']:,.0f} | "
            f"{r['speedup_batch1024']:.2f} | {r['test_macro_f1']:.3f} | {r['test_f1_delta'] * 100:+.1f} | "
            f"{r['agreement_with_fp32']:.3f} |"
        )
    lines += ["", "![throughput vs macro-F1](tradeoff.png)"]
    return "\n".join(lines) + "\n"
