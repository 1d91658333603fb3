"""Batch prediction memory: stream a large HDF5 file through `arginator predict` and record peak RSS.

Writes an (N x 1024) float32 HDF5 file in slices (1M rows = 4 GB on disk), an ONNX classifier with arginator
metadata, runs the real CLI under `/usr/bin/time -v`, and reports rows/s and the peak resident memory to
`reports/benchmarks/predict_stream.md`.

Usage: python benchmarks/predict_stream.py [--rows 1000000] [--workdir /tmp/arginator-stream]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from large_input import DIM, finish, write_large_input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=8192)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/arginator-stream"))
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/predict_stream.md"))
    args = parser.parse_args()
    source, model = write_large_input(args.workdir, args.rows)
    predictions = args.workdir / "predictions.parquet"
    started = time.perf_counter()
    result = subprocess.run(
        [
            "/usr/bin/time",
            "-v",
            shutil.which("arginator") or "arginator",
            "predict",
            str(source),
            "--model",
            str(model),
            "--out",
            str(predictions),
            "--chunk-rows",
            str(args.chunk_rows),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    size_gb = source.stat().st_size / 1e9
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        "# Streaming batch prediction",
        "",
        f"{stamp}: `arginator predict` over {args.rows:,} x {DIM} float32 rows ({size_gb:.1f} GB HDF5), chunks of "
        f"{args.chunk_rows} rows, Parquet output.",
        "",
        f"- wall time {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s)",
        f"- peak RSS {peak_kb / 1024:.0f} MiB (target < 1 GiB)",
        f"- output {predictions.stat().st_size / 1e6:.0f} MB",
    ]
    finish(lines, args.out, args.workdir)


if __name__ == "__main__":
    main()
