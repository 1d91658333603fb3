from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from arginator.config import DataConfig
from arginator.data.datamodule import EmbeddingDataModule, TensorBatches
from arginator.data.splits import load_or_create_split, make_split, prepare_dataset
from arginator.data.tables import load_embeddings
from arginator.data.targets import encode_targets
from arginator.errors import DataError
from tests.conftest import DIM, SMALL_CLASSES, random_vectors, write_class_file


def table_frame(n: int = 12, dim: int = 8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, dim)).astype(np.float32), columns=[f"f{i}" for i in range(dim)])
    frame.insert(0, "label", ["x", "y", "z"] * (n // 3))
    frame.insert(0, "id", [f"sp|P{i:05d}|X" for i in range(n)])
    return frame


# ---- readers --------------------------------------------------------------------------------------------------------


def test_reads_seed_layout(seed_layout):
    table = load_embeddings(seed_layout, DataConfig())
    assert table.vectors.shape == (sum(SMALL_CLASSES.values()), DIM)
    assert table.vectors.dtype == np.float32
    assert Counter(labels[0] for labels in table.labels) == SMALL_CLASSES
    assert all("|" in protein_id for protein_id in table.ids)


def test_configurable_file_pattern(tmp_path):
    write_class_file(tmp_path / "alpha.emb.h5", random_vectors("a", 3))
    write_class_file(tmp_path / "beta.emb.h5", random_vectors("b", 4))
    write_class_file(tmp_path / "unrelated.h5", random_vectors("u", 2))
    table = load_embeddings(tmp_path, DataConfig(file_pattern="{label}.emb.h5"))
    assert sorted(Counter(labels[0] for labels in table.labels).items()) == [("alpha", 3), ("beta", 4)]


def test_hdf5_with_labels_csv_and_groups(tmp_path):
    vectors = random_vectors("p", 6)
    write_class_file(tmp_path / "all.h5", vectors)
    ids = list(vectors)
    pd.DataFrame({"id": ids[::-1], "label": ["a", "b"] * 3, "cluster": [0, 0, 1, 1, 2, 2]}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    config = DataConfig(labels_file=str(tmp_path / "labels.csv"), group_column="cluster")
    table = load_embeddings(tmp_path / "all.h5", config)
    assert list(table.ids) == ids[::-1]
    np.testing.assert_array_equal(table.vectors[0], vectors[ids[-1]])
    assert list(table.groups) == ["0", "0", "1", "1", "2", "2"]


def test_csv_table(tmp_path):
    frame = table_frame()
    frame.to_csv(tmp_path / "t.csv", index=False)
    table = load_embeddings(tmp_path / "t.csv", DataConfig())
    np.testing.assert_allclose(table.vectors, frame.iloc[:, 2:].to_numpy(), rtol=1e-6)
    assert table.labels[:3] == [("x",), ("y",), ("z",)]


def test_parquet_table_with_list_column(tmp_path):
    frame = table_frame()
    vectors = frame.iloc[:, 2:].to_numpy()
    pd.DataFrame({"id": frame["id"], "label": frame["label"], "embedding": list(vectors)}).to_parquet(
        tmp_path / "t.parquet"
    )
    table = load_embeddings(tmp_path / "t.parquet", DataConfig())
    np.testing.assert_array_equal(table.vectors, vectors)


def test_npz_table(tmp_path):
    frame = table_frame()
    vectors = frame.iloc[:, 2:].to_numpy()
    np.savez(tmp_path / "t.npz", embeddings=vectors, labels=frame["label"].to_numpy(str), ids=frame["id"].to_numpy(str))
    table = load_embeddings(tmp_path / "t.npz", DataConfig())
    assert len(table) == 12 and table.ids[0] == "sp|P00000|X"
    np.testing.assert_array_equal(table.vectors, vectors)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    frame = table_frame()
    np.savez(tmp_path / "t.npz", embeddings=frame.iloc[:, 2:].to_numpy(), labels=frame["label"].to_numpy(object))
    with pytest.raises(DataError, match=r"t.npz holds object \(pickled\) arrays, which are refused"):
        load_embeddings(tmp_path / "t.npz", DataConfig())


def test_multilabel_labels_are_split(tmp_path):
    frame = table_frame()
    frame["label"] = ["beta-lactam;aminoglycoside", "tetracycline", "aminoglycoside ; beta-lactam"] * 4
    frame.to_csv(tmp_path / "t.csv", index=False)
    table = load_embeddings(tmp_path / "t.csv", DataConfig(task="multilabel"))
    assert table.labels[0] == ("beta-lactam", "aminoglycoside")
    targets = encode_targets(table, DataConfig(task="multilabel"))
    assert targets.classes == ["aminoglycoside", "beta-lactam", "tetracycline"]
    np.testing.assert_array_equal(targets.y[:3], [[1, 1, 0], [0, 0, 1], [1, 1, 0]])


# ---- validation: each error names the file, the row or id, and the problem -----------------------------------------


def test_wrong_dimension(class_dir):
    vectors = random_vectors("b", 3)
    vectors["sp|B9999|SHORT"] = np.zeros(DIM - 1)
    write_class_file(class_dir / "card_class_b_embeddings.h5", vectors)
    with pytest.raises(
        DataError,
        match=r"expected 1024 values per row, got 1023 \(id 'sp\|B9999\|SHORT' in card_class_b_embeddings.h5\)",
    ):
        load_embeddings(class_dir, DataConfig())


def test_mixed_dimension_across_files(class_dir):
    write_class_file(class_dir / "card_class_b_embeddings.h5", random_vectors("b", 3, dim=512))
    with pytest.raises(
        DataError, match=r"expected 1024 values per row, got 512 \(id 'sp\|b0000\|B_ECOLI' in card_class_b"
    ):
        load_embeddings(class_dir, DataConfig())


def test_dimension_differs_from_config(class_dir):
    with pytest.raises(DataError, match=r"expected 256 values per row, got 1024"):
        load_embeddings(class_dir, DataConfig(embedding_dim=256))


@pytest.mark.parametrize(("value", "kind"), [(np.nan, "NaN"), (np.inf, "Inf")])
def test_non_finite_values(class_dir, value, kind):
    vectors = random_vectors("b", 3)
    vectors["sp|b0001|B_ECOLI"][17] = value
    write_class_file(class_dir / "card_class_b_embeddings.h5", vectors)
    with pytest.raises(
        DataError, match=rf"id 'sp\|b0001\|B_ECOLI' in card_class_b_embeddings.h5 contains {kind} \(value 18 of 1024\)"
    ):
        load_embeddings(class_dir, DataConfig())


def test_duplicate_id_across_files(class_dir):
    write_class_file(class_dir / "card_class_b_embeddings.h5", random_vectors("a", 2, seed=9))
    with pytest.raises(
        DataError,
        match=r"duplicate id 'sp\|a0000\|A_ECOLI' in card_class_b_embeddings.h5 \(already in card_class_a_embeddings",
    ):
        load_embeddings(class_dir, DataConfig())


def test_duplicate_id_in_table(tmp_path):
    frame = table_frame()
    frame.loc[5, "id"] = frame.loc[2, "id"]
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"duplicate id 'sp\|P00002\|X' in t.csv"):
        load_embeddings(tmp_path / "t.csv", DataConfig())


def test_empty_class_file(class_dir):
    write_class_file(class_dir / "card_class_c_embeddings.h5", {})
    with pytest.raises(DataError, match=r"class 'c' is empty: card_class_c_embeddings.h5 holds no embeddings"):
        load_embeddings(class_dir, DataConfig())


def test_declared_class_without_samples(class_dir):
    with pytest.raises(DataError, match=r"class 'b' is empty: no sample in classes has that label"):
        load_embeddings(class_dir, DataConfig(classes=["a", "b", "non"]))


def test_unknown_label_against_declared_classes(tmp_path):
    frame = table_frame()
    frame.loc[4, "label"] = "yy"
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"unknown label 'yy' for id 'sp\|P00004\|X' in t.csv"):
        load_embeddings(tmp_path / "t.csv", DataConfig(classes=["x", "y", "z"]))


def test_unknown_negative_label(class_dir):
    table = load_embeddings(class_dir, DataConfig())
    with pytest.raises(
        DataError, match=r"unknown label 'nonn' given as negative class; labels in classes: \['a', 'non'\]"
    ):
        encode_targets(table, DataConfig(task="binary", negative=["nonn"]))


def test_missing_label(tmp_path):
    frame = table_frame()
    frame.loc[3, "label"] = ""
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"row 4 \(id 'sp\|P00003\|X'\) of t.csv has no label"):
        load_embeddings(tmp_path / "t.csv", DataConfig())


def test_missing_value_in_csv_is_reported_as_nan(tmp_path):
    frame = table_frame().astype({"f3": object})
    frame.loc[6, "f3"] = ""
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"row 7, id 'sp\|P00006\|X' of t.csv contains NaN \(value 4 of 8\)"):
        load_embeddings(tmp_path / "t.csv", DataConfig())


def test_unreadable_hdf5(class_dir):
    (class_dir / "card_class_b_embeddings.h5").write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(DataError, match=r"cannot read card_class_b_embeddings.h5: not a readable HDF5 file"):
        load_embeddings(class_dir, DataConfig())


def test_per_id_hdf5_shapes_types_and_bad_datasets(tmp_path):
    from arginator.data.readers import read_all

    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as handle:  # every layout of one vector per id, nested groups, other numeric types
        handle["a"] = np.arange(4, dtype=np.float64)
        handle["b"] = np.arange(4, dtype=np.int16).reshape(1, 4)
        handle["g/c"] = np.arange(4, dtype=np.float16).reshape(4, 1)
        handle["t"] = np.array([True, False, True, True])
    read = read_all(good)
    assert read.ids == ["a", "b", "g/c", "t"] and read.vectors.dtype == np.float32
    np.testing.assert_array_equal(read.vectors, [[0, 1, 2, 3]] * 3 + [[1, 0, 1, 1]])
    bad = {
        "null": (h5py.Empty("f"), "holds no data"),
        "text": (np.array([b"1", b"2", b"3", b"4"]), "holds non-numeric values"),
        "complex": (np.ones(4, dtype=np.complex64), "holds non-numeric values"),
        "matrix": (np.zeros((2, 4)), r"has shape \(2, 4\); expected one vector per id"),
        "short": (np.zeros(3), r"expected 4 values per row, got 3 \(id 'short'"),
        "empty": (np.zeros((0, 1)), "expected 4 values per row, got 0"),
    }
    for name, (value, message) in bad.items():
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as handle:
            handle["a"] = np.zeros(4)
            handle[name] = value
        with pytest.raises(DataError, match=message):
            read_all(path)


def test_truncated_hdf5(class_dir):
    path = write_class_file(class_dir / "card_class_b_embeddings.h5", random_vectors("b", 20))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"card_class_b_embeddings.h5.*(truncated|not a readable HDF5)"):
        load_embeddings(class_dir, DataConfig())


def test_empty_files(tmp_path):
    (tmp_path / "card_class_a_embeddings.h5").write_bytes(b"")
    with pytest.raises(DataError, match=r"card_class_a_embeddings.h5 is empty \(0 bytes\)"):
        load_embeddings(tmp_path, DataConfig())
    (tmp_path / "t.csv").write_text("")
    with pytest.raises(DataError, match=r"t.csv is empty \(0 bytes\)"):
        load_embeddings(tmp_path / "t.csv", DataConfig())


@pytest.mark.parametrize("name", ["t.parquet", "t.npz"])
def test_corrupt_tables(tmp_path, name):
    (tmp_path / name).write_bytes(b"garbage" * 50)
    with pytest.raises(DataError, match=rf"cannot read {name}"):
        load_embeddings(tmp_path / name, DataConfig())


def test_no_matching_files(tmp_path):
    with pytest.raises(DataError, match=r"no files matching '\*_\{label\}_embeddings.h5' in"):
        load_embeddings(tmp_path, DataConfig())


def test_labels_csv_mismatch(tmp_path):
    vectors = random_vectors("p", 4)
    write_class_file(tmp_path / "all.h5", vectors)
    ids = list(vectors)
    pd.DataFrame({"id": [*ids[:3], "sp|GHOST|X"], "label": ["a", "b", "a", "b"]}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    with pytest.raises(DataError, match=r"id 'sp\|GHOST\|X' in labels.csv has no embedding in all.h5"):
        load_embeddings(tmp_path / "all.h5", DataConfig(labels_file=str(tmp_path / "labels.csv")))
    pd.DataFrame({"id": ids[:3], "label": ["a", "b", "a"]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataError, match=rf"id '{ids[3].replace('|', '[|]')}' in all.h5 has no label in labels.csv"):
        load_embeddings(tmp_path / "all.h5", DataConfig(labels_file=str(tmp_path / "labels.csv")))


def test_unsupported_and_missing_paths(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match=r"unsupported data file x\.txt"):
        load_embeddings(tmp_path / "x.txt", DataConfig())
    with pytest.raises(DataError, match="data path not found"):
        load_embeddings(tmp_path / "absent", DataConfig())


# ---- tasks ----------------------------------------------------------------------------------------------------------


def test_multiclass_targets(seed_layout):
    table = load_embeddings(seed_layout, DataConfig())
    targets = encode_targets(table, DataConfig())
    assert targets.classes == ["a", "b", "c", "d", "non"]
    assert np.bincount(targets.y).tolist() == list(SMALL_CLASSES.values())


def test_binary_negative_against_rest(seed_layout):
    table = load_embeddings(seed_layout, DataConfig())
    targets = encode_targets(table, DataConfig(task="binary", negative=["non"]))
    assert targets.classes == ["non", "positive"]
    assert targets.y.sum() == sum(SMALL_CLASSES.values()) - SMALL_CLASSES["non"]


def test_binary_chosen_positive_set(seed_layout):
    table = load_embeddings(seed_layout, DataConfig())
    targets = encode_targets(table, DataConfig(task="binary", negative=["non"], positive=["a", "b"]))
    assert targets.classes == ["non", "a+b"]
    assert targets.keep.sum() == SMALL_CLASSES["non"] + SMALL_CLASSES["a"] + SMALL_CLASSES["b"]
    assert targets.y.sum() == SMALL_CLASSES["a"] + SMALL_CLASSES["b"]


def test_multilabel_row_rejected_for_single_label_task(tmp_path):
    frame = table_frame()
    frame.loc[0, "label"] = "x;y"
    frame.to_csv(tmp_path / "t.csv", index=False)
    table = load_embeddings(tmp_path / "t.csv", DataConfig(task="multilabel"))
    with pytest.raises(DataError, match=r"has several labels \['x', 'y'\]; use --task multilabel"):
        encode_targets(table, DataConfig(task="multiclass"))


# ---- splits ---------------------------------------------------------------------------------------------------------


def test_stratified_split_is_seeded_and_proportional(seed_layout):
    table = load_embeddings(seed_layout, DataConfig())
    first, again = make_split(table, DataConfig()), make_split(table, DataConfig())
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, make_split(table, DataConfig(seed=7)))
    counts = Counter(first.tolist())
    assert counts["test"] == round(0.2 * len(table))
    labels = np.array([labels[0] for labels in table.labels])
    for label in SMALL_CLASSES:  # every class appears in every split
        assert {"train", "val", "test"} <= set(first[labels == label])


def test_grouped_split_keeps_groups_together(seed_layout):
    config = DataConfig(labels_file=str(seed_layout / "groups.csv"), group_column="family")
    table = load_embeddings(seed_layout, config)
    split = make_split(table, config)
    sides = pd.DataFrame({"group": table.groups, "split": split}).groupby("group")["split"].nunique()
    assert (sides == 1).all()
    assert set(split) == {"train", "val", "test"}


def test_split_is_written_and_reused(seed_layout, tmp_path):
    table = load_embeddings(seed_layout, DataConfig())
    path = tmp_path / "split.csv"
    first = load_or_create_split(table, DataConfig(), path)
    frame = pd.read_csv(path, dtype=str)
    assert list(frame.columns) == ["id", "label", "split", "group"]
    frame.loc[0, "split"] = "val" if frame.loc[0, "split"] != "val" else "test"
    frame.to_csv(path, index=False)
    reused = load_or_create_split(table, DataConfig(seed=123), path)
    assert reused[0] == frame.loc[0, "split"] and (reused[1:] == first[1:]).all()


def test_split_file_for_other_data_is_rejected(seed_layout, tmp_path):
    table = load_embeddings(seed_layout, DataConfig())
    path = tmp_path / "split.csv"
    pd.DataFrame({"id": ["sp|other|X"], "split": ["train"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"does not match the data: \d+ ids missing"):
        load_or_create_split(table, DataConfig(), path)


def test_prepare_dataset_rejects_empty_split(class_dir, tmp_path):
    table = load_embeddings(class_dir, DataConfig())
    split = ["train"] * (len(table) - 1) + ["val"]
    pd.DataFrame({"id": table.ids, "split": split}).to_csv(tmp_path / "split.csv", index=False)
    with pytest.raises(DataError, match=r"the test split is empty \(12 rows\)"):
        prepare_dataset(class_dir, DataConfig(), tmp_path / "split.csv")


def test_tiny_data_still_splits(class_dir, tmp_path):
    data = prepare_dataset(class_dir, DataConfig(test_fraction=0.05), tmp_path / "split.csv")
    assert set(data.split) == {"train", "val", "test"}


# ---- batches --------------------------------------------------------------------------------------------------------


def test_tensor_batches_cover_every_row_once_in_seeded_order():
    x = torch.arange(10, dtype=torch.float32).reshape(10, 1)
    y = torch.arange(10)
    batches = TensorBatches(x, y, batch_size=4, shuffle=True, seed=3)
    assert len(batches) == 3
    epoch = torch.cat([b for b, _ in batches]).flatten()
    assert sorted(epoch.tolist()) == list(range(10))
    assert epoch.tolist() != list(range(10))
    assert epoch.tolist() == torch.cat([b for b, _ in TensorBatches(x, y, 4, True, seed=3)]).flatten().tolist()
    assert [len(b) for b, _ in TensorBatches(x, y, 4, shuffle=False)] == [4, 4, 2]


def test_datamodule_exposes_shapes():
    arrays = {
        "train": (np.zeros((6, 5), np.float32), np.zeros(6, np.int64)),
        "val": (np.zeros((2, 5), np.float32), np.zeros(2, np.int64)),
    }
    module = EmbeddingDataModule(arrays, batch_size=4)
    assert module.embedding_dim == 5
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (4, 5) and y.dtype == torch.int64


def test_reader_does_not_modify_input_files(seed_layout):
    before = {p.name: p.read_bytes() for p in Path(seed_layout).iterdir()}
    load_embeddings(seed_layout, DataConfig())
    assert before == {p.name: p.read_bytes() for p in Path(seed_layout).iterdir()}
    with h5py.File(next(Path(seed_layout).glob("*_a_*.h5"))) as handle:
        assert len(handle) == SMALL_CLASSES["a"]


def test_a_single_trailing_training_row_joins_the_previous_batch():
    x, y = torch.zeros((9, 2)), torch.zeros(9)
    assert [len(b) for b, _ in TensorBatches(x, y, batch_size=4, shuffle=True)] == [4, 5]
    assert len(TensorBatches(x, y, batch_size=4, shuffle=True)) == 2
    assert [len(b) for b, _ in TensorBatches(x, y, batch_size=4, shuffle=False)] == [4, 4, 1]  # evaluation: all rows
