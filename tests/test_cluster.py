import numpy as np
import pandas as pd
import pytest

from arginator.config import DataConfig
from arginator.data.cluster import embedding_clusters, mmseqs_clusters
from arginator.data.splits import make_split
from arginator.data.tables import EmbeddingTable
from arginator.errors import DataError
from arginator.sources import load_source, subsample

AMINO = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def mutate(sequence: str, share: float, rng: np.random.Generator) -> str:
    letters = np.array(list(sequence))
    positions = rng.choice(len(letters), size=int(len(letters) * share), replace=False)
    letters[positions] = rng.choice(AMINO, size=len(positions))
    return "".join(letters)


def test_mmseqs_groups_variants_and_separates_families():
    rng = np.random.default_rng(0)
    family_a, family_b = ("".join(rng.choice(AMINO, 220)) for _ in range(2))
    sequences = [
        family_a,
        mutate(family_a, 0.05, rng),
        mutate(family_a, 0.1, rng),
        family_b,
        mutate(family_b, 0.05, rng),
    ]
    ids = [f"p{i}" for i in range(5)]
    clusters = mmseqs_clusters(ids, sequences)
    assert clusters["p0"] == clusters["p1"] == clusters["p2"]
    assert clusters["p3"] == clusters["p4"] != clusters["p0"]


def test_missing_mmseqs_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DataError, match="mmseqs not found: install MMseqs2"):
        mmseqs_clusters(["a"], ["MKT"])


def test_embedding_components():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(3, 16))
    vectors = np.vstack([base, base[:2] + rng.normal(scale=0.01, size=(2, 16))])
    groups = embedding_clusters([f"v{i}" for i in range(5)], vectors, min_cosine=0.99)
    assert groups["v0"] == groups["v3"] and groups["v1"] == groups["v4"]
    assert len({groups["v0"], groups["v1"], groups["v2"]}) == 3


def test_no_identity_cluster_crosses_splits_on_real_proteins():
    records = subsample(load_source("betalactamase-ambler", limit=300), 200, seed=0)
    ids = [record.id for record in records]
    clusters = mmseqs_clusters(ids, [record.text for record in records])
    table = EmbeddingTable(
        np.array(ids, dtype=object),
        np.zeros((len(ids), 4), dtype=np.float32),
        [record.labels for record in records],
        np.array([clusters[i] for i in ids], dtype=object),
        "betalactamase-ambler",
    )
    split = make_split(table, DataConfig())
    frame = pd.DataFrame({"cluster": table.groups, "split": split})
    assert (frame.groupby("cluster")["split"].nunique() == 1).all()
    assert set(split) == {"train", "val", "test"}
    assert len(set(clusters.values())) < len(ids)  # the real data does contain homologs
