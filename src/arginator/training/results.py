"""The results page, collected from the pipeline's outputs only (`cv.json`, `metrics.json`, `figures/`).

Cross-validated figures with their spread, the single held-out split, negatives, novelty and the evaluation figures.

Kept apart from evaluation so that the pipeline's `results` stage depends on the reports and this file only.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from arginator import atomic

MODELS = ("ffnn", "baseline")
FIGURES = ("confusion_matrix", "pr_curves", "reliability", "risk_coverage", "embedding_map")


def _pm(spread: dict[str, float] | None) -> str:
    if not spread or spread.get("n", 0) == 0 or math.isnan(spread["mean"]):
        return "n/a"
    return f"{spread['mean']:.3f} ± {spread['sd']:.3f}"


def _cv_files(cv_dir: Path | str | None) -> list[tuple[str, dict[str, Any]]]:
    if cv_dir is None:
        return []
    return [(path.parent.name, json.loads(path.read_text())) for path in sorted(Path(cv_dir).glob("*/cv.json"))]


def cv_table(cv_dir: Path | str | None) -> str:
    """Mean ± sd over folds per dataset, kind of folds and model, with the paired difference FFNN - baseline."""
    rows = []
    for dataset, cv in _cv_files(cv_dir):
        for kind in ("grouped", "random"):
            if kind not in cv:
                continue
            summary, k = cv[kind]["summary"], cv["k"]
            difference = summary["difference_macro_f1"]
            untestable = ", ".join(cv[kind]["not_testable"]) or "-"
            for model in MODELS:
                s = summary[model]
                not_worse = summary["ece_not_worse_folds"]
                ece = (
                    f"{s['ece_uncalibrated']['mean']:.3f} → {s['ece']['mean']:.3f} ({not_worse}/{k})"
                    if model == "ffnn"
                    else f"{s['ece']['mean']:.3f}"
                )
                paired = f"{_pm(difference)} ({difference['ffnn_won']}/{k} won)" if model == "ffnn" else "-"
                rows.append(
                    f"| {dataset} | {kind} | {model} | {_pm(s['macro_f1'])} | {_pm(s['mcc'])} | {_pm(s['accuracy'])} "
                    f"| {_pm(s['pr_auc'])} | {ece} | {paired} | {untestable} |"
                )
    header = [
        "| dataset | folds | model | macro-F1 | MCC | accuracy | PR-AUC | ECE before → after (folds not worse) "
        "| FFNN - baseline, macro-F1 | not testable under grouping |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(header + rows) + "\n" if rows else ""


def negatives_table(cv_dir: Path | str | None) -> str:
    """Binary tasks: share called positive per original label (FPR of each kind of negative, recall), mean ± sd."""
    rows = []
    for dataset, cv in _cv_files(cv_dir):
        for kind in ("grouped", "random"):
            for model in MODELS:
                by_label = cv.get(kind, {}).get("summary", {}).get(model, {}).get("positive_rate_by_label", {})
                for label, spread in by_label.items():
                    rows.append(f"| {dataset} | {kind} | {model} | {label} | {_pm(spread)} |")
    if not rows:
        return ""
    header = ["| dataset | folds | model | label | share called positive |", "|---|---|---|---|---|"]
    return "\n".join(header + rows) + "\n"


def operating_point_table(cv_dir: Path | str | None) -> str:
    """Binary tasks: each label's share called positive at the threshold giving the target recall on validation."""
    rows = []
    for dataset, cv in _cv_files(cv_dir):
        for kind in ("grouped", "random"):
            for model in MODELS:
                point = cv.get(kind, {}).get("summary", {}).get(model, {}).get("at_recall_target")
                if not point:
                    continue
                for label, spread in point["positive_rate_by_label"].items():
                    rows.append(
                        f"| {dataset} | {kind} | {model} | {point['recall_target']:.2f} | {label} | {_pm(spread)} |"
                    )
    if not rows:
        return ""
    header = [
        "| dataset | folds | model | validation recall target | label | share called positive (test) |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(header + rows) + "\n"


def novelty_table(cv_dir: Path | str | None) -> str:
    """Novelty AUROC (out-of-distribution file vs the test fold), mean ± sd."""
    rows = []
    for dataset, cv in _cv_files(cv_dir):
        for kind in ("grouped", "random"):
            for source, spread in cv.get(kind, {}).get("summary", {}).get("ffnn", {}).get("novelty_auroc", {}).items():
                rows.append(f"| {dataset} | {kind} | {source} | {_pm(spread)} |")
    if not rows:
        return ""
    return "\n".join(["| model of | folds | novel inputs | AUROC |", "|---|---|---|---|", *rows]) + "\n"


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


def _figures(reports_dir: Path, out: Path) -> str:
    """Copy each grouped run's figures next to the page (docs/results-figures/<run>/) and link them."""
    target = out.parent / "results-figures"
    shutil.rmtree(target, ignore_errors=True)
    lines = []
    for run in sorted(p for p in reports_dir.glob("*-grouped") if (p / "figures").is_dir()):
        present = [name for name in FIGURES if (run / "figures" / f"{name}.png").exists()]
        if not present:
            continue
        (target / run.name).mkdir(parents=True, exist_ok=True)
        lines += [f"### {run.name.removesuffix('-grouped')}", ""]
        for name in present:
            shutil.copyfile(run / "figures" / f"{name}.png", target / run.name / f"{name}.png")
            lines.append(f"![{name.replace('_', ' ')}](results-figures/{run.name}/{name}.png)")
        lines.append("")
    return "\n".join(lines)


def write_results(reports_dir: Path | str, out: Path | str, cv_dir: Path | str | None = None) -> str:
    """Write the results page (`docs/results.md` in the pipeline) atomically; returns its first table."""
    out = Path(out)
    single = results_table(reports_dir)
    cross = cv_table(cv_dir)
    first = cross or single
    parts = [
        "# Results\n",
        (
            "Mean ± sd over cross-validation folds (`grouped`: folds of whole 40%-identity clusters, so every test "
            "protein's family is unseen; `random`: stratified folds); every fold trains both models as "
            "`arginator train` does, with its own validation rows and seed. Bitwise reproducibility holds on one CPU "
            "type only: across machines the embeddings differ in the last bits and grouped-split figures have moved "
            "by up to 0.05 macro-F1, within the spread shown here.\n"
            if cross
            else "Test-split figures per dataset; `grouped` keeps homologs on one side.\n"
        ),
        first,
    ]
    if cross:
        parts += ["\n## Single held-out split (the shipped models)\n", single]
    negatives, novelty = negatives_table(cv_dir), novelty_table(cv_dir)
    if negatives:
        parts += [
            "\n## Negatives: false-positive rate per kind\n",
            "Share of each original label called positive (for a negative label, its false-positive rate).\n",
            negatives,
        ]
    operating_point = operating_point_table(cv_dir)
    if operating_point:
        parts += [
            "\n## Screening operating point: threshold set for a recall target on validation\n",
            "Per fold, the threshold is the highest one that keeps the target share of the validation positives; the "
            "shares below are read on the fold's test rows (for the positive label, its recall; for a negative "
            "label, its false-positive rate).\n",
            operating_point,
        ]
    if novelty:
        parts += ["\n## Novelty: telling unseen kinds of input apart\n", novelty]
    figures = _figures(Path(reports_dir), out)
    if figures:
        parts += ["\n## Figures (grouped split, test rows)\n", figures]
    atomic.write_text(out, "\n".join(parts))
    return first
