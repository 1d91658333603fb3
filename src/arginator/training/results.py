"""The results table: every evaluated run's headline figures, collected from its `metrics.json` (nothing else).

Kept apart from evaluation so that the pipeline's `results` stage depends on the reports and this file only.
"""

from __future__ import annotations

import json
from pathlib import Path

from arginator import atomic

MODELS = ("ffnn", "baseline")


def results_table(reports_dir: Path | str) -> str:
    """Markdown table of every `<reports>/<dataset>-<split>/metrics.json`: FFNN vs baseline, grouped vs random split."""
    rows = []
    found = sorted((path.parent.name.rpartition("-")[::2], path) for path in Path(reports_dir).glob("*/metrics.json"))
    for (dataset, split), path in found:
        metrics = json.loads(path.read_text())
        for model in MODELS:
            m = metrics[model]
            unscored = ", ".join(m.get("unscored", [])) or "-"
            ece = f"{m['ece_uncalibrated']:.3f} → {m['ece']:.3f}" if "ece_uncalibrated" in m else f"{m['ece']:.3f}"
            figures = f"{m['n']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {m['mcc']:.3f} | {ece} | {unscored}"
            rows.append(f"| {dataset} | {split} | {model} | {figures} |")
    header = [
        "| dataset | split | model | test rows | accuracy | macro-F1 | MCC | ECE (FFNN: uncalibrated → calibrated) "
        "| not scored (no test rows) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(header + rows) + "\n"


def write_results(reports_dir: Path | str, out: Path | str) -> str:
    """Write the results page (`docs/results.md` in the pipeline) atomically; returns its table."""
    table = results_table(reports_dir)
    intro = (
        "# Results\n\nTest-split figures per dataset; `grouped` keeps homologs on one side. Macro-F1 averages the "
        "classes that have test rows; a class without any is listed as not scored instead of counting as an F1 "
        "of 0.\n\n"
    )
    atomic.write_text(out, intro + table)
    return table
