"""Cross-validation folds trained in worker processes give the same figures as one at a time."""

from __future__ import annotations

import json
import os

import pytest

from arginator.config import load_config
from arginator.errors import ConfigError, DataError
from arginator.training import crossval
from arginator.training.crossval import cross_validate, fold_workers
from tests.conftest import FAST


def test_parallel_folds_match_sequential_folds(seed_layout, tmp_path):
    config = load_config(overrides=[*FAST, "train.max_epochs=2"])
    one = cross_validate(seed_layout, config, None, tmp_path / "one", k=3, workers=1)
    two = cross_validate(seed_layout, config, None, tmp_path / "two", k=3, workers=2)
    assert [row["fold"] for row in two["random"]["folds"]] == [0, 1, 2]
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert (tmp_path / "two" / "cv.json").read_text() == (tmp_path / "one" / "cv.json").read_text()
    # the folds differ from each other (a worker that re-ran one fold would repeat its figures)
    assert len({json.dumps(row["ffnn"], sort_keys=True) for row in two["random"]["folds"]}) == 3


def test_fold_workers_stay_within_the_cores_and_the_folds():
    cores = len(os.sched_getaffinity(0))
    assert fold_workers(100) == cores
    assert fold_workers(1) == 1


def test_a_failing_fold_in_a_worker_raises_the_projects_error(seed_layout, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise DataError("fold data is broken")

    monkeypatch.setattr(crossval, "_fit", broken)  # the forked workers inherit it
    config = load_config(overrides=[*FAST, "train.max_epochs=1"])
    with pytest.raises(DataError, match="fold data is broken"):
        cross_validate(seed_layout, config, None, tmp_path / "cv", k=3, workers=2)
    assert not (tmp_path / "cv" / "cv.json").exists()


def test_workers_below_one_are_refused(seed_layout, tmp_path):
    with pytest.raises(ConfigError, match="workers"):
        cross_validate(seed_layout, load_config(overrides=FAST), None, tmp_path / "cv", k=3, workers=0)
