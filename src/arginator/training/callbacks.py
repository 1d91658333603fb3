"""The Trainer's callbacks of a run: best and last checkpoints, early stopping, resumable randomness, progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar

from arginator.config import RunConfig
from arginator.training import runs


def progress_bar(steps_per_epoch: int) -> TQDMProgressBar:
    """A progress bar that redraws about 20 times per epoch: per-step redraws cost ~7% of a fast epoch."""
    return TQDMProgressBar(refresh_rate=max(1, steps_per_epoch // 20))


class ResumableRandomness(L.Callback):
    """Keeps the random streams in every checkpoint, so a resumed run continues exactly as an uninterrupted one.

    Two streams drive an epoch: torch's global generator (dropout) and the training batches' own generator (their
    order). Their states at the moment a checkpoint is written are stored in it; on resume they are put back before
    the first epoch, so the following epochs draw the same numbers as they would have without the interruption.
    """

    def __init__(self) -> None:
        self._batches: Any = None
        self._restore: dict[str, Any] | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Remember the training batches; after a resume, restore the streams saved in the checkpoint."""
        self._batches = trainer.train_dataloader
        if self._restore is not None:
            torch.set_rng_state(self._restore["torch"])
            if self._restore.get("order") is not None and hasattr(self._batches, "generator"):
                self._batches.generator.set_state(self._restore["order"])
            self._restore = None

    def state_dict(self) -> dict[str, Any]:
        """The streams' states now (called while a checkpoint is written)."""
        order = self._batches.generator.get_state() if hasattr(self._batches, "generator") else None
        return {"torch": torch.get_rng_state(), "order": order}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the saved states until training starts (the batches do not exist yet)."""
        self._restore = state_dict


def checkpoint_callbacks(config: RunConfig, run_dir: Path) -> tuple[ModelCheckpoint, EarlyStopping]:
    """The best (by `train.monitor`) and last checkpoints in the run's folder, and early stopping on the same metric."""
    mode = "min" if config.train.monitor == "val_loss" else "max"
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / runs.CHECKPOINTS,
        filename="best",
        monitor=config.train.monitor,
        mode=mode,
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
    )
    return checkpoint, EarlyStopping(monitor=config.train.monitor, mode=mode, patience=config.train.patience)
