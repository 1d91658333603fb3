"""Metrics on held-out data for the FFNN and the baseline, the comparison between them, and `metrics.json`.

Both models are scored on the same rows with the same code. Sigmoid heads use the decision thresholds tuned on the
validation split at training time; the figures at the default 0.5 are reported beside them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arginator import atomic
from arginator.data.outliers import Outliers, load_outliers
from arginator.data.readers import HDF5_SUFFIXES, read_all
from arginator.data.splits import prepare_dataset
from arginator.data.tables import load_embeddings
from arginator.data.targets import encode_targets
from arginator.errors import DataError
from arginator.serving.decide import decide, positive_probability
from arginator.training import runs, visualize
from arginator.training.calibration import uncalibrated
from arginator.training.metrics import macro_f1, positive_rate_by_label, reliability_points, score
from arginator.training.novelty import auroc, probes, resized, risk_coverage, threshold_of

log = logging.getLogger(__name__)
MODELS = ("ffnn", "baseline")
HEADLINE = ("accuracy", "macro_f1", "mcc", "pr_auc", "ece")


def _external_rows(
    data_path: Path | str, labels_file: Path | str | None, info: dict[str, Any], config_data: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors and targets of external labelled data: its own labels (in the file, or `labels_file`), no groups."""
    path = Path(data_path)
    if labels_file is not None and (path.is_dir() or path.suffix.lower() not in HDF5_SUFFIXES):
        raise DataError(f"--labels applies to an HDF5 file of vectors; {path.name} carries its own labels")
    data_config = config_data.model_copy(
        update={
            "labels_file": str(labels_file) if labels_file is not None else None,
            "classes": None,
            "embedding_dim": None,
        }
    )
    table = load_embeddings(path, data_config, need_groups=False)
    if table.embedding_dim != info["input_dim"]:
        raise DataError(
            f"expected {info['input_dim']} values per row (the model's input), "
            f"got {table.embedding_dim} ({Path(data_path).name})"
        )
    targets = encode_targets(table, data_config, classes=info["classes"])
    return table.vectors[targets.keep], targets.y


def evaluate_run(
    run_dir: Path | str,
    data_path: Path | str | None = None,
    report_dir: Path | str | None = None,
    labels_file: Path | str | None = None,
    ood: list[Path | str] | None = None,
) -> dict[str, Any]:
    """Score both models of a run on its test split (or on every row of `data_path`); write metrics, figures, report.

    Args:
        run_dir: a directory written by `train_run`.
        data_path: optional external labelled data in any supported layout; its labels must be known to the model.
        report_dir: where metrics.json, figures/ and report.md go (default: the run directory for its test split,
            `<run>/eval-<data name>/` for external data, so the run's own report is never replaced).
        labels_file: labels (id, label) of `data_path` when it is an HDF5 file without labels of its own, such as
            the file `arginator embed` writes. Never the run's own labels file.
        ood: embedding files of inputs the model should call novel (e.g. background proteins for a drug-class
            model; another embedder's vectors, resized): the novelty score's AUROC against the evaluated rows. A
            file sharing ids with the run's data is skipped: it is not out of distribution for this model.

    Returns:
        The content written to `metrics.json`.
    """
    run_dir = Path(run_dir)
    info = runs.read_info(run_dir)
    config = runs.read_config(run_dir)
    module, thresholds = runs.load_model(run_dir / runs.MODEL)
    baseline, baseline_thresholds = runs.load_baseline(run_dir / runs.BASELINE)
    classes, task = info["classes"], info["task"]
    source_labels = None
    if data_path is None:
        data = prepare_dataset(info["data_path"], config.data, run_dir / runs.SPLIT, classes=classes, write=False)
        x, y = data.arrays("test")
        test_rows = data.split == "test"
        source_labels = [labels[0] for labels, held in zip(data.table.labels, test_rows, strict=True) if held]
        evaluated_on = {"data": _shown(info["data_path"]), "rows": "test split", "n": len(x)}
    else:
        x, y = _external_rows(data_path, labels_file, info, config.data)
        evaluated_on = {"data": _shown(data_path), "rows": "all", "n": len(x)}
        report_dir = report_dir if report_dir is not None else run_dir / f"eval-{Path(data_path).stem}"
    log.info("evaluating on %d rows of %s", len(x), evaluated_on["data"])
    results = {
        "ffnn": score(y, module.predict_proba(x), task, classes, thresholds),
        "baseline": score(y, baseline.predict_proba(x), task, classes, baseline_thresholds),
    }
    metrics: dict[str, Any] = {name: results[name].metrics for name in MODELS}
    metrics["evaluated_on"] = evaluated_on | {"task": task, "classes": classes}
    if task == "binary" and source_labels is not None:  # e.g. background vs virulence negatives, each with its FPR
        for name, model, cut in (("ffnn", module, thresholds), ("baseline", baseline, baseline_thresholds)):
            metrics[name]["by_label"] = positive_rate_by_label(source_labels, model.predict_proba(x), cut)
    if threshold_of(module.net) is not None:
        own = load_embeddings(info["data_path"], config.data, need_groups=False).ids if ood else np.zeros(0)
        # The outliers the run was trained with: only its held-out (test) groups count as novel inputs.
        outliers = data.outliers if data_path is None else load_outliers(config.data, info["input_dim"], own)
        trained = info.get("outliers", {}).get("test_fingerprint")
        if outliers is not None and trained is not None and outliers.test_fingerprint() != trained:
            raise DataError(
                f"the outliers ({outliers.path} and their groups) changed since training: their held-out split is "
                "not the one the run kept back; evaluate with the files it was trained with, or train again"
            )
        metrics["novelty"] = novelty_section(
            module, x, y, task, classes, thresholds, ood or [], set(own.tolist()), outliers
        )
    raw = uncalibrated(module).predict_proba(x)  # the same network without its calibration: ECE before and after
    metrics["ffnn"]["ece_uncalibrated"] = score(y, raw, task, classes, thresholds).metrics["ece"]
    out = Path(report_dir) if report_dir is not None else run_dir
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    visualize.confusion_matrices(
        {name: results[name].confusion for name in MODELS}, classes, task, figures / "confusion_matrix.png"
    )
    visualize.pr_curves({name: results[name].pr_curves for name in MODELS}, figures / "pr_curves.png")
    visualize.learning_curves(run_dir / "logs" / "metrics.csv", figures / "learning_curves.png")
    positive = positive_probability if task == "binary" else np.asarray
    visualize.reliability(
        {
            "ffnn, uncalibrated": reliability_points(y, positive(raw), task),
            "ffnn": reliability_points(y, positive(module.predict_proba(x)), task),
            "baseline": reliability_points(y, positive(baseline.predict_proba(x)), task),
        },
        figures / "reliability.png",
    )
    if data_path is None:  # the run's own rows, labelled by their original source (e.g. background vs virulence)
        visualize.embedding_map(
            data.table.vectors, [labels[0] for labels in data.table.labels], test_rows, figures / "embedding_map.png"
        )
    if "novelty" in metrics:
        visualize.risk_coverage(metrics["novelty"]["risk_coverage"], figures / "risk_coverage.png")
    write_pr_curve_data({name: results[name].pr_curves for name in MODELS}, out / "pr_curves.csv")
    write_report(metrics, out / "report.md")
    atomic.write_json(out / "metrics.json", metrics)  # last: its presence means the report is complete
    return metrics


def novelty_section(
    module: Any,
    x: np.ndarray,
    y: np.ndarray,
    task: str,
    classes: list[str],
    thresholds: list[float],
    ood: list[Path | str],
    own_ids: set[str],
    outliers: Outliers | None = None,
) -> dict[str, Any]:
    """The novelty score on the evaluated rows, on the `ood` files and on synthetic probes.

    Evaluated rows: flagged share, macro-F1 of the accepted rows, risk-coverage; `ood` files: AUROC and flagged share
    (of the file the run took its outliers from, only the test groups: the others trained the outlier head); probes:
    flagged share.
    """
    threshold = threshold_of(module.net)
    scores = module.predict_novelty(x)
    chosen = decide(module.predict_proba(x), task, thresholds).chosen

    def f1_of(mask: np.ndarray) -> float:
        return macro_f1(y[mask], chosen[mask], task, len(classes)) if mask.any() else float("nan")

    accepted = scores <= threshold
    section: dict[str, Any] = {
        "threshold": threshold,
        "flagged": float((~accepted).mean()) if len(x) else 0.0,
        "macro_f1_all": f1_of(np.ones(len(x), dtype=bool)),
        "macro_f1_accepted": f1_of(accepted),
        "risk_coverage": risk_coverage(scores, f1_of),
        "ood": {},
        "probes": {},
    }
    for path in ood:
        held_out = outliers is not None and outliers.is_source(path)
        chunk = read_all(path)
        if own_ids & set(chunk.ids):
            log.info("novelty: %s shares ids with the run's data; not used as out-of-distribution", path)
            continue
        vectors = resized(outliers.rows("test") if held_out else chunk.vectors, x.shape[1])
        other = module.predict_novelty(vectors)
        section["ood"][_shown(path)] = {
            "rows": len(vectors),
            **({"outlier_groups": "test split only (the others trained the outlier head)"} if held_out else {}),
            "resized_from": int(chunk.vectors.shape[1]) if chunk.vectors.shape[1] != x.shape[1] else None,
            "auroc": auroc(scores, other),
            "flagged": float((other > threshold).mean()),
        }
    for name, vectors in probes(x).items():
        section["probes"][name] = float((module.predict_novelty(vectors) > threshold).mean())
    return section


def _shown(path: Path | str) -> str:
    """A path as reports show it: relative to the working directory when inside it (no machine-specific prefix)."""
    absolute = Path(path).absolute()
    return str(absolute.relative_to(Path.cwd())) if absolute.is_relative_to(Path.cwd()) else str(path)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_pr_curve_data(
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], path: Path, max_points: int = 200
) -> None:
    """Precision-recall points as a long table (model, class, recall, precision), for `dvc plots`.

    Curves are thinned to at most `max_points` evenly spaced points each, which keeps the file small enough for git.
    """
    frames = []
    for model, per_class in curves.items():
        for cls, (recall, precision) in per_class.items():
            keep = np.unique(np.linspace(0, len(recall) - 1, min(max_points, len(recall))).round().astype(int))
            frames.append(
                pd.DataFrame({"model": model, "class": cls, "recall": recall[keep], "precision": precision[keep]})
            )
    table = pd.concat(frames) if frames else pd.DataFrame(columns=["model", "class", "recall", "precision"])
    atomic.write_text(path, table.round(5).to_csv(index=False))


def write_report(metrics: dict[str, Any], path: Path) -> None:
    """A short Markdown report: the comparison table, per-class figures and the figures' files."""
    meta = metrics["evaluated_on"]
    lines = [
        "# arginator run report",
        "",
        f"Task **{meta['task']}** on {meta['n']} rows ({meta['rows']}) of `{meta['data']}`; "
        f"classes: {', '.join(meta['classes'])}.",
        "",
        "| model | " + " | ".join(HEADLINE) + " |",
        "|---|" + "---|" * len(HEADLINE),
    ]
    for name in MODELS:
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics[name][key]) for key in HEADLINE) + " |")
    delta = metrics["ffnn"]["macro_f1"] - metrics["baseline"]["macro_f1"]
    lines += ["", f"FFNN minus baseline, macro-F1: {delta:+.3f}.", ""]
    if "ece_uncalibrated" in metrics["ffnn"]:
        lines += [
            f"Calibration (expected calibration error, 15 bins): FFNN {metrics['ffnn']['ece_uncalibrated']:.3f} "
            f"before, {metrics['ffnn']['ece']:.3f} after scaling its logits on validation; baseline "
            f"{metrics['baseline']['ece']:.3f}.",
            "",
        ]
    if "by_label" in metrics["ffnn"]:
        lines += [
            "Share called positive per original label (false-positive rate for a negative label, recall for a "
            "positive one), FFNN | baseline:",
            "",
            "| label | rows | FFNN | baseline |",
            "|---|---|---|---|",
        ]
        for label, row in metrics["ffnn"]["by_label"].items():
            base = metrics["baseline"]["by_label"][label]["positive_rate"]
            lines.append(f"| {label} | {row['n']} | {row['positive_rate']:.3f} | {base:.3f} |")
        lines.append("")
    if "novelty" in metrics:
        lines += novelty_lines(metrics["novelty"])
    unscored = metrics["ffnn"].get("unscored", [])
    if unscored:
        lines += [
            f"Not scored (no {'test' if meta['rows'] == 'test split' else 'evaluated'} rows): {', '.join(unscored)}. "
            "Macro averages run "
            f"over the {len(meta['classes']) - len(unscored)} classes that have rows.",
            "",
        ]
    for name in MODELS:
        if "at_threshold_0.5" in metrics[name]:
            fixed = metrics[name]["at_threshold_0.5"]
            lines.append(
                f"{name}: thresholds tuned on validation {metrics[name]['thresholds']}; "
                f"at 0.5 accuracy {fixed['accuracy']:.3f}, macro-F1 {fixed['macro_f1']:.3f}."
            )
    lines += [
        "",
        "## Per class (FFNN | baseline)",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for cls, ffnn in metrics["ffnn"]["per_class"].items():
        base = metrics["baseline"]["per_class"][cls]
        if cls in unscored:
            lines.append(f"| {cls} | not scored: no rows | | | 0 |")
            continue
        lines.append(
            f"| {cls} | {ffnn['precision']:.3f} \\| {base['precision']:.3f} "
            f"| {ffnn['recall']:.3f} \\| {base['recall']:.3f} "
            f"| {ffnn['f1']:.3f} \\| {base['f1']:.3f} | {ffnn['support']} |"
        )
    lines += [
        "",
        "## Figures",
        "",
        "![confusion matrices](figures/confusion_matrix.png)",
        "![precision-recall curves](figures/pr_curves.png)",
        "![learning curves](figures/learning_curves.png)",
        "![reliability diagram](figures/reliability.png)",
        *(["![risk-coverage curve](figures/risk_coverage.png)"] if "novelty" in metrics else []),
        "",
    ]
    atomic.write_text(path, "\n".join(lines))


def novelty_lines(section: dict[str, Any]) -> list[str]:
    """The report's novelty paragraph and tables."""
    lines = [
        '## Novelty ("I don\'t know")',
        "",
        f"Threshold {section['threshold']:.3f} (99th percentile of validation scores): {section['flagged']:.1%} of "
        f"these rows flagged novel; macro-F1 {_fmt(section['macro_f1_all'])} on all rows, "
        f"{_fmt(section['macro_f1_accepted'])} on the rows accepted.",
        "",
    ]
    if section["ood"]:
        lines += ["| out-of-distribution data | rows | AUROC | flagged |", "|---|---|---|---|"]
        for name, row in section["ood"].items():
            note = f" (resized from {row['resized_from']} dims)" if row["resized_from"] else ""
            lines.append(f"| `{name}`{note} | {row['rows']} | {row['auroc']:.3f} | {row['flagged']:.1%} |")
        lines.append("")
    lines += ["| probe | flagged |", "|---|---|"]
    lines += [f"| {name} | {share:.0%} |" for name, share in section["probes"].items()]
    return [*lines, ""]
