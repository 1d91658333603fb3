"""Rows per ONNX Runtime call: the `Predictor`'s rows/s when it splits a batch into calls of N rows.

For each model (the pipeline's exported models in `deploy/`, a model of the shipped architecture on 1024-dim input and a
linear one, both from `large_input`), at 1 and 2 intra-op threads: the best of `--passes` passes over 65,536 random
rows, for each call size, and whether every call size gives the same outputs, bit for bit, as 8,192-row calls. The
table backs `RUN_ROWS` in `arginator.serving.predictor`; results go to `reports/benchmarks/rows_per_call.md`.

Usage: python benchmarks/rows_per_call.py [--passes 3] [--workdir /tmp/arginator-rows-per-call]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from large_input import DIM, ROOT, write_trained_model
from tests.conftest import write_linear_onnx

from arginator.serving.predictor import RUN_ROWS, Predictor

SIZES = (8192, 4096, 1024, 512, 256, 128)
ROWS = 65536


def _rate(predictor: Predictor, x: np.ndarray, passes: int) -> float:
    predictor.predict_details(x[: predictor.chunk_rows])  # warm-up: the session's first run allocates
    best = float("inf")
    for _ in range(passes):
        started = time.perf_counter()
        predictor.predict_details(x)
        best = min(best, time.perf_counter() - started)
    return len(x) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/arginator-rows-per-call"))
    parser.add_argument("--out", type=Path, default=ROOT / "reports/benchmarks/rows_per_call.md")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    noise = io.StringIO()  # the exporter prints the traced graph; errors still raise
    with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
        trained = write_trained_model(args.workdir)
    linear_weights = np.random.default_rng(0).normal(size=(DIM, 5)).astype(np.float32) / 32
    linear = write_linear_onnx(args.workdir / "linear.onnx", linear_weights, "multiclass", list("abcde"))
    models = {
        **{f"deploy/{p.parent.name}": p for p in sorted((ROOT / "deploy").glob("*/model.onnx"))},
        "shipped architecture, 1024-dim input": trained,
        "linear, 1024-dim input": linear,
    }
    header = " | ".join(f"{size:,} rows" for size in SIZES)
    lines = [
        "# Rows per ONNX Runtime call",
        "",
        f"{datetime.now(UTC).isoformat(timespec='seconds')}: the Predictor's `predict_details` (novelty included) on "
        f"{ROWS:,} random rows split into calls of N rows; rows/s, best of {args.passes} passes; 2 cores. "
        f"`RUN_ROWS` = {RUN_ROWS}. 'identical': every call size gives the outputs of 8,192-row calls, bit for bit.",
        "",
        f"| model | threads | {header} | best | identical |",
        "|---|---|" + "---|" * len(SIZES) + "---|---|",
    ]
    for name, path in models.items():
        for threads in (1, 2):
            rates, outputs = {}, {}
            for size in SIZES:
                predictor = Predictor(path, threads=threads, chunk_rows=size)
                x = np.random.default_rng(1).standard_normal((ROWS, predictor.input_dim), dtype=np.float32)
                rates[size] = _rate(predictor, x, args.passes)
                details = predictor.predict_details(x)
                outputs[size] = (details.probabilities, details.novelty)
            identical = all(
                all(np.array_equal(a, b) for a, b in zip(outputs[size], outputs[SIZES[0]], strict=True))
                for size in SIZES
            )
            best = max(rates, key=rates.get)
            cells = " | ".join(f"{rates[size]:,.0f}" for size in SIZES)
            lines.append(f"| {name} | {threads} | {cells} | {best:,} | {'yes' if identical else 'NO'} |")
            print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(args.workdir)


if __name__ == "__main__":
    main()
