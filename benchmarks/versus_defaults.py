"""A configuration against the defaults, on every bundled dataset, by grouped cross-validation paired fold by fold.

The defaults' per-fold scores come from the pipeline's `reports/cv/<dataset>/cv.json`; the other configuration (a
sweep's `reports/sweeps/<sweep>/best.yaml`, or `--set` overrides) is trained on the same grouped folds with the same
seeds (`arginator.training.crossval`), so each difference is paired.

Usage:
    python benchmarks/versus_defaults.py --sweep arg-binary            # -> reports/sweeps/arg-binary/before_after.md
    python benchmarks/versus_defaults.py --set model.contrastive=supcon --name supcon   # -> reports/compare/supcon.md
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
OOD = ("data/processed/background/embeddings.h5", "data/processed/bbc-news/embeddings.h5")


def _spread(values: list[float]) -> str:
    array = np.asarray(values, dtype=float)
    return f"{array.mean():.3f} ± {array.std(ddof=1):.3f}"


def _novelty(rows: list[dict], source: str) -> list[float]:
    return [row["ffnn"].get("novelty_auroc", {}).get(source, np.nan) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    chosen_from = parser.add_mutually_exclusive_group(required=True)
    chosen_from.add_argument("--sweep", help="compare this sweep's best.yaml (reports/sweeps/<sweep>/best.yaml)")
    chosen_from.add_argument("--set", action="append", dest="overrides", help="a key=value override (repeatable)")
    parser.add_argument("--name", help="the report's name with --set (reports/compare/<name>.md)")
    args = parser.parse_args()
    extra_files, overrides = [], args.overrides or []
    if args.sweep:
        best = Path("reports/sweeps") / args.sweep / "best.yaml"
        extra_files, label = [best], json.dumps(yaml.safe_load(best.read_text()))
        out = Path("reports/sweeps") / args.sweep / "before_after"
        title = f"Sweep `{args.sweep}`: chosen configuration vs defaults"
    else:
        label = " ".join(f"`{o}`" for o in overrides)
        out = Path("reports/compare") / (args.name or "overrides")
        title = f"{label} vs defaults"
    rows, novelty_rows, results = [], [], {}
    for dataset in DATASETS:
        defaults = json.loads(Path(f"reports/cv/{dataset}/cv.json").read_text())
        files = [Path("configs/model.yaml"), Path("configs/train.yaml"), Path(f"configs/data/{dataset}.yaml")]
        config = load_config([*files, *extra_files], overrides)
        with tempfile.TemporaryDirectory() as tmp:
            cv = cross_validate(
                f"data/processed/{dataset}/embeddings.h5",
                config,
                f"data/processed/{dataset}/split_grouped.csv",
                tmp,
                k=defaults["k"],
                ood=list(OOD),
                only=("grouped",),
            )
        before, after = defaults["grouped"]["folds"], cv["grouped"]["folds"]
        f1_before = np.array([row["ffnn"]["macro_f1"] for row in before])
        f1_after = np.array([row["ffnn"]["macro_f1"] for row in after])
        difference = f1_after - f1_before
        results[dataset] = {"defaults": before, "chosen": after}
        won = f"{int((difference > 0).sum())}/{len(difference)}"
        rows.append(
            f"| {dataset} | {_spread(f1_before)} | {_spread(f1_after)} | {difference.mean():+.3f} ± "
            f"{difference.std(ddof=1):.3f} | {won} |"
        )
        print(rows[-1], flush=True)
        mcc = [_spread([row["ffnn"]["mcc"] for row in folds]) for folds in (before, after)]
        ece = [_spread([row["ffnn"]["ece"] for row in folds]) for folds in (before, after)]
        novelty = [_spread(_novelty(folds, "background")) for folds in (before, after)]
        novelty = novelty if not np.isnan(_novelty(before, "background")).all() else ["n/a", "n/a"]
        novelty_rows.append(f"| {dataset} | {mcc[0]} | {mcc[1]} | {ece[0]} | {ece[1]} | {novelty[0]} | {novelty[1]} |")
    table = [
        f"# {title} (grouped CV, FFNN, paired by fold)",
        "",
        f"Compared: {label}",
        "",
        "Macro-F1 (every class weighs the same, so rare classes count as much as common ones):",
        "",
        "| dataset | defaults | compared | difference | folds won |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "MCC, ECE (after calibration) and novelty AUROC (background proteins vs test rows):",
        "",
        "| dataset | MCC defaults | MCC compared | ECE defaults | ECE compared | novelty defaults | novelty compared |",
        "|---|---|---|---|---|---|---|",
        *novelty_rows,
        "",
    ]
    atomic.write_text(out.with_suffix(".md"), "\n".join(table))
    atomic.write_json(out.with_suffix(".json"), {"compared": label, "folds": results})


if __name__ == "__main__":
    main()
