"""HTTP service benchmark: `/predict` against reference paths in the same server stack, as ratios from one run.

One uvicorn worker (uvloop + httptools) serves the model with `benchmarks/api_app.py` (the service plus `/floor`
and `/naive`); `wrk` (Debian package) drives it over loopback from the same 2-core machine. Each round measures
every scenario once, interleaved, and the report quotes medians of the per-round ratios:
- single-row JSON `/predict` vs `/floor` (same body, constant answer): throughput at 8 connections, p50 at 1;
- 1024-row raw float32 bodies: rows/s end to end vs the Predictor's own in-process rows/s on the same batch;
- 256-row JSON: orjson `/predict` vs the pydantic `list[list[float]]` `/naive` route.

Usage: python benchmarks/api.py [--model deploy/arg-binary] [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import Server, free_port  # noqa: E402

from arginator.serving.predictor import Predictor  # noqa: E402


def wrk_script(directory: Path, name: str, body: bytes, content_type: str) -> Path:
    (directory / f"{name}.body").write_bytes(body)
    script = directory / f"{name}.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\n'
        f'local f = io.open("{directory / (name + ".body")}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
    )
    return script


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if match is None:  # wrk prints -nan when a run completed no request
        return float("nan")
    value, unit = match.groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """Requests/s, p50/p99 latency (ms) and error count of one wrk run."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(re.search(r"50%\s+(\S+)", out).group(1)),
        "p99_ms": _ms(re.search(r"99%\s+(\S+)", out).group(1)),
        "errors": errors + (int(non_2xx.group(1)) if non_2xx else 0),
    }


def in_process_rows_per_s(predictor: Predictor, batch: np.ndarray, runs: int = 50) -> float:
    predictor.predict_details(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor.predict_details(batch)
        times.append(time.perf_counter() - start)
    return len(batch) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("deploy/arg-binary"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads, server and in-process alike")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = parser.parse_args()
    predictor = Predictor(args.model, threads=args.threads)
    dim = predictor.input_dim
    rng = np.random.default_rng(0)
    one = rng.normal(size=(1, dim)).astype(np.float32)
    json_rows = rng.normal(size=(256, dim)).astype(np.float32)
    binary_rows = rng.normal(size=(1024, dim)).astype(np.float32)
    env = {"ARGINATOR_MODEL": str(args.model), "ARGINATOR_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "uvicorn", "benchmarks.api_app:app", "--no-access-log", "--log-level", "warning"]
    port = free_port()
    server = Server(env, command=[*command, "--host", "127.0.0.1", "--port", str(port)], port=port).wait()
    results: dict[str, list[dict[str, float]]] = {}
    in_process: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_dir = Path(tmp)
            single = json.dumps(one[0].tolist()).encode()
            scripts = {
                "floor 1-row JSON, 8 conn": ("/floor", wrk_script(tmp_dir, "floor", single, "application/json"), 8),
                "predict 1-row JSON, 8 conn": ("/predict", wrk_script(tmp_dir, "one", single, "application/json"), 8),
                "floor 1-row JSON, 1 conn": ("/floor", tmp_dir / "floor.lua", 1),
                "predict 1-row JSON, 1 conn": ("/predict", tmp_dir / "one.lua", 1),
                "naive 256-row JSON": (
                    "/naive",
                    wrk_script(
                        tmp_dir, "naive", json.dumps({"embeddings": json_rows.tolist()}).encode(), "application/json"
                    ),
                    2,
                ),
                "predict 256-row JSON": ("/predict", tmp_dir / "naive.lua", 2),
                "predict 1024-row binary": (
                    "/predict",
                    wrk_script(tmp_dir, "binary", binary_rows.astype("<f4").tobytes(), "application/octet-stream"),
                    2,
                ),
            }
            for _ in range(args.rounds):
                for name, (path, script, connections) in scripts.items():
                    results.setdefault(name, []).append(wrk(server.url + path, script, connections, args.seconds))
                in_process.append(in_process_rows_per_s(predictor, binary_rows))
    finally:
        server.stop()
    write_report(args, predictor, results, in_process)


def write_report(args, predictor: Predictor, results: dict, in_process: list[float]) -> None:
    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    def ratio(a: str, b: str, key: str = "rps") -> float:
        return statistics.median(x[key] / y[key] for x, y in zip(results[a], results[b], strict=True))

    binary_ratio = statistics.median(
        r["rps"] * 1024 / p for r, p in zip(results["predict 1024-row binary"], in_process, strict=True)
    )
    checks = {
        "single-row JSON throughput / HTTP floor (>= 0.6)": ratio(
            "predict 1-row JSON, 8 conn", "floor 1-row JSON, 8 conn"
        ),
        "single-row JSON p50, one client, ms (<= 1.5)": med("predict 1-row JSON, 1 conn", "p50_ms"),
        "1024-row binary rows/s / in-process Predictor rows/s (>= 0.5)": binary_ratio,
        "256-row JSON: orjson /predict / pydantic /naive (>= 3)": ratio("predict 256-row JSON", "naive 256-row JSON"),
    }
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        "# HTTP service: /predict against the HTTP floor, the in-process Predictor and the naive JSON path",
        "",
        f"Model `{args.model}` ({predictor.info.variant}, {predictor.input_dim} dims), {stamp}; one uvicorn worker, "
        f"ONNX Runtime {args.threads} thread(s); wrk (1 thread) on the same 2-core machine over loopback; "
        f"{args.rounds} interleaved rounds of {args.seconds} s per scenario; medians.",
        "",
        "| check | value |",
        "|---|---|",
        *(f"| {name} | {value:.2f} |" for name, value in checks.items()),
        "",
        "| scenario | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {med(name, 'rps'):,.0f} | {med(name, 'p50_ms'):.2f} | {med(name, 'p99_ms'):.2f} | "
            f"{sum(r['errors'] for r in results[name]):.0f} |"
            for name in results
        ),
        "",
        f"In-process Predictor on the 1024-row batch: {statistics.median(in_process):,.0f} rows/s; end to end over "
        f"HTTP: {med('predict 1024-row binary', 'rps') * 1024:,.0f} rows/s.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "api.md").write_text("\n".join(lines) + "\n")
    (args.out / "api.json").write_text(json.dumps({"date": stamp, "checks": checks, "scenarios": results}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
