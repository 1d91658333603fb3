"""Inference: torch eager vs ONNX Runtime fp32 vs ORT int8 vs the shipped variant, with the machine's GEMM roofline.

Batch 1 latency (median and p99, µs) and batch 1024 throughput (rows/s), at 1 and 2 threads. Backends are measured in
interleaved rounds within one run (the machine's speed drifts), and figures are medians. The roofline is measured
here too: fp32 GEMM with torch, int8 GEMM with ONNX Runtime's dynamic-quantized MatMul, both at batch 1024.
On a machine with CUDA, torch runs on the GPU and ONNX Runtime uses the CUDA execution provider when installed.

Usage: python benchmarks/inference.py [--run models/arg-binary-grouped] [--deploy deploy/arg-binary]
"""

from __future__ import annotations

import os

# torch's OpenMP workers busy-wait after each op by default; interleaved with ONNX Runtime in one process they keep
# a core spinning and halve ORT's 2-thread throughput. Passive waiting measures each backend on its own cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from arginator.training.runs import load_model

CUDA = torch.cuda.is_available()
PROVIDERS = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]


def ort_predict(path: Path, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=PROVIDERS)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def torch_predict(module):
    device = "cuda" if CUDA else "cpu"
    net = module.net.to(device).eval()

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = net(torch.from_numpy(x).to(device))
            return out.cpu().numpy()

    return predict


def _best_rate(predict, x, operations: float, repeats: int = 15) -> float:
    predict(x)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(x)
        timings.append(time.perf_counter() - start)
    return operations / statistics.median(timings) / 1e9


def gemm_peaks(threads: int, rows: int = 1024, size: int = 2048) -> tuple[float, float]:
    """(fp32 GFLOP/s: the better of torch and ORT, int8 GOP/s: ORT dynamic quantization), rows x size x size."""
    torch.set_num_threads(threads)
    a, b = torch.randn(rows, size), torch.randn(size, size)
    operations = 2 * rows * size * size
    fp32 = _best_rate(lambda _: torch.matmul(a, b), None, operations)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(size, size)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", size])],
        [weight],
    )
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, int8_path = Path(tmp) / "gemm.onnx", Path(tmp) / "gemm.int8.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), fp32_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
        x = np.random.default_rng(1).normal(size=(rows, size)).astype(np.float32)
        fp32 = max(fp32, _best_rate(ort_predict(fp32_path, threads), x, operations))
        int8 = _best_rate(ort_predict(int8_path, threads), x, operations)
    return fp32, int8


def flops_per_row(module) -> int:
    return sum(2 * m.in_features * m.out_features for m in module.net.modules() if isinstance(m, torch.nn.Linear))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("models/arg-binary-grouped"))
    parser.add_argument("--deploy", type=Path, default=Path("deploy/arg-binary"))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = parser.parse_args()
    module, _ = load_model(args.run / "model.ckpt")
    shipped_name = json.loads((args.deploy / "compressed" / "compression.json").read_text())["shipped"]
    files = {
        "ORT fp32": args.deploy / "model.onnx",
        "ORT int8": args.deploy / "compressed" / "variants" / "int8.onnx",
        f"shipped ({shipped_name})": args.deploy / "compressed" / "model.shipped.onnx",
    }
    dim = module.hparams["input_dim"]
    rng = np.random.default_rng(0)
    one = rng.normal(size=(1, dim)).astype(np.float32)
    batch = rng.normal(size=(1024, dim)).astype(np.float32)
    results = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        backends = {"torch eager": torch_predict(module)} | {
            name: ort_predict(path, threads) for name, path in files.items()
        }
        latency: dict[str, list[float]] = {name: [] for name in backends}
        throughput: dict[str, list[float]] = {name: [] for name in backends}
        for predict in backends.values():
            predict(one), predict(batch)  # warm-up
        for _ in range(args.rounds):  # interleaved: each round measures every backend
            for name, predict in backends.items():
                for _ in range(50):
                    start = time.perf_counter()
                    predict(one)
                    latency[name].append(time.perf_counter() - start)
                # Sustained throughput: a few runs first wake the thread pool that the batch-1 loop let sleep.
                for _ in range(3):
                    predict(batch)
                runs = []
                for _ in range(10):
                    start = time.perf_counter()
                    predict(batch)
                    runs.append(time.perf_counter() - start)
                throughput[name].append(1024 / statistics.median(runs))
        fp32_peak, int8_peak = gemm_peaks(threads)
        results[threads] = {
            "gemm_fp32_gflops": fp32_peak,
            "gemm_int8_gops": int8_peak,
            "backends": {
                name: {
                    "batch1_us_median": statistics.median(latency[name]) * 1e6,
                    "batch1_us_p99": float(np.percentile(latency[name], 99)) * 1e6,
                    "batch1024_rows_per_s": statistics.median(throughput[name]),
                }
                for name in backends
            },
        }
    flops = flops_per_row(module)
    write_report(args, results, flops, shipped_name)


def write_report(args, results: dict, flops: int, shipped_name: str) -> None:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        "# Inference: torch eager vs ONNX Runtime fp32 / int8 / shipped",
        "",
        f"Model `{args.run}` ({flops / 1e6:.2f} MFLOP per row), {stamp}, torch {torch.__version__}, onnxruntime "
        f"{ort.__version__}, providers {PROVIDERS}, CUDA: {CUDA}. Medians over {args.rounds} interleaved rounds. "
        "Peak: measured GEMM (1024 x 2048 x 2048), fp32 for torch/ORT fp32 rows, int8 for int8 rows.",
        "",
    ]
    for threads, entry in results.items():
        fp32_roof = entry["gemm_fp32_gflops"] * 1e9 / flops
        int8_roof = entry["gemm_int8_gops"] * 1e9 / flops
        base = entry["backends"]["torch eager"]
        lines += [
            f"## {threads} thread{'s' if threads > 1 else ''}",
            "",
            f"GEMM peak: fp32 {entry['gemm_fp32_gflops']:.0f} GFLOP/s (roofline {fp32_roof:,.0f} rows/s), "
            f"int8 {entry['gemm_int8_gops']:.0f} GOP/s (roofline {int8_roof:,.0f} rows/s).",
            "",
            "| backend | batch 1 µs (p50) | p99 | x torch | batch 1024 rows/s | x torch | % of roofline |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in entry["backends"].items():
            roof = int8_roof if "int8" in name else fp32_roof
            lines.append(
                f"| {name} | {r['batch1_us_median']:.0f} | {r['batch1_us_p99']:.0f} | "
                f"{base['batch1_us_median'] / r['batch1_us_median']:.2f} | {r['batch1024_rows_per_s']:,.0f} | "
                f"{r['batch1024_rows_per_s'] / base['batch1024_rows_per_s']:.2f} | "
                f"{100 * r['batch1024_rows_per_s'] / roof:.0f}% |"
            )
        lines.append("")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inference.md").write_text("\n".join(lines))
    (args.out / "inference.json").write_text(
        json.dumps({"date": stamp, "flops_per_row": flops, "threads": results}, indent=2) + "\n"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
