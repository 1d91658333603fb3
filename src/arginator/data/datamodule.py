"""The Lightning DataModule: train/val/test batches sliced from in-memory tensors (the only torch code under data/)."""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import numpy as np
import torch


class TensorBatches:
    """Mini-batches sliced from in-memory tensors: one index gather per batch, no per-sample Python.

    When shuffling (training), a last batch of a single row joins the one before it: batch normalisation cannot
    train on one row, and a split of n * batch_size + 1 rows would otherwise fail in every epoch.

    Under data-parallel training each of `world_size` processes draws the same seeded order and takes every
    `world_size`-th row of each batch, from its `rank` on: together they see the batches of one process, and every
    rank takes the same number of steps. A last batch too small to give every rank two rows joins the one before it.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(seed)

    def _bounds(self) -> list[tuple[int, int]]:
        bounds = [
            (start, min(start + self.batch_size, len(self.x))) for start in range(0, len(self.x), self.batch_size)
        ]
        # Each of the ranks needs two rows or more of the last batch (batch norm); one process: the rule above.
        if self.shuffle and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < 2 * self.world_size:
            bounds[-2:] = [(bounds[-2][0], bounds[-1][1])]
        return bounds

    def __len__(self) -> int:
        return len(self._bounds())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.shuffle:
            order = torch.randperm(len(self.x), generator=self.generator)
            for start, end in self._bounds():
                rows = order[start:end][self.rank :: self.world_size]
                yield self.x[rows], self.y[rows]
        else:
            for start, end in self._bounds():
                yield self.x[start:end], self.y[start:end]


class EmbeddingDataModule(L.LightningDataModule):
    """Serves train/val/test batches of vectors and encoded targets held in memory."""

    def __init__(self, arrays: dict[str, tuple[np.ndarray, np.ndarray]], batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.tensors = {
            split: (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y))
            for split, (x, y) in arrays.items()
        }
        self.batch_size = batch_size
        self.seed = seed

    @property
    def embedding_dim(self) -> int:
        """Number of input features."""
        return int(self.tensors["train"][0].shape[1])

    def _batches(self, split: str, shuffle: bool, rank: int = 0, world_size: int = 1) -> TensorBatches:
        x, y = self.tensors[split]
        return TensorBatches(x, y, self.batch_size, shuffle=shuffle, seed=self.seed, rank=rank, world_size=world_size)

    def train_dataloader(self) -> TensorBatches:
        """Shuffled training batches (the order is seeded); this process's share of each batch under DDP."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return self._batches("train", shuffle=True)
        return self._batches("train", shuffle=True, rank=trainer.global_rank, world_size=trainer.world_size)

    def val_dataloader(self) -> TensorBatches:
        """Validation batches in file order (every process scores all of them: the same metric on every rank)."""
        return self._batches("val", shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        """Test batches in file order."""
        return self._batches("test", shuffle=False)
