"""Rows per ONNX Runtime call: the `Predictor`'s rows/s when it splits a batch into calls of N rows.

For each model (each pipeline model in `deploy/`, loaded as `arginator predict --model deploy/<name>` loads it, and the
`trained` and `linear` 1024-dim models of `large_input`), at 1 and 2 intra-op threads: the best of `--passes` passes
over 65,536 random rows for each call size (the sizes take turns within each pass), and whether every call size gives
the outputs of 8,192-row calls, bit for bit. The table backs `RUN_ROWS` in `arginator.serving.predictor`; results go to
`reports/benchmarks/rows_per_call.md`.

Usage: python benchmarks/rows_per_call.py [--passes 3] [--workdir /tmp/arginator-rows-per-call]
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from large_input import ROOT, write_linear_model, write_trained_model

from arginator.serving.predictor import RUN_ROWS, Predictor, resolve_model_path

SIZES = (8192, 4096, 1024, 512, 256, 128)
ROWS = 65536


def _rates(predictors: dict[int, Predictor], x: np.ndarray, passes: int) -> dict[int, float]:
    """Rows/s of each call size, best of `passes`; the sizes take turns so that drift hits them alike."""
    for predictor in predictors.values():
        predictor.predict_details(x[: predictor.chunk_rows])  # warm-up: a session's first run allocates
    best = dict.fromkeys(predictors, float("inf"))
    for _ in range(passes):
        for size, predictor in predictors.items():
            started = time.perf_counter()
            predictor.predict_details(x)
            best[size] = min(best[size], time.perf_counter() - started)
    return {size: len(x) / seconds for size, seconds in best.items()}


def _models(workdir: Path) -> dict[str, Path]:
    deploys = sorted(path for path in (ROOT / "deploy").glob("*") if path.is_dir())
    if not deploys:
        raise SystemExit("no models in deploy/: run the pipeline first (script/pipeline)")
    models = {}
    for deploy in deploys:
        path = resolve_model_path(deploy)  # the file `arginator predict --model deploy/<name>` loads
        models[f"deploy/{deploy.name} (`{path.relative_to(deploy)}`)"] = path
    models["shipped architecture, 1024-dim input"] = write_trained_model(workdir)[0]
    models["linear, 1024-dim input"] = write_linear_model(workdir / "linear.onnx")
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/arginator-rows-per-call"))
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/rows_per_call.md"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    models = _models(args.workdir)
    header = " | ".join(f"{size:,} rows" for size in SIZES)
    lines = [
        "# Rows per ONNX Runtime call",
        "",
        f"{datetime.now(UTC).isoformat(timespec='seconds')}: the Predictor's `predict_details` (novelty included) on "
        f"{ROWS:,} random rows split into calls of N rows; rows/s, best of {args.passes} passes (the sizes take "
        f"turns); 2 cores. `RUN_ROWS` = {RUN_ROWS}. 'identical': every call size gives the outputs of 8,192-row "
        "calls, bit for bit.",
        "",
        f"| model | threads | {header} | best | identical |",
        "|---|---|" + "---|" * len(SIZES) + "---|---|",
    ]
    for name, path in models.items():
        for threads in (1, 2):
            predictors = {size: Predictor(path, threads=threads, chunk_rows=size) for size in SIZES}
            x = np.random.default_rng(1).standard_normal((ROWS, predictors[SIZES[0]].input_dim), dtype=np.float32)
            rates = _rates(predictors, x, args.passes)
            outputs = {}
            for size, predictor in predictors.items():
                details = predictor.predict_details(x)
                outputs[size] = (details.probabilities, details.novelty)
            identical = all(
                np.array_equal(a, b)
                for size in SIZES[1:]
                for a, b in zip(outputs[size], outputs[SIZES[0]], strict=True)
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
