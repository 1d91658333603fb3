"""Groups for homology-aware splits: sequence-identity clusters (MMseqs2), or embedding-similarity components.

A grouped split puts every member of a group on one side, so a test protein has no close homolog in training.
Default identity: 40%. ARG studies cluster at 40-50%; at 40% most members of a resistance-gene family (TEM-1,
TEM-2, ...; OXA-48-like) fall into one cluster, which is the leak the split must prevent, while the distinct
families of a drug class stay separate, so every class keeps several clusters to split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from arginator import mmseqs
from arginator.data.tables import EmbeddingTable
from arginator.errors import DataError
from arginator.inputs import read_inputs
from arginator.mmseqs import DEFAULT_COVERAGE, DEFAULT_IDENTITY

log = logging.getLogger(__name__)


def mmseqs_clusters(
    ids: Sequence[str],
    sequences: Sequence[str],
    min_identity: float = DEFAULT_IDENTITY,
    coverage: float = DEFAULT_COVERAGE,
    threads: int = 2,
) -> dict[str, str]:
    """Cluster proteins with `mmseqs easy-cluster`; returns id -> cluster representative id.

    Raises:
        DataError: MMseqs2 is not installed (Debian: `apt-get install mmseqs2`) or fails.
    """
    representatives = mmseqs.cluster(sequences, min_identity, coverage, threads)
    return {ids[member]: ids[head] for member, head in enumerate(representatives)}


def embedding_clusters(ids: Sequence[str], vectors: np.ndarray, min_cosine: float = 0.95) -> dict[str, str]:
    """Connected components of the graph linking vectors with cosine similarity >= `min_cosine` (no sequences needed).

    Returns id -> id of the component's first member. Memory grows with n^2 / 16 bytes per block row; fine for tens of
    thousands of vectors.
    """
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    rows, cols = [], []
    block = 2048
    for start in range(0, len(unit), block):
        similar = unit[start : start + block] @ unit.T >= min_cosine
        r, c = np.nonzero(similar)
        rows.append(r + start)
        cols.append(c)
    n = len(unit)
    graph = csr_matrix(
        (np.ones(sum(len(r) for r in rows), dtype=np.int8), (np.concatenate(rows), np.concatenate(cols))), (n, n)
    )
    _, component = connected_components(graph, directed=False)
    first = {}
    for index, label in enumerate(component):
        first.setdefault(label, ids[index])
    return {ids[index]: first[label] for index, label in enumerate(component)}


def table_groups(
    table: EmbeddingTable, method: str, fasta_dir: Path, identity: float = DEFAULT_IDENTITY, min_cosine: float = 0.95
) -> np.ndarray | None:
    """Group of each row of `table`: `mmseqs` (sequences read from `fasta_dir`), `embedding`, or `none` (None)."""
    if method == "none":
        return None
    if method == "mmseqs":
        ids, sequences = read_inputs(fasta_dir)
        by_id = dict(zip(ids, sequences, strict=True))
        missing = [i for i in table.ids if i not in by_id]
        if missing:
            raise DataError(f"id '{missing[0]}' has no sequence in {fasta_dir} ({len(missing)} such ids)")
        groups = mmseqs_clusters(list(table.ids), [by_id[i] for i in table.ids], min_identity=identity)
    elif method == "embedding":
        groups = embedding_clusters(list(table.ids), table.vectors, min_cosine=min_cosine)
    else:
        raise DataError(f"unknown split method '{method}'; choose mmseqs, embedding or none")
    return np.array([groups[i] for i in table.ids], dtype=object)
