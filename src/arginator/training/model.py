"""The LightningModule that trains the feed-forward classifier (the network itself is in `training.network`).

Only training imports Lightning: a trained model is rebuilt as `network.TrainedClassifier`, the same network and
forward pass without it.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch.nn import functional as F

from arginator.config import Task, TrainConfig
from arginator.serving.decide import decide
from arginator.training.metrics import macro_f1
from arginator.training.network import ClassifierCore, logits_to_probabilities


class EmbeddingClassifier(ClassifierCore, L.LightningModule):
    """Lightning wrapper: loss per task, class weights, optimiser, and validation macro-F1 per epoch.

    Its hyperparameters (configs, class list, input dimension, task) are stored in every checkpoint, so a checkpoint
    is enough to rebuild the model.
    """

    def __init__(
        self,
        input_dim: int,
        classes: list[str],
        task: Task,
        model_config: dict[str, Any],
        train_config: dict[str, Any],
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_config = TrainConfig.model_validate(train_config)
        self._build(input_dim, classes, task, model_config, class_weights)
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._loss_sums: dict[str, list] = {}
        self.trunk_frozen = False
        self.outlier_rows: torch.Tensor | None = None

    def use_outliers(self, rows: np.ndarray) -> None:
        """Train the outlier head too: each training batch gets as many of these rows (drawn at random) beside it."""
        self.outlier_rows = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))

    def freeze_trunk(self) -> None:
        """Train the head alone from now on (after contrastive pre-training): hidden layers fixed, in eval mode."""
        self.trunk_frozen = True
        for parameter in self.net.layers[:-1].parameters():
            parameter.requires_grad_(False)
        self.net.layers[:-1].eval()

    def on_train_epoch_start(self) -> None:
        """Keep a frozen trunk in eval mode: Lightning restores submodule modes it captured around validation."""
        if self.trunk_frozen:
            self.net.layers[:-1].eval()

    def train(self, mode: bool = True) -> EmbeddingClassifier:
        """As `nn.Module.train`, but a frozen trunk's normalisation and dropout stay in eval mode."""
        super().train(mode)
        if self.trunk_frozen:
            self.net.layers[:-1].eval()
        return self

    def _common_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        if stage == "train" and self.outlier_rows is not None and len(self.outlier_rows):
            picked = self.outlier_rows[torch.randint(len(self.outlier_rows), (len(x),))].to(x.device)
            # One forward pass over both, so that batch norm sees the data and the outliers in the same batch.
            features = self.net.features(torch.cat([x, picked]))
            logits = self._task_shape(self.net.head(features[: len(x)]))
            inside = torch.cat([torch.ones(len(x)), torch.zeros(len(x))]).to(x.device)
            outlier_loss = F.binary_cross_entropy_with_logits(self.net.outlier_head(features).squeeze(1), inside)
            loss = self.loss_fn(logits, y) + self.train_config.outlier_weight * outlier_loss
        else:
            logits = self(x)
            loss = self.loss_fn(logits, y)
        # Summed on the loss's own device and logged once per epoch: per-step `self.log` costs several percent of a
        # fast epoch, and a host sync per step would cost more on a GPU.
        sums = self._loss_sums.setdefault(stage, [torch.zeros((), device=loss.device), 0])
        sums[0] = sums[0] + loss.detach() * len(x)
        sums[1] += len(x)
        if stage == "val":
            self._val_outputs.append((logits.detach(), y))
        return loss

    def _log_epoch_loss(self, stage: str) -> None:
        sums = self._loss_sums.pop(stage, None)
        if sums is not None and sums[1] > 0:
            # Under DDP each rank trains on its share of the batches (the mean of the ranks' means is logged); every
            # rank scores the whole validation split, so its loss needs no reduction.
            distributed = stage == "train" and self.trainer.world_size > 1
            self.log(f"{stage}_loss", sums[0] / sums[1], prog_bar=True, sync_dist=distributed)

    def on_train_epoch_end(self) -> None:
        """Mean training loss of the epoch."""
        self._log_epoch_loss("train")

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step."""
        return self._common_step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Validation loss, and logits kept for the epoch's macro-F1."""
        return self._common_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        """Validation loss and macro-F1 over the whole split, once per epoch (cheaper than per-step metric objects)."""
        self._log_epoch_loss("val")
        if not self._val_outputs:
            return
        logits = torch.cat([out[0] for out in self._val_outputs]).float().cpu()
        y = torch.cat([out[1] for out in self._val_outputs]).cpu().numpy()
        self._val_outputs.clear()
        predicted = decide(logits_to_probabilities(logits, self.task).numpy(), self.task).chosen
        self.log("val_macro_f1", macro_f1(y, predicted, self.task, len(self.classes)), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW with the configured learning rate and weight decay."""
        return torch.optim.AdamW(
            [p for p in self.parameters() if p.requires_grad],
            lr=self.train_config.learning_rate,
            weight_decay=self.train_config.weight_decay,
        )
