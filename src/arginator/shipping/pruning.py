"""Pruning of a trained FFNN for `compress`: unstructured L1 and structured narrowing, and the fine-tune after it.

- `prune_unstructured`: zeros in place of the smallest weights (same shapes);
- `narrow`: fewer neurons per hidden layer, chosen by incoming-weight norm (smaller shapes);
- `fine_tune`: a few epochs on the training split for a narrowed copy, keeping its best validation epoch.

Pruning returns copies: the trained model is never changed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from arginator.config import ModelConfig
from arginator.training.network import FFNN, TrainedClassifier


def sparsity(net: nn.Module) -> float:
    """Share of exactly-zero weights over all Linear weight matrices."""
    weights = [m.weight for m in net.modules() if isinstance(m, nn.Linear)]
    return float(sum((w == 0).sum().item() for w in weights) / sum(w.numel() for w in weights))


def prune_unstructured(module: TrainedClassifier, amount: float) -> TrainedClassifier:
    """A copy with the `amount` smallest-magnitude weights of every Linear layer set to zero, permanently."""
    pruned = copy.deepcopy(module)
    for layer in pruned.net.modules():
        if isinstance(layer, nn.Linear):
            prune.l1_unstructured(layer, name="weight", amount=amount)
            prune.remove(layer, "weight")
    return pruned


def narrow(module: TrainedClassifier, keep: float) -> TrainedClassifier:
    """A copy whose hidden layers keep the `keep` fraction of neurons with the largest incoming-weight L2 norms."""
    config = ModelConfig.model_validate(module.hparams["model_config"])
    linears = [m for m in module.net.layers if isinstance(m, nn.Linear)]
    norms = [m for m in module.net.layers if isinstance(m, nn.BatchNorm1d | nn.LayerNorm)]
    kept = [
        torch.sort(torch.topk(layer.weight.norm(dim=1), max(1, round(layer.out_features * keep))).indices).values
        for layer in linears[:-1]
    ]
    smaller = copy.deepcopy(module)
    new_config = config.model_copy(update={"hidden_sizes": [len(k) for k in kept]})
    smaller.net = FFNN(linears[0].in_features, linears[-1].out_features, new_config)
    # Standardisation, calibration, and whether the outlier head counts (fit_novelty refits the rest).
    for buffer in ("input_mean", "input_scale", "output_scale", "output_bias", "novelty_scale"):
        getattr(smaller.net, buffer).copy_(getattr(module.net, buffer))
    new_linears = [m for m in smaller.net.layers if isinstance(m, nn.Linear)]
    new_norms = [m for m in smaller.net.layers if isinstance(m, nn.BatchNorm1d | nn.LayerNorm)]
    previous = torch.arange(linears[0].in_features)
    with torch.no_grad():
        for index, (old, new) in enumerate(zip(linears, new_linears, strict=True)):
            rows = kept[index] if index < len(kept) else torch.arange(old.out_features)
            new.weight.copy_(old.weight[rows][:, previous])
            new.bias.copy_(old.bias[rows])
            if index < len(norms):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    if getattr(norms[index], name, None) is not None:
                        getattr(new_norms[index], name).copy_(getattr(norms[index], name)[rows])
            previous = rows
        last_hidden = kept[-1] if kept else torch.arange(linears[0].in_features)  # the outlier head reads these
        smaller.net.outlier_head.weight.copy_(module.net.outlier_head.weight[:, last_hidden])
        smaller.net.outlier_head.bias.copy_(module.net.outlier_head.bias)
    smaller.hparams["model_config"] = new_config.model_dump()
    return smaller


def fine_tune(
    module: TrainedClassifier, x: np.ndarray, y: np.ndarray, epochs: int, score: Callable[[], float], seed: int = 0
) -> None:
    """Up to `epochs` of AdamW (lr 1e-3) on the training split; keeps the epoch with the best validation `score`."""
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)
    optimizer = torch.optim.AdamW(module.net.parameters(), lr=1e-3, weight_decay=1e-4)
    module.eval()
    best_score, best_state = score(), copy.deepcopy(module.net.state_dict())
    for _ in range(epochs):
        module.train()
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), 256):
            rows = order[start : start + 256]
            optimizer.zero_grad(set_to_none=True)
            module.loss_fn(module(xt[rows]), yt[rows]).backward()
            optimizer.step()
        module.eval()
        current = score()
        if current > best_score:
            best_score, best_state = current, copy.deepcopy(module.net.state_dict())
    module.net.load_state_dict(best_state)
