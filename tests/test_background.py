"""Background proteins: real genomes from installed wheels, genes called offline, resistance homologs removed."""

import numpy as np

from arginator.background import GENOMES, background_proteins, genome_proteins, resistance_homologs
from arginator.config import DataConfig
from arginator.sources import load_source, resistance_sequences, write_raw
from arginator.training.metrics import positive_rate_by_label


def _mutate(protein: str, share: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    letters = np.array(list(protein))
    where = rng.choice(len(letters), size=int(share * len(letters)), replace=False)
    letters[where] = rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=len(where))
    return "".join(letters)


def test_every_bundled_genome_yields_thousands_of_complete_proteins():
    counts = {genome.name: genome_proteins(genome) for genome in GENOMES}
    assert len(counts["ecoli-k12"]) > 4000  # E. coli K-12 has ~4,300 protein-coding genes
    assert all(len(proteins) > 1500 for proteins in counts.values())
    for proteins in counts.values():
        ids = [protein_id for protein_id, _ in proteins]
        assert len(set(ids)) == len(ids) and not any("*" in protein for _, protein in proteins)


def test_a_diverged_copy_of_a_resistance_protein_is_removed_and_ordinary_proteins_stay():
    resistance = resistance_sequences()[::20]  # ~300 targets keep the search quick
    ordinary = [protein for _, protein in genome_proteins(GENOMES[0])[:40]]
    diverged = _mutate(resistance[100], share=0.5, seed=1)  # ~50% identity: still a clear homolog
    unrelated = _mutate(resistance[100], share=1.0, seed=2)  # every residue redrawn: no homology left
    found = resistance_homologs([*ordinary, diverged, unrelated], resistance)
    assert len(ordinary) in found
    assert len(ordinary) + 1 not in found
    assert len(found) < len(ordinary) // 2  # most ordinary proteins are no resistance homologs


def test_background_keeps_no_homolog_of_a_training_resistance_protein():
    kept, counts = background_proteins(resistance_sequences(), limit=150)
    assert sum(c["kept"] for c in counts.values()) == len(kept)
    assert sum(c["resistance_homologs"] for c in counts.values()) > 0  # genomes carry intrinsic resistance-like genes
    # An independent, more sensitive search of what was kept against the training positives finds nothing at 1e-3.
    arg_binary = {r.text for r in load_source("arg-drugclass-multilabel")}
    assert not resistance_homologs([protein for _, protein, _ in kept], sorted(arg_binary))


def test_arg_binary_has_two_labelled_kinds_of_negatives(tmp_path):
    background = write_raw("background", tmp_path / "background", limit=200)
    assert (background / "background.json").exists()
    records = load_source("arg-binary", background_dir=background)
    labels = {record.labels[0] for record in records}
    assert labels == {"arg", "background", "virulence"}
    texts = [record.text for record in records]
    assert len(set(texts)) == len(texts)  # no sequence under two labels
    ambler = load_source("betalactamase-ambler", background_dir=background)
    assert {r.labels[0] for r in ambler} == {"A", "B", "C", "D", "non"}


def test_false_positive_rate_per_negative_label_and_the_negative_class_name():
    labels = ["background"] * 4 + ["virulence"] * 2 + ["arg"] * 2
    probabilities = np.array([0.9, 0.1, 0.2, 0.3, 0.8, 0.9, 0.95, 0.1])
    rates = positive_rate_by_label(labels, probabilities, [0.5])
    assert rates["background"] == {"n": 4, "positive_rate": 0.25}
    assert rates["virulence"]["positive_rate"] == 1.0 and rates["arg"]["positive_rate"] == 0.5
    config = DataConfig(task="binary", negative=["background", "virulence"], negative_name="non", positive_name="arg")
    assert config.negative_name == "non"
