"""Ray Data vs one process: `arginator predict` over the same 1M x 1024 rows, on the same cores, in one run.

Writes an (N x 1024) float32 HDF5 file and a 5-class ONNX classifier with arginator metadata, then times the real CLI:
the single process with 2 ONNX Runtime threads, Ray Data with 2 actors of 1 CPU each, and Ray Data with 1 actor (the
per-worker figure that scales out), each `--repeats` times (medians; the order alternates). The outputs are checked
identical. Results go to `reports/benchmarks/predict_ray.md`.

Usage: python benchmarks/predict_ray.py [--rows 1000000] [--repeats 3] [--workdir /tmp/arginator-ray]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import write_linear_onnx  # noqa: E402

DIM = 1024


def _run(arguments: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([shutil.which("arginator") or "arginator", "predict", *arguments], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=8192)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/arginator-ray"))
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/predict_ray.md"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    source = args.workdir / "embeddings.h5"
    rng = np.random.default_rng(0)
    with h5py.File(source, "w") as handle:
        matrix = handle.create_dataset("embeddings", shape=(args.rows, DIM), dtype="f4", chunks=(1024, DIM))
        for start in range(0, args.rows, 65536):
            stop = min(args.rows, start + 65536)
            matrix[start:stop] = rng.standard_normal((stop - start, DIM), dtype=np.float32)
    model = write_linear_onnx(
        args.workdir / "model.onnx", rng.normal(size=(DIM, 5)).astype(np.float32) / 32, "multiclass", list("abcde")
    )
    common = [str(source), "--model", str(model), "--chunk-rows", str(args.chunk_rows)]
    variants = {
        "one process, 2 ORT threads": [*common, "--out", str(args.workdir / "local.parquet"), "--threads", "2"],
        "Ray Data, 2 actors x 1 CPU": [*common, "--out", str(args.workdir / "ray2"), "--engine", "ray",
                                       "--workers", "2", "--threads", "1"],
        "Ray Data, 1 actor x 1 CPU": [*common, "--out", str(args.workdir / "ray1"), "--engine", "ray",
                                      "--workers", "1", "--threads", "1"],
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
        for name in order:
            times[name].append(_run(variants[name]))
            print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    local = pq.read_table(args.workdir / "local.parquet")
    identical = all(
        pads.dataset(args.workdir / name, format="parquet").to_table().equals(local) for name in ("ray2", "ray1")
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["one process, 2 ORT threads"]
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        "# Batch prediction: Ray Data vs one process",
        "",
        f"{stamp}: `arginator predict` over {args.rows:,} x {DIM} float32 rows (HDF5), chunks of {args.chunk_rows}, "
        f"a 5-class linear ONNX model, 2 cores; median of {args.repeats} runs each, alternating order. Ray includes "
        "starting its local instance in every run.",
        "",
        "| engine | median s | rows/s | rows/s per worker | vs one process |",
        "|---|---|---|---|---|",
    ]
    for name, seconds in medians.items():
        workers = 2 if "2 actors" in name else 1
        per_worker = f"{args.rows / seconds / workers:,.0f}" if "Ray" in name else ""
        lines.append(f"| {name} | {seconds:.1f} | {args.rows / seconds:,.0f} | {per_worker} | {base / seconds:.2f}x |")
    lines += ["", f"Outputs identical to the single process's: {'yes' if identical else 'NO'}."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(args.workdir)


if __name__ == "__main__":
    main()
