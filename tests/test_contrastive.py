"""Supervised contrastive pre-training: the loss, the positive pairs, and a trunk that learns to cluster classes."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch

from arginator.config import ModelConfig, load_config
from arginator.data.datamodule import EmbeddingDataModule
from arginator.training.contrastive import positive_pairs, pretrain_trunk, supcon_loss
from arginator.training.model import EmbeddingClassifier
from arginator.training.network import FFNN
from arginator.training.runs import load_model
from arginator.training.train import train_run
from tests.conftest import FAST


def reference_supcon(z: np.ndarray, labels: list[int], temperature: float) -> float:
    """Khosla et al. eq. 2 written out row by row."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(z[i] @ z[a] / temperature) for a in others)
        losses.append(-np.mean([math.log(math.exp(z[i] @ z[p] / temperature) / denominator) for p in positives]))
    return float(np.mean(losses))


def test_supcon_loss_follows_the_paper_and_rewards_clustered_classes():
    rng = np.random.default_rng(0)
    labels = [0, 0, 1, 1, 2, 2, 2, 3]  # class 3 has no positive: left out of the mean
    z = rng.normal(size=(8, 5))
    y = torch.tensor(labels)
    loss = supcon_loss(torch.from_numpy(z), positive_pairs(y, "multiclass"), temperature=0.5)
    assert loss.item() == pytest.approx(reference_supcon(z, labels, 0.5), rel=1e-6)
    clustered = np.eye(5)[labels] + 0.01 * rng.normal(size=(8, 5))
    tight = supcon_loss(torch.from_numpy(clustered), positive_pairs(y, "multiclass"), 0.1)
    assert tight.item() < supcon_loss(torch.from_numpy(z), positive_pairs(y, "multiclass"), 0.1).item() - 1.0
    alone = supcon_loss(torch.ones(3, 4, requires_grad=True), torch.zeros(3, 3, dtype=torch.bool))
    assert alone.item() == 0.0 and alone.requires_grad


def test_positive_pairs_per_task():
    binary = positive_pairs(torch.tensor([1.0, 0.0, 1.0]), "binary")
    assert binary.tolist() == [[True, False, True], [False, True, False], [True, False, True]]
    multilabel = torch.tensor([[1, 0, 1], [0, 0, 1], [0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.float32)
    pairs = positive_pairs(multilabel, "multilabel")
    assert pairs[0, 1] and not pairs[0, 2] and not pairs[2, 3]
    assert pairs[3, 4], "rows with no label share the 'none' label"


def _separation(features: np.ndarray, y: np.ndarray) -> float:
    """Mean cosine similarity within classes minus between classes."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T
    same = y[:, None] == y[None, :]
    off_diagonal = ~np.eye(len(y), dtype=bool)
    return float(similarity[same & off_diagonal].mean() - similarity[~same].mean())


def test_pretraining_pulls_classes_apart_in_the_trunk():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 32)) * 0.6
    y = rng.integers(0, 3, size=300)
    x = (centres[y] + rng.normal(size=(300, 32))).astype(np.float32)
    torch.manual_seed(0)
    net = FFNN(32, 3, ModelConfig(hidden_sizes=[64, 32], dropout=0.0))
    net.set_input_statistics(x)

    def separation() -> float:
        net.eval()
        with torch.no_grad():
            return _separation(net.features(torch.from_numpy(x)).numpy(), y)

    before = separation()
    losses = pretrain_trunk(
        net, x, y, "multiclass", epochs=15, batch_size=64, learning_rate=1e-3, temperature=0.1, seed=0
    )
    assert losses[-1] < losses[0]
    assert separation() > before + 0.2


def test_frozen_trunk_keeps_its_weights_and_normalisation_while_the_head_trains():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 16)).astype(np.float32)
    y = rng.integers(0, 2, size=128)
    module = EmbeddingClassifier(16, ["a", "b"], "multiclass", ModelConfig(hidden_sizes=[8]).model_dump(), {})
    module.freeze_trunk()
    trunk = {k: v.clone() for k, v in module.net.layers[:-1].state_dict().items()}
    head = module.net.layers[-1].weight.detach().clone()
    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=EmbeddingDataModule({"train": (x, y), "val": (x, y)}, 32))
    after = module.net.layers[:-1].state_dict()
    assert all(torch.equal(trunk[k], after[k]) for k in trunk), "weights and batch-norm statistics unchanged"
    assert not torch.equal(head, module.net.layers[-1].weight.detach())


def test_supcon_runs_end_to_end_and_is_recorded_in_the_model(seed_layout, tmp_path):
    config = load_config(overrides=[*FAST, "model.contrastive=supcon", "model.contrastive_epochs=3"])
    train_run(seed_layout, config, tmp_path / "run")
    module, _ = load_model(tmp_path / "run" / "model.ckpt")
    assert module.hparams["model_config"]["contrastive"] == "supcon"
    assert module.predict_proba(np.zeros((2, 1024), dtype=np.float32)).shape == (2, 5)
