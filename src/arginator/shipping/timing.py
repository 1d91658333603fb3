"""Timing predictors fairly on a noisy machine: interleaved rounds, medians, batch-1 latency, batch-1024 throughput."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from arginator.serving.metadata import INPUT_NAME
from arginator.serving.session import create_session


def _timed(predict, x: np.ndarray, repeats: int) -> list[float]:
    predict(x)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - start)
    return times


def session_predictor(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """Probabilities of an ONNX file on the CPU at `threads` intra-op threads, as a plain function."""
    session = create_session(path, threads, cpu_only=True)
    return lambda x: session.run(None, {INPUT_NAME: x})[0]


def measure(
    predictors: dict[str, Callable[[np.ndarray], np.ndarray]], x_test: np.ndarray, rounds: int = 7
) -> dict[str, dict[str, float]]:
    """Batch-1 latency (median, p99, µs) and batch-1024 throughput (median rows/s) of each predictor.

    The predictors are measured in interleaved rounds (each round times every one of them), so the machine's drift
    affects all alike and the ratios between variants hold even when absolute speed wanders.
    """
    one = x_test[:1]
    batch = np.ascontiguousarray(np.resize(x_test, (1024, x_test.shape[1])), dtype=np.float32)
    latency: dict[str, list[float]] = {name: [] for name in predictors}
    throughput: dict[str, list[float]] = {name: [] for name in predictors}
    for _ in range(rounds):
        for name, predict in predictors.items():
            latency[name] += _timed(predict, one, 30)
            throughput[name].append(statistics.median(_timed(predict, batch, 5)))
    return {
        name: {
            "batch1_us_median": statistics.median(latency[name]) * 1e6,
            "batch1_us_p99": float(np.percentile(latency[name], 99)) * 1e6,
            "batch1024_rows_per_s": 1024 / statistics.median(throughput[name]),
        }
        for name in predictors
    }
