"""MMseqs2, the one homology tool of the project: clustering for grouped splits and searches for homolog filters.

MMseqs2 is a Debian package (`apt-get install mmseqs2`), run as a subprocess in a temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from arginator.errors import DataError

# Homology groups: clusters at 40% identity over 80% coverage (the reasons: `data.cluster`'s docstring).
DEFAULT_IDENTITY = 0.4
DEFAULT_COVERAGE = 0.8


def executable() -> str:
    """Path of the `mmseqs` binary.

    Raises:
        DataError: MMseqs2 is not installed.
    """
    found = shutil.which("mmseqs")
    if found is None:
        raise DataError(
            "mmseqs not found: install MMseqs2 (Debian/Ubuntu: apt-get install mmseqs2), "
            "or use --method embedding for an embedding-similarity split"
        )
    return found


def _write_fasta(path: Path, sequences: Sequence[str]) -> None:
    # Row numbers as names: user ids may hold characters MMseqs2 would cut at.
    path.write_text("".join(f">{index}\n{sequence}\n" for index, sequence in enumerate(sequences)))


def _run(arguments: list[str], what: str) -> None:
    result = subprocess.run([executable(), *arguments], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DataError(f"mmseqs {what} failed ({result.returncode}): {result.stderr.strip()[-500:]}")


def cluster(sequences: Sequence[str], min_identity: float, coverage: float, threads: int = 2) -> list[int]:
    """`mmseqs easy-cluster`: the index of each sequence's cluster representative, in input order.

    Raises:
        DataError: MMseqs2 is missing or fails, or leaves a sequence without a cluster.
    """
    with tempfile.TemporaryDirectory(prefix="arginator-mmseqs-") as tmp:
        work = Path(tmp)
        _write_fasta(work / "input.fasta", sequences)
        _run(
            [
                "easy-cluster", str(work / "input.fasta"), str(work / "out"), str(work / "tmp"),
                "--min-seq-id", str(min_identity), "-c", str(coverage), "--cov-mode", "0",
                "--threads", str(threads), "-v", "1",
            ],
            "easy-cluster",
        )  # fmt: skip
        representative = {}
        for line in (work / "out_cluster.tsv").read_text().splitlines():
            head, member = line.split("\t")
            representative[int(member)] = int(head)
    if len(representative) != len(sequences):
        missing = next(i for i in range(len(sequences)) if i not in representative)
        raise DataError(f"mmseqs returned no cluster for {len(sequences) - len(representative)} sequences (#{missing})")
    return [representative[i] for i in range(len(sequences))]


def search_hits(
    queries: Sequence[str], targets: Sequence[str], max_evalue: float, sensitivity: float = 7.5, threads: int = 2
) -> set[int]:
    """`mmseqs easy-search`: indices of the queries with at least one hit in `targets` at e-value <= `max_evalue`.

    No identity or coverage floor: a significant local alignment (one shared domain) counts as a hit.

    Raises:
        DataError: MMseqs2 is missing or fails.
    """
    if not queries or not targets:
        return set()
    with tempfile.TemporaryDirectory(prefix="arginator-mmseqs-") as tmp:
        work = Path(tmp)
        _write_fasta(work / "queries.fasta", queries)
        _write_fasta(work / "targets.fasta", targets)
        _run(
            [
                "easy-search", str(work / "queries.fasta"), str(work / "targets.fasta"), str(work / "hits.tsv"),
                str(work / "tmp"), "-e", str(max_evalue), "-s", str(sensitivity), "--threads", str(threads),
                "--format-output", "query,target,evalue", "-v", "1",
            ],
            "easy-search",
        )  # fmt: skip
        lines = (work / "hits.tsv").read_text().splitlines()
    return {int(line.split("\t")[0]) for line in lines if line}
