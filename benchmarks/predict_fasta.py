"""Sequences in, answers out: `arginator predict proteins.fasta` against embed-then-predict, on the same proteins.

Takes a seeded sample of N proteins from a bundled FASTA (default: 10,000 from data/raw/arg-binary), then times the
real CLI with no vector cache (everything embedded for real):
- `arginator predict sample.fasta --model M --out direct.parquet` (embeds in chunks with the model's embedder);
- `arginator embed --input sample.fasta --out vectors.h5`, then `arginator predict vectors.h5 --model M`.
It reports sequences/s end to end, the peak RSS of each command, where the time goes (reading and checking the
FASTA, UniRep, the ONNX model, process start-up), and whether the two outputs are identical row for row.
Results go to `reports/benchmarks/predict_fasta.md` (and `.json`, read by `scale_estimate.py`).

Usage: python benchmarks/predict_fasta.py [--proteins 10000] [--model deploy/arg-binary]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from arginator.inputs import iter_fasta


def _timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command, its own (GNU time's maximum resident set size)."""
    with tempfile.NamedTemporaryFile(suffix=".rss") as rss:
        started = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-o", rss.name, "-f", "%M", *command], capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        return seconds, int(Path(rss.name).read_text().split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proteins", type=int, default=10_000)
    parser.add_argument("--source", type=Path, default=Path("data/raw/arg-binary/sequences.fasta"))
    parser.add_argument("--model", default="deploy/arg-binary")
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/predict_fasta.md"))
    args = parser.parse_args()
    records = list(iter_fasta(args.source))
    chosen = sorted(np.random.default_rng(0).choice(len(records), size=min(args.proteins, len(records)), replace=False))
    sample = [records[i] for i in chosen]
    residues = sum(len(s) for _, s in sample)
    workdir = Path(tempfile.mkdtemp(prefix="arginator-fasta-"))
    fasta = workdir / "sample.fasta"
    fasta.write_text("".join(f">{i}\n{s}\n" for i, s in sample))
    started = time.perf_counter()
    checked = sum(1 for _ in iter_fasta(fasta))
    read_seconds = time.perf_counter() - started
    cli = shutil.which("arginator") or "arginator"

    direct_s, direct_rss = _timed(
        [cli, "predict", str(fasta), "--model", args.model, "--out", str(workdir / "direct.parquet"), "--cache", ""]
    )
    embed_s, embed_rss = _timed([cli, "embed", "--input", str(fasta), "--out", str(workdir / "v.h5"), "--cache", ""])
    predict_s, _ = _timed(
        [cli, "predict", str(workdir / "v.h5"), "--model", args.model, "--out", str(workdir / "two_step.parquet")]
    )
    startup_s, _ = _timed([cli, "predict", "--help"])
    direct = pd.read_parquet(workdir / "direct.parquet")
    two_step = pd.read_parquet(workdir / "two_step.parquet").set_index("id").loc[direct["id"]].reset_index()
    identical = direct.equals(two_step)
    labels = direct["label"].value_counts().to_dict()
    shutil.rmtree(workdir)

    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines = [
        "# Sequences in, answers out: `arginator predict` on a FASTA",
        "",
        f"{stamp}: {len(sample):,} proteins sampled (seed 0) from `{args.source}` ({residues:,} residues, median "
        f"{int(np.median([len(s) for _, s in sample]))} aa), model `{args.model}` (UniRep 256), 2 cores, no vector "
        "cache (every protein embedded). One run each (each takes minutes; UniRep's own spread is in "
        "`embed_unirep.md`).",
        "",
        "| command | wall s | sequences/s | peak RSS MiB |",
        "|---|---|---|---|",
        f"| `arginator predict sample.fasta` (embeds, then predicts, in chunks of 1024) | {direct_s:.1f} | "
        f"{len(sample) / direct_s:,.1f} | {direct_rss:,.0f} |",
        f"| `arginator embed --input sample.fasta` | {embed_s:.1f} | {len(sample) / embed_s:,.1f} | {embed_rss:,.0f} |",
        f"| then `arginator predict vectors.h5` | {predict_s:.1f} | {len(sample) / predict_s:,.0f} | |",
        f"| embed + predict, two steps | {embed_s + predict_s:.1f} | {len(sample) / (embed_s + predict_s):,.1f} | |",
        "",
        "Where the time of the one-step command goes (from the two-step commands, each timed alone):",
        f"- reading and checking the FASTA: {read_seconds:.2f} s for {checked:,} records;",
        f"- process start-up (Python and the CLI's imports, `arginator predict --help`): {startup_s:.1f} s;",
        f"- UniRep embedding (the embed command less its start-up): {embed_s - startup_s:.1f} s, "
        f"{100 * (embed_s - startup_s) / (embed_s + predict_s):.0f}% of the two steps' time;",
        f"- ONNX prediction of the vectors (the predict command less its start-up): {predict_s - startup_s:.1f} s.",
        "",
        f"Outputs identical row for row (by id): {'yes' if identical else 'NO'}. Labels: {labels}.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    figures = {
        "date": stamp,
        "proteins": len(sample),
        "residues": residues,
        "model": args.model,
        "one_step_s": direct_s,
        "one_step_sequences_per_s": len(sample) / direct_s,
        "one_step_peak_rss_mib": direct_rss,
        "embed_s": embed_s,
        "embed_peak_rss_mib": embed_rss,
        "predict_vectors_s": predict_s,
        "startup_s": startup_s,
        "read_check_s": read_seconds,
        "identical": bool(identical),
    }
    args.out.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
