"""The feed-forward network, the classifier that holds a trained one, and the logistic-regression baseline.

Everything here predicts without Lightning: evaluation, export and compression import this module, not
`training.model` (the LightningModule that trains the network), and so skip Lightning's import (about five seconds,
paid once per pipeline command; `.importlinter` keeps it so).

Heads follow the task:
- multiclass: C logits, softmax + cross-entropy;
- binary: one logit, sigmoid + BCE (probability of the positive class);
- multilabel: C logits, per-class sigmoid + BCE.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from arginator.config import ModelConfig, Task

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
        # Outlier head: a logit for "like the training data" against outliers (`data.outliers`), trained beside the
        # classification head on the same hidden features; unused (novelty_scale[2] stays inf) without outliers.
        with torch.random.fork_rng(devices=[]):  # the global generator moves on as before: other models train the same
            self.outlier_head = nn.Linear(width, 1)
        # Novelty (`training.novelty` fits it after training; empty until then, and the score is 0): the bank of
        # training features for the nearest-neighbour distance, the input-space Mahalanobis map, the limits of the
        # three components on validation rows, and the threshold above which an input is novel.
        self.register_buffer("novelty_bank", torch.zeros(0, width))
        self.register_buffer("novelty_bank_sq", torch.zeros(0))
        self.register_buffer("novelty_mean", torch.zeros(input_dim))
        self.register_buffer("novelty_whitener", torch.zeros(input_dim, input_dim))
        self.register_buffer("novelty_scale", torch.tensor([1.0, 1.0, float("inf")]))
        self.register_buffer("novelty_threshold", torch.full((1,), float("inf")))

    def set_input_statistics(self, x: np.ndarray) -> None:
        """Standardise inputs with the mean and standard deviation of `x` (the training split)."""
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        self.input_mean.copy_(torch.from_numpy(x.mean(axis=0)).float())
        self.input_scale.copy_(torch.from_numpy(scale).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, input_dim) -> (batch, num_outputs) logits (calibrated once `output_scale`/`output_bias` are set)."""
        return self.head(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations (the head's input) of raw inputs."""
        return self.layers[:-1]((x - self.input_mean) / self.input_scale)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (calibrated once set) from `features`: `forward` split in two, for training with outliers."""
        return self.layers[-1](features) * self.output_scale + self.output_bias

    def novelty_components(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The novelty score's components: nearest-neighbour distance, Mahalanobis distance, outlier probability.

        Distance to the nearest bank row in feature space, mean squared Mahalanobis distance in input space, and the
        outlier head's probability that the row is an outlier.
        """
        h = self.features(x)
        # |h - b|^2 = |h|^2 - 2 h.b + |b|^2: one matrix product instead of a (batch, bank, width) difference tensor.
        squared = (h * h).sum(dim=1, keepdim=True) - 2.0 * h @ self.novelty_bank.T + self.novelty_bank_sq
        nearest = squared.min(dim=1).values.clamp(min=0.0).sqrt()
        z = (x - self.input_mean) / self.input_scale
        mahalanobis = ((z - self.novelty_mean) @ self.novelty_whitener).pow(2).mean(dim=1)
        return nearest, mahalanobis, torch.sigmoid(-self.outlier_head(h).squeeze(1))

    def novelty(self, x: torch.Tensor) -> torch.Tensor:
        """Novelty per row: the largest of the three components, each over its validation limit; 0 before fitting.

        A component whose limit is inf (the outlier head of a model trained without outliers) adds nothing.
        """
        if self.novelty_bank.shape[0] == 0:
            return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        components = self.novelty_components(x)
        return torch.stack([c / s for c, s in zip(components, self.novelty_scale, strict=True)]).amax(dim=0)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Models saved before outlier exposure have two novelty limits: the third (the outlier head's) is inf.
        scale = state_dict.get(prefix + "novelty_scale")
        if scale is not None and scale.shape == (2,):
            state_dict[prefix + "novelty_scale"] = torch.cat([scale, torch.full((1,), float("inf"), dtype=scale.dtype)])
        # The bank's row count is set by fitting; take it from the state being loaded.
        for name in ("novelty_bank", "novelty_bank_sq"):
            stored = state_dict.get(prefix + name)
            if stored is not None and stored.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros(stored.shape, dtype=stored.dtype, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def logits_to_probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Softmax for multiclass; sigmoid otherwise (binary gives P(positive) in one column)."""
    return torch.softmax(logits, dim=1) if task == "multiclass" else torch.sigmoid(logits)


class ClassifierCore(nn.Module):
    """What the training module and a loaded classifier share (the Lightning module lists it before LightningModule).

    The network and loss built from the hyperparameters, the forward pass, and batched probabilities and novelty scores.
    """

    net: FFNN
    task: Task
    hparams: Any  # the constructor's arguments (Lightning's AttributeDict, or a dict)
    classes: list[str]
    loss_fn: nn.Module

    def _build(
        self,
        input_dim: int,
        classes: list[str],
        task: Task,
        model_config: dict[str, Any],
        class_weights: list[float] | None,
    ) -> None:
        self.task = task
        self.classes = classes
        self.net = FFNN(input_dim, output_size(task, len(classes)), ModelConfig.model_validate(model_config))
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        if task == "multiclass":
            self.loss_fn = nn.CrossEntropyLoss(weight=weights)
        else:
            # For sigmoid heads the weight is the positive-class weight (negatives per positive).
            self.loss_fn = nn.BCEWithLogitsLoss(pos_weight=weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; squeezed to (batch,) for the binary head."""
        return self._task_shape(self.net(x))

    def _task_shape(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.squeeze(1) if self.task == "binary" else logits

    def _batches(
        self, x: np.ndarray, batch_size: int, score: Callable[[torch.Tensor], torch.Tensor]
    ) -> list[torch.Tensor]:
        self.eval()
        device = self.net.input_mean.device
        tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.no_grad():
            return [score(tensor[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]

    def predict_novelty(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Novelty score per row (eval mode); rows above `net.novelty_threshold` are novel."""
        chunks = self._batches(x, batch_size, self.net.novelty)
        return torch.cat(chunks).numpy() if chunks else np.zeros(0, dtype=np.float32)

    def predict_proba(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Probabilities in eval mode: (n, C) for multiclass/multilabel, (n,) P(positive) for binary."""
        chunks = self._batches(x, batch_size, lambda rows: logits_to_probabilities(self(rows), self.task))
        if not chunks:  # no rows: the same shape as for any other input, with zero rows
            return np.zeros((0,) if self.task == "binary" else (0, len(self.classes)), dtype=np.float32)
        return torch.cat(chunks).numpy()


class TrainedClassifier(ClassifierCore):
    """A trained FFNN as `runs.load_model` rebuilds it, for evaluation, export and compression: no Lightning.

    Takes the same hyperparameters as the training module (`training.model.EmbeddingClassifier`), whose checkpoints
    store them; `hparams` is a plain dict of them.
    """

    def __init__(
        self,
        input_dim: int,
        classes: list[str],
        task: Task,
        model_config: dict[str, Any],
        train_config: dict[str, Any] | None = None,
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.hparams: dict[str, Any] = {
            "input_dim": input_dim,
            "classes": classes,
            "task": task,
            "model_config": model_config,
            "train_config": train_config or {},
            "class_weights": class_weights,
        }
        self._build(input_dim, classes, task, model_config, class_weights)


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
        """Same shapes as `ClassifierCore.predict_proba`."""
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
