"""Ray Data vs one process: `arginator predict` over the same 1M x 1024 rows, on the same cores, in one run.

Writes an (N x 1024) float32 HDF5 file and a 5-class ONNX classifier with arginator metadata, then times the real CLI:
the single process with 2 ONNX Runtime threads, Ray Data with 2 actors of 1 CPU each, and Ray Data with 1 actor (the
per-worker figure that scales out), each `--repeats` times (medians; the order alternates). The outputs are checked
identical. Results go to `reports/benchmarks/predict_ray.md`.

Usage: python benchmarks/predict_ray.py [--rows 1000000] [--repeats 5] [--workdir /tmp/arginator-ray]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
from large_input import DIM, finish, write_large_input

SMALL_ROWS = 8192


def _run(arguments: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([shutil.which("arginator") or "arginator", "predict", *arguments], check=True, capture_output=True)
    return time.perf_counter() - started


def _in_process(source: Path, model: Path, out: Path, workers: int, chunk_rows: int) -> float:
    """Ray Data on an instance that is already up: the steady-state figure (a cluster is started once)."""
    from arginator.serving.ray_batch import predict_with_ray

    started = time.perf_counter()
    predict_with_ray([source], model, out, workers=workers, cpus_per_worker=1, chunk_rows=chunk_rows)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk-rows", type=int, default=8192)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/arginator-ray"))
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/predict_ray.md"))
    args = parser.parse_args()
    source, model = write_large_input(args.workdir, args.rows)
    common = [str(source), "--model", str(model), "--chunk-rows", str(args.chunk_rows)]
    variants = {
        "one process, 2 ORT threads": [*common, "--out", str(args.workdir / "local.parquet"), "--threads", "2"],
        "Ray Data, 2 actors x 1 CPU": [*common, "--out", str(args.workdir / "ray2.parquet"), "--engine", "ray",
                                       "--workers", "2", "--threads", "1"],
        "Ray Data, 1 actor x 1 CPU": [*common, "--out", str(args.workdir / "ray1.parquet"), "--engine", "ray",
                                      "--workers", "1", "--threads", "1"],
    }  # fmt: skip
    import ray

    # The instance the CLI starts preloads Ray Data and the actor module in its idle workers: the same here.
    os.environ["RAY_preload_python_modules"] = "ray.data,arginator.serving.ray_batch"  # noqa: SIM112 (Ray's name)
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - started
    warm = {
        "Ray Data on a running instance, 2 actors x 1 CPU": 2,
        "Ray Data on a running instance, 1 actor x 1 CPU": 1,
    }
    small, _ = write_large_input(args.workdir / "small", SMALL_ROWS)
    fixed: list[float] = []  # a job so small that its time is Ray's fixed cost per job
    times: dict[str, list[float]] = {name: [] for name in [*variants, *warm]}
    for repeat in range(args.repeats):
        order = [*variants, *warm] if repeat % 2 == 0 else [*reversed(warm), *reversed(variants)]
        for name in order:
            if name in warm:
                times[name].append(
                    _in_process(source, model, args.workdir / f"warm{warm[name]}.parquet", warm[name], args.chunk_rows)
                )
            else:
                times[name].append(_run(variants[name]))
            print(f"{name}: {times[name][-1]:.1f} s", flush=True)
        fixed.append(_in_process(small, model, args.workdir / "small.parquet", 2, args.chunk_rows))
    ray.shutdown()
    local = pq.read_table(args.workdir / "local.parquet")
    identical = all(
        pq.read_table(args.workdir / f"{name}.parquet").equals(local) for name in ("ray2", "ray1", "warm2", "warm1")
    )
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["one process, 2 ORT threads"]
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        "# Batch prediction: Ray Data vs one process",
        "",
        f"{stamp}: `arginator predict` over {args.rows:,} x {DIM} float32 rows (HDF5), chunks of {args.chunk_rows}, "
        f"a 5-class linear ONNX model, 2 cores; median of {args.repeats} runs each, alternating order. The CLI rows "
        f"include starting Python and, for Ray, a local Ray instance ({ray_start:.1f} s when started alone); the "
        "'running instance' rows time `predict_with_ray` on an instance already up, as on a cluster.",
        "",
        "| engine | median s | rows/s | rows/s per worker | vs one process |",
        "|---|---|---|---|---|",
    ]
    for name, seconds in medians.items():
        workers = 2 if "2 actors" in name else 1
        per_worker = f"{args.rows / seconds / workers:,.0f}" if "Ray" in name else ""
        lines.append(f"| {name} | {seconds:.1f} | {args.rows / seconds:,.0f} | {per_worker} | {base / seconds:.2f}x |")
    lines += [
        "",
        f"Outputs identical to the single process's: {'yes' if identical else 'NO'}.",
        "",
        f"Ray's fixed cost per job (starting the actors' worker processes, which import Ray Data and the model; "
        f"planning; collecting): {statistics.median(fixed):.1f} s (median) for a job of {SMALL_ROWS:,} rows on the "
        "running instance with 2 actors. Larger jobs amortise it; the rows/s per worker is what adds up on a cluster.",
    ]
    finish(lines, args.out, args.workdir)


if __name__ == "__main__":
    main()
