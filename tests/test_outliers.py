"""Outlier exposure: outliers split by homology group, bad outlier files refused, and a head that refuses held-out
outlier families which distances to the training data cannot tell from unseen families of the training classes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from arginator.config import DataConfig, load_config
from arginator.data.folds import make_folds
from arginator.data.outliers import fold_outliers, load_outliers
from arginator.data.splits import PreparedData
from arginator.data.tables import EmbeddingTable
from arginator.data.targets import encode_targets
from arginator.errors import DataError
from arginator.training import runs
from arginator.training.novelty import auroc
from arginator.training.train import _fit
from tests.conftest import FAST, write_class_file

DIM = 16


def _families(prefix: str, count: int, sign: float, seed: int, members: int = 8) -> tuple[list, np.ndarray, list]:
    """Families of rows around their own centre; dimension 0 carries `sign` (what the data and outliers differ by)."""
    rng = np.random.default_rng(seed)
    ids, vectors, groups = [], [], []
    for family in range(count):
        centre = np.r_[sign * rng.uniform(0.0, 1.5), rng.normal(size=DIM - 1) * 3.0]
        for member in range(members):
            ids.append(f"{prefix}{family}_{member}")
            vectors.append(centre + rng.normal(size=DIM) * 0.3)
            groups.append(f"{prefix}{family}")
    return ids, np.asarray(vectors, np.float32), groups


def _outlier_files(tmp_path, count: int = 40, seed: int = 5):
    ids, vectors, groups = _families("o", count, -1.0, seed)
    path = write_class_file(tmp_path / "outliers.h5", dict(zip(ids, vectors, strict=True)))
    groups_csv = tmp_path / "outlier_groups.csv"
    pd.DataFrame({"id": ids, "group": groups}).to_csv(groups_csv, index=False)
    return path, groups_csv


def test_outliers_are_split_and_folded_by_whole_groups(tmp_path):
    path, groups_csv = _outlier_files(tmp_path)
    config = DataConfig(outliers=str(path), outlier_groups=str(groups_csv), val_fraction=0.1, test_fraction=0.2)
    outliers = load_outliers(config, DIM, np.array(["x"]))
    assert outliers is not None and outliers.name == tmp_path.name and len(outliers.ids) == 320
    assert {"train", "val", "test"} == set(outliers.split)
    assert 0.1 < (outliers.split == "test").mean() < 0.3
    for group in set(outliers.groups):
        assert len(set(outliers.split[outliers.groups == group])) == 1  # no group on two sides
    tested = []
    for fold in range(5):
        folded = fold_outliers(outliers, 5, fold, config)
        assert set(folded.split) == {"train", "val", "test"} and len(folded.rows("test")) > 0
        for group in set(folded.groups):
            assert len(set(folded.split[folded.groups == group])) == 1  # validation takes whole groups too
        tested += sorted(set(folded.groups[folded.split == "test"]))
    assert sorted(tested) == sorted(set(outliers.groups))  # every group is tested in exactly one fold


def test_bad_outliers_are_refused_with_a_clear_error(tmp_path):
    path, groups_csv = _outlier_files(tmp_path, count=3)
    config = DataConfig(outliers=str(path), outlier_groups=str(groups_csv))
    with pytest.raises(DataError, match="vectors of 16 values, the data has 8"):
        load_outliers(config, 8, np.array(["x"]))
    with pytest.raises(DataError, match=r"share 1 ids with the data, e\.g\. 'o0_0'"):
        load_outliers(config, DIM, np.array(["o0_0", "x"]))
    pd.DataFrame({"id": ["o0_0"], "group": ["g"]}).to_csv(groups_csv, index=False)
    with pytest.raises(DataError, match="no group for 'o0_1'"):
        load_outliers(config, DIM, np.array(["x"]))
    pd.DataFrame({"id": ["o0_0"], "cluster": ["g"]}).to_csv(groups_csv, index=False)
    with pytest.raises(DataError, match="needs the columns id and group"):
        load_outliers(config, DIM, np.array(["x"]))
    (tmp_path / "empty.h5").write_bytes(b"")
    with pytest.raises(DataError):
        load_outliers(DataConfig(outliers=str(tmp_path / "empty.h5")), DIM, np.array(["x"]))


def _novelty_of_held_out_families(tmp_path, outlier_weight: float) -> dict[str, float]:
    tmp_path.mkdir()
    ids, vectors, groups = _families("a", 60, 1.0, seed=1)
    labels = [("left",) if vector[1] < 0 else ("right",) for vector in vectors]  # two classes, as a classifier needs
    table = EmbeddingTable(np.array(ids), vectors, labels, np.array(groups, object), "toy")
    folds, _ = make_folds(table, 5, seed=0)
    split = np.where(folds == 0, "test", np.where(folds == 1, "val", "train")).astype(object)
    path, groups_csv = _outlier_files(tmp_path, count=60)
    config = load_config(
        overrides=[
            *FAST,
            "train.max_epochs=30",
            "train.patience=30",
            f"train.outlier_weight={outlier_weight}",
            f"data.outliers={path}",
            f"data.outlier_groups={groups_csv}",
        ]
    )
    targets = encode_targets(table, config.data)
    outliers = fold_outliers(load_outliers(config.data, DIM, table.ids), 5, 0, config.data)
    data = PreparedData(table, targets, split, outliers)
    _fit(data, "toy", config, tmp_path / "run", resume=False, extra_callbacks=[])
    module, _ = runs.load_model(tmp_path / "run" / runs.MODEL)
    inside = module.predict_novelty(vectors[split == "test"])
    result = {"auroc": auroc(inside, module.predict_novelty(outliers.rows("test")))}
    result["outlier_limit"] = float(module.net.novelty_scale[2])
    with torch.no_grad():  # the distances over their limits, on validation outliers (real inputs the head never saw)
        components = module.net.novelty_components(torch.from_numpy(outliers.rows("val")))
    limits = module.net.novelty_scale[:2]
    result["val_outlier_distance"] = max(float((c / s).max()) for c, s in zip(components[:2], limits, strict=True))
    noise = np.random.default_rng(0).normal(0.0, 30.0, (50, DIM)).astype(np.float32)
    result["noise_flagged"] = float((module.predict_novelty(noise) > float(module.net.novelty_threshold)).mean())
    return result


def test_the_outlier_head_refuses_held_out_outlier_families_that_distances_miss(tmp_path):
    # Unseen families of the data and unseen outlier families are equally far from the training rows; only the
    # direction the outliers differ in (dimension 0) tells them apart, and only the outlier head learns it.
    distances = _novelty_of_held_out_families(tmp_path / "without", outlier_weight=0.0)
    exposed = _novelty_of_held_out_families(tmp_path / "with", outlier_weight=0.5)
    assert distances["outlier_limit"] == float("inf")  # the untrained head does not count
    assert np.isfinite(exposed["outlier_limit"])
    assert distances["auroc"] < 0.8
    assert exposed["auroc"] > 0.85 and exposed["auroc"] - distances["auroc"] > 0.1
    # With outliers, the distances' limits cover the validation outliers too; noise, far from anything real, is
    # still flagged.
    assert exposed["val_outlier_distance"] <= 1.0 + 1e-6
    assert exposed["noise_flagged"] == 1.0 and distances["noise_flagged"] == 1.0


def test_with_outliers_the_distances_flag_only_inputs_farther_than_any_real_one():
    from arginator.config import ModelConfig
    from arginator.training.network import FFNN
    from arginator.training.novelty import fit_novelty

    rng = np.random.default_rng(0)
    x_train, x_val = rng.normal(size=(400, DIM)), rng.normal(size=(100, DIM))
    val_outliers = rng.normal(size=(100, DIM)) + np.r_[6.0, np.zeros(DIM - 1)]  # real, but farther than the data
    noise = rng.normal(size=(50, DIM)) * 30.0
    limits = {}
    for name, given in (("data only", None), ("with outliers", val_outliers)):
        torch.manual_seed(0)
        net = FFNN(DIM, 2, ModelConfig(hidden_sizes=[8], norm="none")).eval()
        fit_novelty(net, x_train, x_val, outliers=True, x_val_outliers=given)
        with torch.no_grad():
            components = net.novelty_components(torch.from_numpy(val_outliers.astype(np.float32)))
            over = max(float((c / s).max()) for c, s in zip(components[:2], net.novelty_scale, strict=False))
            flagged = (net.novelty(torch.from_numpy(noise.astype(np.float32))) > net.novelty_threshold).float().mean()
        limits[name] = net.novelty_scale[:2].tolist()
        assert float(flagged) == 1.0  # noise stays flagged either way
        if given is None:
            assert over > 1.5  # the data's own limits: the outliers' distances exceed them
        else:
            assert over <= 1.0 + 1e-6  # the limits cover the validation outliers
    assert all(b > a for a, b in zip(limits["data only"], limits["with outliers"], strict=True))


def test_a_network_saved_before_outlier_exposure_loads_without_its_head():
    from arginator.config import ModelConfig
    from arginator.training.network import FFNN

    old = FFNN(DIM, 2, ModelConfig(hidden_sizes=[8], norm="none")).state_dict()
    old["novelty_scale"] = torch.tensor([2.0, 3.0])  # two limits, as such models stored them
    for key in ("outlier_head.weight", "outlier_head.bias"):
        del old[key]
    net = FFNN(DIM, 2, ModelConfig(hidden_sizes=[8], norm="none"))
    missing, unexpected = net.load_state_dict(old, strict=False)
    assert sorted(missing) == ["outlier_head.bias", "outlier_head.weight"] and not unexpected
    assert net.novelty_scale.tolist() == [2.0, 3.0, float("inf")]  # the untrained head stays out of the score
