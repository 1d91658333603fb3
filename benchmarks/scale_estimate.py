"""Time and cost of screening 10^8 proteins, from the measured rates in reports/benchmarks/ and one published GPU rate.

Reads `embed_unirep.json` (UniRep proteins/s on this machine), `predict_fasta.json` (`arginator predict` on a FASTA,
end to end) and the pipeline's `deploy/arg-binary/compressed/compression.json` (the shipped model's rows/s, novelty
score included), and writes `reports/benchmarks/scale_estimate.md`, which the docs' scale page includes. The prices are
parameters to scale from, not quotes.

Usage: python benchmarks/scale_estimate.py [--proteins 1e8] [--core-hour 0.04] [--gpu-hour 1.5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPORTS = Path("reports/benchmarks")
COMPRESSION = Path("deploy/arg-binary/compressed/compression.json")  # written by the pipeline's compress stage
# ProtT5-XL encoder on one NVIDIA RTX A6000, 1,000 length-stratified proteins: a public third-party measurement
# (reports/benchmark_comparison.md of github.com/anshulk-cmu/CAFA-6-Protein-Function-Prediction, 2024).
PROTT5_GPU_PER_S = 37.8
PROTT5_SOURCE = "CAFA-6-Protein-Function-Prediction `reports/benchmark_comparison.md` (RTX A6000, 1,000 proteins)"


def _load(name: str) -> dict:
    return json.loads((REPORTS / name).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proteins", type=float, default=1e8)
    parser.add_argument("--core-hour", type=float, default=0.04, help="price of one CPU core for an hour")
    parser.add_argument("--gpu-hour", type=float, default=1.5, help="price of one GPU for an hour")
    parser.add_argument("--out", type=Path, default=REPORTS / "scale_estimate.md")
    args = parser.parse_args()
    unirep = _load("embed_unirep.json")
    fasta = _load("predict_fasta.json")
    compression = json.loads(COMPRESSION.read_text())
    shipped_name = compression["shipped"]
    shipped = compression["variants"][shipped_name]["batch1024_rows_per_s"] / compression["threads"]  # per core
    cores = 2
    # What the pipeline and `arginator predict` run: one UniRep call per core, side by side.
    unirep_per_core = unirep["per_s_median"]["side"]["warm"] / cores
    fasta_per_core = fasta["one_step_sequences_per_s"] / cores
    n = args.proteins
    core_hours = n / fasta_per_core / 3600
    gpu_hours = n / PROTT5_GPU_PER_S / 3600
    predict_core_hours = n / shipped / 3600
    rows = [
        ("UniRep 256 embedding alone (`embed_unirep.json`, median length "
         f"{unirep['median_length']:.0f} aa)", f"{unirep_per_core:.1f} proteins/s per core",
         f"{n / unirep_per_core / 3600:,.0f} core-hours", f"${n / unirep_per_core / 3600 * args.core_hour:,.0f}"),
        ("`arginator predict proteins.fasta`, end to end, UniRep + the shipped model (`predict_fasta.json`)",
         f"{fasta_per_core:.1f} proteins/s per core",
         f"{core_hours:,.0f} core-hours; {core_hours / 100:,.1f} h on 100 cores",
         f"${core_hours * args.core_hour:,.0f}"),
        (f"ProtT5-XL encoder on a GPU ({PROTT5_SOURCE})", f"{PROTT5_GPU_PER_S} proteins/s per GPU",
         f"{gpu_hours:,.0f} GPU-hours; {gpu_hours / 16:,.0f} h on 16 GPUs", f"${gpu_hours * args.gpu_hour:,.0f}"),
        (f"the shipped model ({shipped_name}) on vectors, novelty score included (`{COMPRESSION}`, "
         f"{compression['threads']} thread(s), one call of 1,024 rows at a time)",
         f"{shipped:,.0f} rows/s per core",
         f"{predict_core_hours:,.2f} core-hours", f"${predict_core_hours * args.core_hour:,.2f}"),
    ]  # fmt: skip
    lines = [
        f"Estimate for {n:,.0f} proteins (linear in the count), from the rates measured on this machine's 2 cores "
        f"and the one GPU rate named; prices ${args.core_hour} per core-hour and ${args.gpu_hour} per GPU-hour "
        "(placeholders to scale from).",
        "",
        "| step | rate | work | cost |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        f"Vectors to store: {n * 1024 * 4 / 1e9:,.0f} GB of ProtT5 (1,024 float32), {n * 256 * 4 / 1e9:,.0f} GB of "
        "UniRep 256; `arginator predict` on FASTA shards stores none.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
