"""Cross-validation folds, novelty (fit, ONNX parity, probes) and calibration on generated data."""

import numpy as np
import pytest
import torch

from arginator.config import DataConfig, ModelConfig
from arginator.data.folds import ALWAYS_TRAIN, fold_split, make_folds
from arginator.data.tables import EmbeddingTable
from arginator.serving.decide import decide
from arginator.training.metrics import score, threshold_for_recall
from arginator.training.network import FFNN
from arginator.training.novelty import auroc, fit_novelty, probes, risk_coverage


def _table(groups_per_class: dict[str, int], size: int = 6, dim: int = 8, seed: int = 0) -> EmbeddingTable:
    rng = np.random.default_rng(seed)
    ids, labels, groups, vectors = [], [], [], []
    for label, count in groups_per_class.items():
        for g in range(count):
            for m in range(size + g % 3):
                ids.append(f"{label}-{g}-{m}")
                labels.append((label,))
                groups.append(f"{label}{g}")
                vectors.append(rng.normal(size=dim))
    return EmbeddingTable(np.array(ids), np.array(vectors, np.float32), labels, np.array(groups, object), "toy")


def test_grouped_folds_keep_groups_whole_and_test_every_testable_class():
    table = _table({"a": 9, "b": 5, "c": 2, "single": 1})
    folds, untestable = make_folds(table, 5, seed=3)
    assert untestable == ["single"]
    assert (folds[np.array([g == "single0" for g in table.groups])] == ALWAYS_TRAIN).all()
    for group in set(table.groups):
        assert len(set(folds[table.groups == group])) == 1  # no group in two folds
    labels = np.array([lab[0] for lab in table.labels])
    for label in ("a", "b", "c"):
        assert (folds[labels == label] >= 0).any()
    config = DataConfig(val_fraction=0.1, test_fraction=0.2)
    for fold in range(5):
        split = fold_split(table, folds, fold, config)
        assert set(split[folds == fold]) == {"test"}
        assert (split == "val").any() and (split[folds == ALWAYS_TRAIN] == "train").all()
        for group in set(table.groups):
            assert len(set(split[table.groups == group])) == 1  # validation takes whole groups too
        for label in ("a", "b"):  # every class with enough groups keeps training rows
            assert (split[labels == label] == "train").any()
    tested = {label for fold in range(5) for label in labels[folds == fold]}
    assert tested == {"a", "b", "c"}


def test_random_folds_are_stratified_and_cover_every_row():
    table = _table({"a": 4, "b": 4})
    table = EmbeddingTable(table.ids, table.vectors, table.labels, None, "toy")
    folds, untestable = make_folds(table, 4, seed=0)
    assert not untestable and set(folds) == {0, 1, 2, 3}
    labels = np.array([lab[0] for lab in table.labels])
    for fold in range(4):
        assert set(labels[folds == fold]) == {"a", "b"}


def _net(dim: int = 16) -> FFNN:
    torch.manual_seed(0)
    return FFNN(dim, 3, ModelConfig(hidden_sizes=[32, 16], dropout=0.0, norm="none")).eval()


def test_novelty_separates_toy_in_and_out_of_distribution_and_flags_probes():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(16, 16)).astype(np.float32)
    # Correlated features with their own means (as embedding dimensions have): a constant vector is far from all.
    inside = (rng.normal(size=(1500, 16)).astype(np.float32) * 0.3) @ mixing + np.linspace(-3, 3, 16, dtype=np.float32)
    net = _net()
    net.set_input_statistics(inside[:1000])
    summary = fit_novelty(net, inside[:1000], inside[1000:1250], max_bank=256)
    assert summary["bank_rows"] == 256 and 0 < summary["val_flagged"] <= 0.02
    with torch.no_grad():
        test = net.novelty(torch.from_numpy(inside[1250:])).numpy()
        shifted = net.novelty(torch.from_numpy(inside[1250:] + 3.0 * inside.std(axis=0))).numpy()
        assert auroc(test, shifted) > 0.95
        for name, vectors in probes(inside[1250:]).items():
            flagged = (net.novelty(torch.from_numpy(vectors)).numpy() > summary["threshold"]).mean()
            # 16 toy dimensions leave a shuffled row some chance of looking plausible; noise and constants none.
            assert flagged >= (0.9 if name == "shuffled features" else 1.0), name


def test_novel_rows_abstain_and_the_risk_coverage_curve_rises_when_errors_are_novel():
    decision = decide(
        np.array([[0.9, 0.1], [0.8, 0.2]]), "multiclass", novelty=np.array([0.5, 3.0]), novelty_threshold=1.0
    )
    assert decision.novel.tolist() == [False, True] and decision.abstained.tolist() == [False, True]
    correct = np.r_[np.ones(80, bool), np.zeros(20, bool)]
    novelty = np.r_[np.linspace(0, 1, 80), np.linspace(2, 3, 20)]  # the wrong answers are the novel ones
    curve = risk_coverage(novelty, lambda keep: correct[keep].mean())
    assert curve[0]["macro_f1"] == 1.0 and curve[-1]["macro_f1"] == pytest.approx(0.8)


def test_calibration_improves_a_miscalibrated_toy_model():
    from arginator.training.calibration import fit_temperature

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 3000)
    logits = rng.normal(size=(3000, 3))
    logits[np.arange(3000), y] += 1.5
    overconfident = logits * 4.0  # right ranking, far too sharp
    temperature = fit_temperature(overconfident[:1500], y[:1500])

    def ece(z: np.ndarray) -> float:
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return score(y[1500:], p, "multiclass", ["a", "b", "c"], []).metrics["ece"]

    assert temperature > 2.0
    assert ece(overconfident[1500:] / temperature) < ece(overconfident[1500:]) / 2


def test_threshold_for_recall_keeps_the_target_share_of_positives_and_no_more():
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.3).astype(int)
    positive = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
    for target in (0.5, 0.9, 0.99):
        cut = threshold_for_recall(y, positive, target)
        recall = (positive[y == 1] >= cut).mean()
        assert recall >= target
        # one step higher loses the target: the threshold is the highest that meets it
        above = np.sort(positive[y == 1])[np.sort(positive[y == 1]) > cut]
        if len(above):
            assert (positive[y == 1] >= above[0]).mean() < target
    assert threshold_for_recall(np.zeros(5, int), np.linspace(0, 1, 5), 0.9) == 0.5
