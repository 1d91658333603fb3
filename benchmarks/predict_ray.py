"""Ray Data vs one process: `arginator predict` over the same 1M rows, on the same cores, in one run.

Writes an (N x dim) float32 HDF5 file for a model (`--model`, see `large_input`): `trained` (the shipped architecture
on 1024-dim input, the work per row of a model on ProtT5 vectors), `shipped` (`deploy/arg-binary`, 256-dim) or `linear`
(one matrix product: Ray's fixed cost per job shows most). It starts a local Ray instance, then times like against
like, each `--repeats` times (medians; the order alternates):
- the real CLI: the single process with 2 ONNX Runtime threads, Ray Data joining the running instance, and Ray Data
  starting its own instance (2 actors of 1 CPU each);
- from this process: the single process's engine, and Ray Data on the running instance with 2 actors and with 1 (the
  per-worker figure that scales out).
The outputs are checked identical. It also times Ray's fixed cost per job (a small job) and the driver's writer alone.
Results go to `reports/benchmarks/predict_ray.md` (trained) or `predict_ray_<model>.md`.

Usage: python benchmarks/predict_ray.py [--model trained|shipped|linear] [--rows 1000000] [--repeats 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
from large_input import MODELS, finish, write_embeddings, write_model

SMALL_ROWS = 8192
IDLE_PERCENT = 10.0  # the machine counts as idle below this CPU use (all cores, over half a second)


def _settle(limit_s: float = 15.0) -> float:
    """Wait until the machine is idle: no timed run pays for the one before it (a Ray instance shutting down, actors
    exiting, files being flushed). Returns the CPU use (%) seen last."""
    import psutil

    deadline = time.monotonic() + limit_s
    busy = psutil.cpu_percent(interval=0.5)
    while busy > IDLE_PERCENT and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=0.5)
    return busy


def _cli(arguments: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    command = [shutil.which("arginator") or "arginator", "predict", *arguments]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - started


def _ray_in_process(source: Path, model: Path, out: Path, workers: int, chunk_rows: int) -> float:
    """Ray Data from this process on the instance already up: actor start-up, planning, prediction and writing."""
    from arginator.serving.ray_batch import predict_with_ray

    started = time.perf_counter()
    predict_with_ray([source], model, out, workers=workers, cpus_per_worker=1, chunk_rows=chunk_rows)
    return time.perf_counter() - started


def _local_in_process(source: Path, model: Path, out: Path, chunk_rows: int) -> float:
    """The single process's engine from this process (no interpreter start): the like of `_ray_in_process`."""
    from arginator.serving.predictor import Predictor
    from arginator.serving.streaming import predict_file

    started = time.perf_counter()
    predict_file(Predictor(model, threads=2), source, out, chunk_rows=chunk_rows)
    return time.perf_counter() - started


def _writer_rates(table_path: Path, workdir: Path) -> dict[str, float]:
    """Rows/s of the driver's writer alone (`write_predictions`, windows of 65,536 rows): the ceiling of one job."""
    from arginator.serving.streaming import write_predictions

    table = pq.read_table(table_path)
    rates = {}
    for suffix in (".parquet", ".csv"):
        started = time.perf_counter()
        write_predictions(table.to_batches(max_chunksize=65536), workdir / f"written{suffix}", table.column_names)
        rates[suffix] = table.num_rows / (time.perf_counter() - started)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="trained")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=8192)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/arginator-ray"))
    parser.add_argument("--out", type=Path, help="default: reports/benchmarks/predict_ray[_<model>].md")
    args = parser.parse_args()
    suffix = "" if args.model == "trained" else f"_{args.model}"
    args.out = args.out or Path(f"reports/benchmarks/predict_ray{suffix}.md")
    work = args.workdir
    model, described = write_model(args.model, work)
    from arginator.serving.predictor import RUN_ROWS, Predictor

    dim = Predictor(model).input_dim
    source = write_embeddings(work / "embeddings.h5", args.rows, dim)
    small = write_embeddings(work / "small" / "embeddings.h5", SMALL_ROWS, dim)
    import ray

    # The instance the CLI starts preloads Ray Data and the actor module in its idle workers: the same here.
    os.environ["RAY_preload_python_modules"] = "ray.data,arginator.serving.ray_batch"  # noqa: SIM112 (Ray's name)
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_start = time.perf_counter() - started
    joined = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    common = [str(source), "--model", str(model), "--chunk-rows", str(args.chunk_rows)]
    ray2 = ["--engine", "ray", "--workers", "2", "--threads", "1"]
    # name -> (the baseline it is compared with, how to time it, its output)
    variants: dict[str, tuple[str, Callable[[], float], Path]] = {}

    def add(name: str, baseline: str, run: Callable[[Path], float], out: str) -> None:
        variants[name] = (baseline, lambda: run(work / out), work / out)

    cli, here = "CLI: one process, 2 ORT threads", "in one process: one process, 2 ORT threads"
    add(cli, cli, lambda out: _cli([*common, "--out", str(out), "--threads", "2"]), "cli-local.parquet")
    add(
        "CLI: Ray Data joining the running instance (RAY_ADDRESS), 2 actors x 1 CPU",
        cli,
        lambda out: _cli([*common, "--out", str(out), *ray2], joined),
        "cli-joined.parquet",
    )
    add(
        "CLI: Ray Data starting its own local instance, 2 actors x 1 CPU",
        cli,
        lambda out: _cli([*common, "--out", str(out), *ray2], {"RAY_ADDRESS": ""}),  # empty: unset for the CLI
        "cli-own.parquet",
    )
    add(here, here, lambda out: _local_in_process(source, model, out, args.chunk_rows), "local.parquet")
    add(
        "in one process: Ray Data on the running instance, 2 actors x 1 CPU",
        here,
        lambda out: _ray_in_process(source, model, out, 2, args.chunk_rows),
        "warm2.parquet",
    )
    add("in one process: Ray Data on the running instance, 1 actor x 1 CPU", here,
        lambda out: _ray_in_process(source, model, out, 1, args.chunk_rows), "warm1.parquet")  # fmt: skip
    settled: list[float] = []  # CPU use (%) seen just before each timed run
    fixed: list[float] = []  # a job so small that its time is Ray's fixed cost per job
    times: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name in list(variants) if repeat % 2 == 0 else reversed(variants):
            settled.append(_settle())
            times[name].append(variants[name][1]())
            print(f"{name}: {times[name][-1]:.1f} s", flush=True)
        settled.append(_settle())
        fixed.append(_ray_in_process(small, model, work / "small.parquet", 2, args.chunk_rows))
    ray.shutdown()
    reference = pq.read_table(work / "local.parquet")
    identical = all(pq.read_table(out).equals(reference) for _, _, out in variants.values())
    writer = _writer_rates(work / "local.parquet", work)
    medians = {name: statistics.median(values) for name, values in times.items()}
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        "# Batch prediction: Ray Data vs one process",
        "",
        f"{stamp}: `arginator predict` over {args.rows:,} x {dim} float32 rows (HDF5), chunks of {args.chunk_rows} "
        f"(ONNX Runtime calls of {RUN_ROWS} rows), {described}, 2 cores; median of {args.repeats} runs each, "
        f"alternating order, each started once the machine was idle (under {IDLE_PERCENT:.0f}% CPU, waiting 15 s at "
        f"most; the highest reading before a run: {max(settled):.0f}%). Each row is compared with the single process "
        "of its own kind: the CLI rows include starting Python (and, for Ray, "
        f"joining or starting an instance: {ray_start:.1f} s to start one alone); the 'in one process' rows time the "
        "call from an interpreter that has its imports done, on the Ray instance the benchmark started, as a "
        "driver on a cluster would.",
        "",
        "| engine | median s | rows/s | rows/s per worker | vs one process of its kind |",
        "|---|---|---|---|---|",
    ]
    for name, seconds in medians.items():
        workers = 2 if "2 actors" in name else 1
        per_worker = f"{args.rows / seconds / workers:,.0f}" if "Ray" in name else ""
        ratio = medians[variants[name][0]] / seconds
        lines.append(f"| {name} | {seconds:.1f} | {args.rows / seconds:,.0f} | {per_worker} | {ratio:.2f}x |")
    lines += [
        "",
        f"Outputs identical to the single process's: {'yes' if identical else 'NO'}.",
        "",
        f"Ray's fixed cost per job (starting the actors' worker processes, which import Ray Data and the model; "
        f"planning; collecting): {statistics.median(fixed):.1f} s (median) for a job of {SMALL_ROWS:,} rows on the "
        "running instance with 2 actors.",
        "",
        f"The driver writes every row of a job: its writer alone takes {writer['.parquet']:,.0f} rows/s to Parquet "
        f"and {writer['.csv']:,.0f} rows/s to CSV here, the ceiling of one job however many actors it has. Beyond "
        "it, run one job per shard of the input.",
    ]
    finish(lines, args.out, work)


if __name__ == "__main__":
    main()
