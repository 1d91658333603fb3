"""A sweep's chosen configuration against the defaults, on every bundled dataset, by grouped cross-validation.

The defaults' per-fold scores come from the pipeline's `reports/cv/<dataset>/cv.json`; the chosen configuration
(`reports/sweeps/<sweep>/best.yaml`) is trained on the same grouped folds with the same seeds
(`arginator.training.crossval`), so the difference is paired fold by fold.

Usage: python benchmarks/sweep_before_after.py [--sweep arg-binary] [--out reports/sweeps]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import yaml

from arginator import atomic
from arginator.config import load_config
from arginator.training.crossval import cross_validate

DATASETS = ("arg-binary", "arg-drugclass", "arg-drugclass-multilabel", "betalactamase-ambler", "bbc-news")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="arg-binary", help="the sweep whose best.yaml is compared")
    parser.add_argument("--out", type=Path, default=Path("reports/sweeps"))
    args = parser.parse_args()
    best = Path("reports/sweeps") / args.sweep / "best.yaml"
    chosen = yaml.safe_load(best.read_text())
    rows, results = [], {}
    for dataset in DATASETS:
        defaults = json.loads(Path(f"reports/cv/{dataset}/cv.json").read_text())
        files = [Path("configs/model.yaml"), Path("configs/train.yaml"), Path(f"configs/data/{dataset}.yaml"), best]
        config = load_config(files)
        config.train.novelty_quantile = 0.0  # does not change macro-F1
        with tempfile.TemporaryDirectory() as tmp:
            cv = cross_validate(
                f"data/processed/{dataset}/embeddings.h5",
                config,
                f"data/processed/{dataset}/split_grouped.csv",
                tmp,
                k=defaults["k"],
                only=("grouped",),
            )
        before = np.array([row["ffnn"]["macro_f1"] for row in defaults["grouped"]["folds"]])
        after = np.array([row["ffnn"]["macro_f1"] for row in cv["grouped"]["folds"]])
        difference = after - before
        results[dataset] = {"defaults": before.tolist(), "chosen": after.tolist()}
        spreads = [f"{a.mean():+.3f} ± {a.std(ddof=1):.3f}" for a in (before, after, difference)]
        won = f"{int((difference > 0).sum())}/{len(difference)}"
        rows.append(f"| {dataset} | {spreads[0][1:]} | {spreads[1][1:]} | {spreads[2]} | {won} |")
        print(rows[-1], flush=True)
    table = "\n".join(
        [
            f"# Sweep `{args.sweep}`: chosen configuration vs defaults (grouped CV, FFNN macro-F1, paired by fold)",
            "",
            f"Chosen: `{json.dumps(chosen)}`",
            "",
            "| dataset | defaults | chosen | difference | folds won |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    atomic.write_text(args.out / args.sweep / "before_after.md", table)
    atomic.write_json(args.out / args.sweep / "before_after.json", {"chosen": chosen, "folds": results})


if __name__ == "__main__":
    main()
