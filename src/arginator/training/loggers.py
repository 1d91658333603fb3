"""The Trainer's loggers: a CSV file in the run directory, and W&B (offline unless a key is set) for tracking.

W&B gets the run's configuration and the per-epoch losses and validation macro-F1; the model itself is logged as an
artifact once it is exported (`shipping.artifacts`). Offline runs stay under `<run>/wandb/` for `wandb sync`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger

from arginator.config import RunConfig

log = logging.getLogger(__name__)


def resolve_wandb_mode(mode: str) -> str:
    """`auto` is the WANDB_MODE environment variable if set, else online with an API key, else offline."""
    if mode != "auto":
        return mode
    return os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


def run_loggers(config: RunConfig, run_dir: Path) -> list[Logger]:
    """CSV always (the learning curves are drawn from it); W&B unless disabled, offline without an API key."""
    loggers: list[Logger] = [CSVLogger(save_dir=run_dir, name="logs", version="")]
    mode = resolve_wandb_mode(config.train.wandb.mode)
    if mode == "disabled":
        return loggers
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover - only without the tracking extra
        log.warning("wandb is not installed; logging to CSV only (pip install 'arginator[tracking]')")
        return loggers
    os.environ.setdefault("WANDB_SILENT", "true")
    loggers.append(
        WandbLogger(
            project=config.train.wandb.project,
            name=run_dir.name,
            save_dir=str(run_dir),
            offline=mode == "offline",
            mode=mode,
            config=config.model_dump(mode="json"),
        )
    )
    return loggers


def tracking_run(loggers: list[Logger]) -> Any | None:
    """The W&B run among a Trainer's loggers (still open, so the model can be logged to it), or None."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            return logger.experiment
    return None
