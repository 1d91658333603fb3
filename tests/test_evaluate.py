import json

import numpy as np
import pandas as pd
import pytest

from arginator.config import DataConfig, load_config
from arginator.data.tables import load_embeddings
from arginator.errors import DataError
from arginator.serving.decide import decide
from arginator.sources import write_example_dataset
from arginator.training.evaluate import evaluate_run, write_report
from arginator.training.metrics import expected_calibration_error, score
from arginator.training.runs import load_model
from arginator.training.train import train_run
from tests.conftest import FAST, random_vectors, write_class_file


@pytest.fixture(scope="module")
def trained_run(seed_layout, tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    train_run(seed_layout, load_config(overrides=[*FAST, "train.max_epochs=8"]), run)
    return run


def test_perfect_multiclass_scores():
    y = np.array([0, 1, 2, 2])
    probabilities = np.eye(3)[y] * 0.98 + 0.01 / 1.5
    result = score(y, probabilities, "multiclass", ["a", "b", "c"], [])
    metrics = result.metrics
    assert metrics["accuracy"] == metrics["macro_f1"] == metrics["mcc"] == 1.0
    assert metrics["pr_auc"] == 1.0
    assert metrics["per_class"]["c"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert result.confusion.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]


def test_binary_scores_use_tuned_threshold_and_report_default():
    y = np.array([0, 0, 1, 1], dtype=np.float32)
    p = np.array([0.1, 0.2, 0.3, 0.9])
    metrics = score(y, p, "binary", ["non", "arg"], [0.25]).metrics
    assert metrics["accuracy"] == 1.0
    assert metrics["at_threshold_0.5"]["accuracy"] == 0.75
    assert list(metrics["per_class"]) == ["non", "arg"]
    assert metrics["pr_auc_per_class"] == {"arg": 1.0}


def test_multilabel_scores():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    p = np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.4], [0.2, 0.1]])
    metrics = score(y, p, "multilabel", ["x", "y"], [0.5, 0.5]).metrics
    assert metrics["accuracy"] == 0.75  # exact-match ratio: row 3 misses label y
    assert metrics["per_class"]["y"]["recall"] == 0.5
    np.testing.assert_array_equal(decide(p, "multilabel", [0.5, 0.3]).chosen, [[1, 0], [0, 1], [1, 1], [0, 0]])


def test_expected_calibration_error():
    confidence = np.array([0.9] * 10)
    assert expected_calibration_error(confidence, np.array([1.0] * 9 + [0.0])) == pytest.approx(0.0)
    assert expected_calibration_error(confidence, np.zeros(10)) == pytest.approx(0.9)


def test_evaluate_run_writes_metrics_figures_and_report(trained_run):
    metrics = evaluate_run(trained_run)
    stored = json.loads((trained_run / "metrics.json").read_text())
    assert stored["ffnn"]["accuracy"] == metrics["ffnn"]["accuracy"]
    test_rows = (pd.read_csv(trained_run / "split.csv")["split"] == "test").sum()
    for model in ("ffnn", "baseline"):
        entry = stored[model]
        assert entry["n"] == test_rows
        assert {"accuracy", "macro_f1", "mcc", "per_class", "pr_auc", "ece"} <= set(entry)
        assert set(entry["per_class"]) == {"a", "b", "c", "d", "non"}
    for figure in ("confusion_matrix.png", "pr_curves.png", "learning_curves.png", "embedding_map.png"):
        path = trained_run / "figures" / figure
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    report = (trained_run / "report.md").read_text()
    assert "| ffnn |" in report and "| baseline |" in report and f"{metrics['ffnn']['macro_f1']:.3f}" in report


def test_evaluate_on_external_data(trained_run, seed_layout, tmp_path):
    metrics = evaluate_run(trained_run, seed_layout)
    assert metrics["evaluated_on"]["rows"] == "all" and metrics["ffnn"]["n"] == 120


def test_evaluate_rejects_unknown_label_and_wrong_dimension(trained_run, tmp_path):
    write_class_file(tmp_path / "card_class_zzz_embeddings.h5", random_vectors("z", 3))
    with pytest.raises(
        DataError, match=r"unknown label 'zzz' for id 'sp\|z0000\|Z_ECOLI'.*model knows \['a', 'b', 'c', 'd', 'non'\]"
    ):
        evaluate_run(trained_run, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    write_class_file(other / "card_class_a_embeddings.h5", random_vectors("a", 3, dim=64))
    with pytest.raises(DataError, match=r"expected 1024 values per row \(the model's input\), got 64"):
        evaluate_run(trained_run, other)


def test_pr_curve_data_is_thinned(tmp_path):
    from arginator.training.evaluate import write_pr_curve_data

    recall = np.linspace(1, 0, 5000)
    write_pr_curve_data({"ffnn": {"arg": (recall, np.linspace(0.5, 1, 5000))}}, tmp_path / "pr.csv", max_points=100)
    table = pd.read_csv(tmp_path / "pr.csv")
    assert len(table) == 100 and table["recall"].iloc[0] == 1.0 and table["recall"].iloc[-1] == 0.0


def test_evaluate_external_hdf5_uses_its_own_labels_not_the_runs(tmp_path):
    """The `.h5` that `arginator embed` writes, plus its labels CSV, scores a run trained with a group column."""
    source = write_example_dataset(tmp_path / "seed", class_sizes={"a": 30, "b": 30, "non": 40}, dim=32, seed=2)
    table = load_embeddings(source, DataConfig())
    train_h5, other_h5 = tmp_path / "train.h5", tmp_path / "other.h5"
    groups = pd.read_csv(source / "groups.csv", dtype=str)
    for path, rows in ((train_h5, slice(0, None, 2)), (other_h5, slice(1, None, 2))):
        write_class_file(path, dict(zip(table.ids[rows], table.vectors[rows], strict=True)))
    labels_of = {i: labels[0] for i, labels in zip(table.ids, table.labels, strict=True)}
    train_labels = groups[groups["id"].isin(table.ids[::2])].assign(label=lambda f: f["id"].map(labels_of))
    train_labels.to_csv(tmp_path / "train_labels.csv", index=False)
    other_ids = list(table.ids[1::2])
    # Deliberately different labels from the truth for a few rows: the score must reflect these, not the run's.
    flipped = {i: ("a" if labels_of[i] != "a" else "b") for i in other_ids[:5]}
    other_labels = pd.DataFrame({"id": other_ids, "label": [flipped.get(i, labels_of[i]) for i in other_ids]})
    other_labels.to_csv(tmp_path / "other_labels.csv", index=False)
    config = load_config(
        overrides=[
            *FAST,
            "train.max_epochs=6",
            f"data.labels_file={tmp_path / 'train_labels.csv'}",
            "data.group_column=family",
        ]
    )
    run = tmp_path / "run"
    train_run(train_h5, config, run)
    metrics = evaluate_run(run, other_h5, tmp_path / "report", labels_file=tmp_path / "other_labels.csv")
    module, _ = load_model(run / "model.ckpt")
    x = np.stack([table.vectors[list(table.ids).index(i)] for i in other_ids])
    predicted = np.array(module.classes)[decide(module.predict_proba(x), "multiclass").chosen]
    expected = float(np.mean(predicted == other_labels["label"].to_numpy()))
    assert metrics["ffnn"]["n"] == len(other_ids) and metrics["ffnn"]["accuracy"] == pytest.approx(expected)


def test_classes_without_rows_are_listed_not_averaged_as_zero(tmp_path):
    y = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    metrics = score(y, probabilities, "multiclass", ["a", "b", "c"], []).metrics
    assert metrics["unscored"] == ["c"]
    # a: P 1, R 0.5 -> F1 2/3; b: F1 1. The mean over the two present classes; c (no rows) is not a zero in it.
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    report_metrics = {
        "ffnn": metrics,
        "baseline": metrics,
        "evaluated_on": {"task": "multiclass", "n": 4, "rows": "test split", "data": "x", "classes": ["a", "b", "c"]},
    }
    write_report(report_metrics, tmp_path / "report.md")
    report = (tmp_path / "report.md").read_text()
    assert "Not scored (no test rows): c." in report and "| c | not scored: no rows |" in report


def test_external_scoring_edge_cases(trained_run, seed_layout, tmp_path):
    # A table that has the run's group column (e.g. `family`): the column is not read as vector values.
    table = load_embeddings(seed_layout, DataConfig())
    frame = pd.DataFrame(table.vectors[:20], columns=[f"v{i}" for i in range(table.embedding_dim)])
    frame.insert(0, "family", "fam1")
    frame.insert(0, "label", [labels[0] for labels in table.labels[:20]])
    frame.insert(0, "id", table.ids[:20])
    frame.to_csv(tmp_path / "external.csv", index=False)
    grouped = tmp_path / "grouped_run"
    config = load_config(
        overrides=[
            *FAST,
            "train.max_epochs=2",
            f"data.labels_file={seed_layout / 'groups.csv'}",
            "data.group_column=family",
        ]
    )
    train_run(seed_layout, config, grouped)
    metrics = evaluate_run(grouped, tmp_path / "external.csv")
    assert metrics["ffnn"]["n"] == 20
    # Its report goes beside the run's own, never over it.
    assert (grouped / "eval-external" / "metrics.json").exists() and not (grouped / "metrics.json").exists()
    # --labels describes an HDF5 file of vectors; a table brings its own labels.
    with pytest.raises(DataError, match="--labels applies to an HDF5 file"):
        evaluate_run(grouped, tmp_path / "external.csv", labels_file=tmp_path / "other.csv")


def test_binary_model_scores_data_with_one_side_only(seed_layout, tmp_path):
    run = tmp_path / "run"
    train_run(seed_layout, load_config(overrides=[*FAST, "data.task=binary", "data.negative=non"]), run)
    only_positive = tmp_path / "positives"
    only_positive.mkdir()
    write_class_file(only_positive / "card_class_a_embeddings.h5", random_vectors("a", 5))
    metrics = evaluate_run(run, only_positive)
    assert metrics["ffnn"]["n"] == 5 and metrics["ffnn"]["unscored"] == ["non"]
