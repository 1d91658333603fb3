"""The feed-forward classifier (a plain `nn.Module` wrapped by a LightningModule) and the logistic-regression baseline.

Heads follow the task:
- multiclass: C logits, softmax + cross-entropy;
- binary: one logit, sigmoid + BCE (probability of the positive class);
- multilabel: C logits, per-class sigmoid + BCE.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from arginator.config import ModelConfig, Task, TrainConfig
from arginator.serving.decide import decide
from arginator.training.metrics import macro_f1

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def output_size(task: str, num_classes: int) -> int:
    """Logits the head produces: one for binary, one per class otherwise."""
    return 1 if task == "binary" else num_classes


class FFNN(nn.Module):
    """Linear -> norm -> activation -> dropout blocks, then a linear head producing logits."""

    def __init__(self, input_dim: int, num_outputs: int, config: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for hidden in config.hidden_sizes:
            layers.append(nn.Linear(width, hidden))
            if config.norm == "batch":
                layers.append(nn.BatchNorm1d(hidden))
            elif config.norm == "layer":
                layers.append(nn.LayerNorm(hidden))
            layers.append(ACTIVATIONS[config.activation]())
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = hidden
        layers.append(nn.Linear(width, num_outputs))
        self.layers = nn.Sequential(*layers)
        # Per-feature standardisation with training-set statistics; part of the state, so exports carry it.
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_scale", torch.ones(input_dim))
        # Calibration of the logits (temperature or Platt scaling, fitted on validation after training; identity until
        # then): also part of the state, so the checkpoint and the ONNX graph give calibrated probabilities.
        self.register_buffer("output_scale", torch.ones(num_outputs))
        self.register_buffer("output_bias", torch.zeros(num_outputs))
        # Novelty (`training.novelty` fits it after training; empty until then, and the score is 0): the bank of
        # training features for the nearest-neighbour distance, the input-space Mahalanobis map, the two scores'
        # validation medians, and the threshold above which an input is novel.
        self.register_buffer("novelty_bank", torch.zeros(0, width))
        self.register_buffer("novelty_bank_sq", torch.zeros(0))
        self.register_buffer("novelty_mean", torch.zeros(input_dim))
        self.register_buffer("novelty_whitener", torch.zeros(input_dim, input_dim))
        self.register_buffer("novelty_scale", torch.ones(2))
        self.register_buffer("novelty_threshold", torch.full((1,), float("inf")))

    def set_input_statistics(self, x: np.ndarray) -> None:
        """Standardise inputs with the mean and standard deviation of `x` (the training split)."""
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        self.input_mean.copy_(torch.from_numpy(x.mean(axis=0)).float())
        self.input_scale.copy_(torch.from_numpy(scale).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, input_dim) -> (batch, num_outputs) logits (calibrated once `output_scale`/`output_bias` are set)."""
        return self.layers((x - self.input_mean) / self.input_scale) * self.output_scale + self.output_bias

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations (the head's input) of raw inputs."""
        return self.layers[:-1]((x - self.input_mean) / self.input_scale)

    def novelty_distances(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distance to the nearest bank row in feature space, and mean squared Mahalanobis distance in input space."""
        h = self.features(x)
        # |h - b|^2 = |h|^2 - 2 h.b + |b|^2: one matrix product instead of a (batch, bank, width) difference tensor.
        squared = (h * h).sum(dim=1, keepdim=True) - 2.0 * h @ self.novelty_bank.T + self.novelty_bank_sq
        nearest = squared.min(dim=1).values.clamp(min=0.0).sqrt()
        z = (x - self.input_mean) / self.input_scale
        return nearest, ((z - self.novelty_mean) @ self.novelty_whitener).pow(2).mean(dim=1)

    def novelty(self, x: torch.Tensor) -> torch.Tensor:
        """Novelty per row: the larger of the two distances, each over its validation median; 0 before fitting."""
        if self.novelty_bank.shape[0] == 0:
            return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        nearest, mahalanobis = self.novelty_distances(x)
        return torch.maximum(nearest / self.novelty_scale[0], mahalanobis / self.novelty_scale[1])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # The bank's row count is set by fitting; take it from the state being loaded.
        for name in ("novelty_bank", "novelty_bank_sq"):
            stored = state_dict.get(prefix + name)
            if stored is not None and stored.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros(stored.shape, dtype=stored.dtype, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def logits_to_probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Softmax for multiclass; sigmoid otherwise (binary gives P(positive) in one column)."""
    return torch.softmax(logits, dim=1) if task == "multiclass" else torch.sigmoid(logits)


class EmbeddingClassifier(L.LightningModule):
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
        self.task = task
        self.classes = classes
        self.train_config = TrainConfig.model_validate(train_config)
        self.net = FFNN(input_dim, output_size(task, len(classes)), ModelConfig.model_validate(model_config))
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        if task == "multiclass":
            self.loss_fn: nn.Module = nn.CrossEntropyLoss(weight=weights)
        else:
            # For sigmoid heads the weight is the positive-class weight (negatives per positive).
            self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=weights)
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._loss_sums: dict[str, list] = {}
        self.trunk_frozen = False

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; squeezed to (batch,) for the binary head."""
        logits = self.net(x)
        return logits.squeeze(1) if self.task == "binary" else logits

    def _common_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
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

    @torch.no_grad()
    def predict_novelty(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Novelty score per row (eval mode); rows above `net.novelty_threshold` are novel."""
        self.eval()
        tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        chunks = [
            self.net.novelty(tensor[i : i + batch_size].to(self.device)).cpu() for i in range(0, len(x), batch_size)
        ]
        return torch.cat(chunks).numpy() if chunks else np.zeros(0, dtype=np.float32)

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Probabilities in eval mode: (n, C) for multiclass/multilabel, (n,) P(positive) for binary."""
        self.eval()
        tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        chunks = [
            logits_to_probabilities(self(tensor[i : i + batch_size].to(self.device)), self.task).cpu()
            for i in range(0, len(x), batch_size)
        ]
        if not chunks:  # no rows: the same shape as for any other input, with zero rows
            return np.zeros((0,) if self.task == "binary" else (0, len(self.classes)), dtype=np.float32)
        return torch.cat(chunks).numpy()


class LogisticBaseline:
    """Logistic regression on standardised embeddings, fitted on the same split; serialised as plain JSON.

    Follows the scikit-learn conventions: `fit` returns self, learned state ends in `_`, `classes_` orders the
    probability columns. Multilabel fits one binary model per class.
    """

    def __init__(
        self, task: Task, classes: list[str], c: float = 1.0, max_iter: int = 1000, balanced: bool = True
    ) -> None:
        self.task = task
        self.classes = classes
        self.c = c
        self.max_iter = max_iter
        self.balanced = balanced

    def fit(self, x: np.ndarray, y: np.ndarray) -> LogisticBaseline:
        """Standardise with training statistics, then fit the logistic model(s)."""
        self.mean_ = x.mean(axis=0)
        self.scale_ = x.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        z = (x - self.mean_) / self.scale_
        weight = "balanced" if self.balanced else None
        if self.task == "multilabel":
            coefs, intercepts = [], []
            for column in range(y.shape[1]):
                if len(np.unique(y[:, column])) < 2:  # a label always on or always off in training: constant logit
                    coefs.append(np.zeros(x.shape[1]))
                    intercepts.append(30.0 if y[0, column] else -30.0)
                    continue
                model = LogisticRegression(C=self.c, max_iter=self.max_iter, class_weight=weight).fit(z, y[:, column])
                coefs.append(model.coef_[0])
                intercepts.append(model.intercept_[0])
            self.coef_, self.intercept_ = np.stack(coefs), np.array(intercepts)
        else:
            model = LogisticRegression(C=self.c, max_iter=self.max_iter, class_weight=weight).fit(z, y)
            self.coef_, self.intercept_ = model.coef_, model.intercept_
            if self.task == "multiclass" and self.coef_.shape[0] == 1:
                # sklearn stores two classes as one logit; softmax([0, z]) == sigmoid(z) keeps the same probabilities.
                self.coef_ = np.vstack([np.zeros_like(self.coef_), self.coef_])
                self.intercept_ = np.concatenate([[0.0], self.intercept_])
            if self.task == "multiclass" and len(model.classes_) != len(self.classes):
                # A class absent from training gets no column from sklearn: give it a never-chosen row.
                full_coef = np.zeros((len(self.classes), x.shape[1]))
                full_intercept = np.full(len(self.classes), -1e9)
                full_coef[model.classes_] = self.coef_
                full_intercept[model.classes_] = self.intercept_
                self.coef_, self.intercept_ = full_coef, full_intercept
        self.classes_ = list(self.classes)
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Logits: (n, C), or (n,) for binary."""
        logits = ((x - self.mean_) / self.scale_) @ self.coef_.T + self.intercept_
        return logits[:, 0] if self.task == "binary" else logits

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Same shapes as `EmbeddingClassifier.predict_proba`."""
        logits = torch.from_numpy(self.decision_function(np.asarray(x, dtype=np.float64)))
        if self.task == "binary":
            return torch.sigmoid(logits).numpy()
        return logits_to_probabilities(logits, self.task).numpy()

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to predict, as JSON-serialisable lists (no pickle)."""
        return {
            "kind": "logistic_regression",
            "task": self.task,
            "classes": self.classes_,
            "params": {"c": self.c, "max_iter": self.max_iter, "balanced": self.balanced},
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": np.asarray(self.coef_).tolist(),
            "intercept": np.asarray(self.intercept_).tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> LogisticBaseline:
        """Rebuild a fitted baseline from `to_dict` output."""
        params = state["params"]
        model = cls(state["task"], state["classes"], params["c"], params["max_iter"], params["balanced"])
        model.mean_ = np.array(state["mean"])
        model.scale_ = np.array(state["scale"])
        model.coef_ = np.array(state["coef"])
        model.intercept_ = np.array(state["intercept"])
        model.classes_ = list(state["classes"])
        return model
