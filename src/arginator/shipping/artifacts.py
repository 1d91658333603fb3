"""The trained model as a W&B artifact of its run: checkpoint, ONNX, configuration and figures, with lineage.

`arginator train` logs one artifact (`model-<run name>`, type `model`) per run, into the same W&B run that logged
the configuration and the per-epoch metrics, so the run page links the metrics to the exact files. Offline runs
record the artifact in `<run>/wandb/offline-run-*/` and stage its files; `wandb sync` uploads both later.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any

from arginator.shipping.export import build_metadata, export_ffnn
from arginator.training import runs, visualize

log = logging.getLogger(__name__)
ARTIFACT_TYPE = "model"
RUN_FILES = (runs.MODEL, runs.BASELINE, runs.CONFIG, runs.INFO, runs.SPLIT)


def artifact_name(run_dir: Path) -> str:
    """`model-<run directory name>`, with characters W&B refuses in artifact names replaced."""
    return "model-" + re.sub(r"[^A-Za-z0-9_.-]", "-", Path(run_dir).resolve().name)


def _summary_metrics(report_dir: Path | None) -> dict[str, float]:
    """The FFNN's test scores from an evaluation's metrics.json, flat (nothing when the run was not evaluated)."""
    path = report_dir / "metrics.json" if report_dir is not None else None
    if path is None or not path.exists():
        return {}
    scores = json.loads(path.read_text()).get("ffnn", {})
    return {f"test/{key}": value for key, value in scores.items() if isinstance(value, int | float)}


def log_model_artifact(
    tracking_run: Any, run_dir: Path | str, report_dir: Path | str | None = None, embedder: str = "unknown"
) -> str:
    """Log the run's model files, its ONNX export and its figures as one artifact, then finish the W&B run.

    Args:
        tracking_run: the W&B run the Trainer logged to (`TrainResult.tracking_run`).
        run_dir: the trained run.
        report_dir: where `arginator evaluate` wrote metrics.json and figures/ (None: the learning curves only).
        embedder: recorded in the ONNX metadata, as `arginator export` does.

    Returns:
        The artifact's name.
    """
    import wandb

    run_dir = Path(run_dir)
    report = Path(report_dir) if report_dir is not None else None
    info = runs.read_info(run_dir) | {"embedder": embedder}
    module, thresholds = runs.load_model(run_dir / runs.MODEL)
    metrics = _summary_metrics(report)
    name = artifact_name(run_dir)
    artifact = wandb.Artifact(
        name,
        type=ARTIFACT_TYPE,
        description=f"FFNN ({info['task']}, {len(info['classes'])} classes) and baseline of {run_dir.name}",
        metadata={
            "task": info["task"],
            "classes": info["classes"],
            "input_dim": info["input_dim"],
            "data_fingerprint": info["data_fingerprint"],
            **metrics,
        },
    )
    with tempfile.TemporaryDirectory(prefix="arginator-artifact-") as tmp:
        staging = Path(tmp)
        for file in RUN_FILES:
            if (run_dir / file).exists():
                artifact.add_file(str(run_dir / file), name=file)
        onnx_path = export_ffnn(module, build_metadata(module, thresholds, info), staging / "model.onnx")
        artifact.add_file(str(onnx_path), name="model.onnx")
        figures = sorted(report.glob("figures/*.png")) if report is not None else []
        if not figures and (run_dir / "logs" / "metrics.csv").exists():
            curves = staging / "learning_curves.png"
            visualize.learning_curves(run_dir / "logs" / "metrics.csv", curves)
            figures = [curves]
        for figure in figures:
            artifact.add_file(str(figure), name=f"figures/{figure.name}")
        # Files are copied into W&B's staging area here, so the temporary directory may go afterwards.
        tracking_run.log_artifact(artifact, aliases=["latest"])
        if figures:
            tracking_run.log({f"figures/{f.stem}": wandb.Image(str(f)) for f in figures})
    if metrics:
        tracking_run.summary.update(metrics)
    tracking_run.finish()
    log.info("logged W&B artifact %s (%d figures)", name, len(figures))
    return name
