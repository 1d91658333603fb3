import json

import numpy as np
import pytest
import torch

from arginator.config import ModelConfig, TrainConfig
from arginator.training.model import EmbeddingClassifier
from arginator.training.network import FFNN, LogisticBaseline, TrainedClassifier


def make_module(task: str, classes: list[str], weights: list[float] | None = None, **model) -> EmbeddingClassifier:
    return EmbeddingClassifier(
        input_dim=16,
        classes=classes,
        task=task,
        model_config=ModelConfig(hidden_sizes=[8], **model).model_dump(),
        train_config=TrainConfig().model_dump(mode="json"),
        class_weights=weights,
    )


def separable(n: int = 120, dim: int = 16, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(0, 3, size=(classes, dim))
    return (centres[y] + rng.normal(size=(n, dim))).astype(np.float32), y


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "silu"])
def test_ffnn_layers_follow_config(norm, activation):
    net = FFNN(16, 3, ModelConfig(hidden_sizes=[12, 6], norm=norm, activation=activation, dropout=0.1))
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds.count("Linear") == 3
    assert ("BatchNorm1d" in kinds) == (norm == "batch") and ("LayerNorm" in kinds) == (norm == "layer")
    assert net.eval()(torch.zeros(5, 16)).shape == (5, 3)


@pytest.mark.parametrize(
    ("task", "classes", "target", "loss_type", "shape"),
    [
        ("multiclass", ["a", "b", "c"], torch.tensor([0, 2, 1, 1]), torch.nn.CrossEntropyLoss, (4, 3)),
        ("binary", ["non", "arg"], torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.nn.BCEWithLogitsLoss, (4,)),
        (
            "multilabel",
            ["a", "b", "c"],
            torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]]),
            torch.nn.BCEWithLogitsLoss,
            (4, 3),
        ),
    ],
)
def test_heads_and_losses(task, classes, target, loss_type, shape):
    module = make_module(task, classes)
    assert isinstance(module.loss_fn, loss_type)
    logits = module(torch.randn(4, 16))
    assert logits.shape == shape
    assert torch.isfinite(module.loss_fn(logits, target))
    probabilities = module.predict_proba(np.random.default_rng(0).normal(size=(4, 16)))
    assert probabilities.shape == shape
    if task == "multiclass":
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_class_weights_reach_the_loss():
    module = make_module("multiclass", ["a", "b"], weights=[1.0, 9.0])
    assert module.loss_fn.weight.tolist() == [1.0, 9.0]
    binary = make_module("binary", ["non", "arg"], weights=[4.0])
    assert binary.loss_fn.pos_weight.tolist() == [4.0]


def test_hyperparameters_rebuild_the_model():
    module = make_module("multiclass", ["a", "b", "c"])
    clone = EmbeddingClassifier(**dict(module.hparams))
    clone.load_state_dict(module.state_dict())
    x = np.random.default_rng(1).normal(size=(3, 16))
    np.testing.assert_array_equal(module.predict_proba(x), clone.predict_proba(x))


@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel"])
def test_baseline_learns_and_round_trips_through_json(task):
    x, y = separable()
    classes = ["a", "b", "c"]
    if task == "binary":
        y, classes = (y == 0).astype(np.float32), ["rest", "a"]
    elif task == "multilabel":
        y = np.stack([y == 0, y == 1, y != 1], axis=1).astype(np.float32)
    baseline = LogisticBaseline(task, classes).fit(x, y)
    probabilities = baseline.predict_proba(x)
    predicted = probabilities.argmax(1) if task == "multiclass" else (probabilities >= 0.5).astype(np.float32)
    assert (predicted == y).mean() > 0.9
    restored = LogisticBaseline.from_dict(json.loads(json.dumps(baseline.to_dict())))
    np.testing.assert_allclose(restored.predict_proba(x), probabilities, rtol=1e-10)
    assert restored.classes_ == classes


def test_baseline_with_two_classes_in_multiclass_task_and_absent_class():
    x, y = separable(classes=2)
    baseline = LogisticBaseline("multiclass", ["a", "b", "never"]).fit(x, y)
    probabilities = baseline.predict_proba(x)
    assert probabilities.shape == (len(x), 3)
    assert (probabilities.argmax(1) == y).mean() > 0.9
    assert probabilities[:, 2].max() < 1e-6


def test_trained_classifier_takes_the_training_modules_hyperparameters():
    import inspect

    # A checkpoint stores the training module's arguments; the Lightning-free classifier must accept every one.
    assert list(inspect.signature(TrainedClassifier).parameters) == list(
        inspect.signature(EmbeddingClassifier).parameters
    )
    module = make_module("multiclass", ["a", "b", "c"], weights=[1.0, 2.0, 0.5])
    rebuilt = TrainedClassifier(**dict(module.hparams))
    rebuilt.load_state_dict(module.state_dict())
    x = np.random.default_rng(0).normal(size=(7, module.hparams["input_dim"])).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.predict_proba(x), module.predict_proba(x))
