"""Supervised contrastive pre-training of the FFNN trunk (`model.contrastive: supcon`).

SupCon (Khosla et al., NeurIPS 2020, the L_out form of their eq. 2): every row of a batch is pulled towards the rows
that share its label and pushed from the others, on the unit sphere of a small projection head, with a temperature.
The trunk learns a feature space where classes form tight clusters; the projection head is then dropped and the
classifier's head is trained with the usual cross-entropy on the frozen trunk (`EmbeddingClassifier.freeze_trunk`).
Multi-label rows count as positives when they share at least one label; rows without a label share the "none" label.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from arginator.data.datamodule import TensorBatches
from arginator.training.network import FFNN

log = logging.getLogger(__name__)
PROJECTION_DIM = 128


def positive_pairs(y: torch.Tensor, task: str) -> torch.Tensor:
    """(n, n) boolean: rows i and j share a label (the diagonal included).

    Args:
        y: class indices (multiclass), 0/1 floats (binary) or a 0/1 indicator matrix (multilabel).
        task: multiclass | binary | multilabel.
    """
    if task == "multilabel":
        y = y.float()
        shared = (y @ y.T) > 0
        empty = y.sum(dim=1) == 0
        return shared | (empty[:, None] & empty[None, :])
    flat = y.reshape(len(y))
    return flat[:, None] == flat[None, :]


def supcon_loss(embeddings: torch.Tensor, positives: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """The supervised contrastive loss of a batch, averaged over rows that have at least one positive.

    Args:
        embeddings: (n, d) projections; normalised here.
        positives: (n, n) boolean, True where two rows share a label (the diagonal is ignored).
        temperature: the softmax temperature tau (smaller: harder negatives weigh more).

    Returns:
        A scalar; 0 (with a gradient) when no row has a positive.
    """
    z = F.normalize(embeddings, dim=1)
    similarity = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    # log softmax over every other row of the batch (the row itself is never a candidate)
    similarity = similarity.masked_fill(self_mask, float("-inf"))
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positives = positives & ~self_mask
    counts = positives.sum(dim=1)
    has_positive = counts > 0
    if not has_positive.any():
        return embeddings.sum() * 0.0
    summed = log_prob.masked_fill(~positives, 0.0).sum(dim=1)
    return -(summed[has_positive] / counts[has_positive]).mean()


class ProjectionHead(nn.Module):
    """Width -> width -> 128, as in SimCLR / SupCon; used during pre-training only."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, PROJECTION_DIM))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Unnormalised projections (the loss normalises)."""
        return self.layers(h)


def pretrain_trunk(
    net: FFNN,
    x: np.ndarray,
    y: np.ndarray,
    task: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    temperature: float,
    seed: int,
    device: str = "cpu",
) -> list[float]:
    """Train the trunk of `net` (every layer but the head) with SupCon on the training rows.

    Args:
        net: the network; its input statistics must already be set.
        x: training rows.
        y: their encoded targets.
        task: multiclass | binary | multilabel.
        epochs: passes over the training rows.
        batch_size: rows per batch (each row's positives and negatives come from its batch).
        learning_rate: AdamW's.
        temperature: SupCon's tau.
        seed: seeds the projection head and the batch order.
        device: where to train; the network is moved back to the CPU afterwards.

    Returns:
        The mean loss of each epoch.
    """
    torch.manual_seed(seed)
    head = ProjectionHead(net.layers[-1].in_features)
    net.to(device).train()
    head.to(device).train()
    parameters = [*net.layers[:-1].parameters(), *head.parameters()]
    optimiser = torch.optim.AdamW(parameters, lr=learning_rate)
    batches = TensorBatches(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y), batch_size, True, seed
    )
    losses = []
    for epoch in range(epochs):
        total, rows = 0.0, 0
        for xb, yb in batches:
            xb, yb = xb.to(device), yb.to(device)
            loss = supcon_loss(head(net.features(xb)), positive_pairs(yb, task), temperature)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, rows = total + float(loss.detach()) * len(xb), rows + len(xb)
        losses.append(total / max(rows, 1))
        log.debug("supcon epoch %d: loss %.4f", epoch, losses[-1])
    net.cpu()
    log.info("SupCon pre-training: %d epochs, loss %.3f -> %.3f", epochs, losses[0], losses[-1])
    return losses
