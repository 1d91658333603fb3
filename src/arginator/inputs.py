"""What users hand us before embedding: protein FASTA files, texts CSVs and prepared dataset directories.

One reader for all of them, streaming in chunks so that a metagenome-sized FASTA is never held in memory, and one
protein check (`check_protein`) shared by the CLI and the API: letters outside the amino-acid alphabet, empty
sequences and nucleotide sequences are refused with the record's id, before anything is embedded.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from arginator.errors import DataError, InvalidInput

# The 20 standard amino acids plus the IUPAC ambiguity and rare residues UniRep has tokens for (B, J, O, U, X, Z).
PROTEIN_LETTERS = frozenset("ACDEFGHIKLMNPQRSTVWYBJOUXZ")
NUCLEOTIDE_LETTERS = frozenset("ACGTUN")
FASTA_SUFFIXES = (".fasta", ".fa", ".faa", ".fas", ".fsa", ".pep")
MIN_NUCLEOTIDE_CHECK = 30  # shorter all-ACGT peptides are plausible proteins; longer ones are DNA by any odds


def check_protein(sequence: str, name: str) -> str:
    """`sequence` upper-cased, without whitespace and a final stop (`*`); InvalidInput naming `name` if not a protein.

    Args:
        sequence: one protein sequence as a user wrote it.
        name: how to call it in the message (a FASTA id, or "sequence 3").

    Returns:
        The cleaned sequence.
    """
    cleaned = "".join(sequence.split()).upper().removesuffix("*")
    if not cleaned:
        raise InvalidInput(f"{name}: empty sequence")
    unknown = set(cleaned) - PROTEIN_LETTERS
    if unknown:
        shown = "".join(sorted(unknown))[:20]
        raise InvalidInput(f"{name}: letters that are not amino acids: '{shown}' (one-letter protein codes only)")
    if len(cleaned) >= MIN_NUCLEOTIDE_CHECK and set(cleaned) <= NUCLEOTIDE_LETTERS:
        raise InvalidInput(f"{name}: looks like DNA/RNA (only A, C, G, T/U, N): translate it to protein first")
    return cleaned


def is_texts_csv(path: Path | str) -> bool:
    """Whether `path` is a CSV whose header (read as CSV: quoted names too) has a `text` column."""
    path = Path(path)
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    return "text" in [name.strip() for name in header]


def is_fasta(path: Path | str) -> bool:
    """Whether `path` names a FASTA file, by its suffix (`.gz` allowed)."""
    name = Path(path).name.lower().removesuffix(".gz")
    return name.endswith(FASTA_SUFFIXES)


def _open_text(path: Path) -> TextIO:
    # utf-8-sig: files saved by some Windows editors start with a byte-order mark, which is not part of the text.
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig")
    return path.open(encoding="utf-8-sig")


def parse_fasta(lines: Iterable[str], source: str, check: bool = True) -> Iterator[tuple[str, str]]:
    """(id, sequence) records of FASTA `lines`, one at a time; the id is the header's first word.

    Args:
        lines: the FASTA text, line by line.
        source: the file (or request) name, for error messages.
        check: clean and check every sequence with `check_protein`.

    Raises:
        InvalidInput: text before the first header, a header without an id, a duplicate id, a bad sequence, or no
            record at all.
    """
    seen: set[str] = set()
    name: str | None = None
    parts: list[str] = []

    def record() -> tuple[str, str]:
        sequence = "".join(parts)
        return name, check_protein(sequence, f"{source}, '{name}'") if check else sequence  # type: ignore[return-value]

    for number, line in enumerate(lines, 1):
        line = line.strip()
        if line.startswith(">"):
            if name is not None:
                yield record()
            words = line[1:].split()
            if not words:
                raise InvalidInput(f"{source}, line {number}: a FASTA header without an id")
            name, parts = words[0], []
            if name in seen:
                raise InvalidInput(f"{source}, line {number}: id '{name}' appears twice")
            seen.add(name)
        elif line and not line.startswith(";"):
            if name is None:
                raise InvalidInput(f"{source}, line {number}: not FASTA (sequence text before the first '>' header)")
            parts.append(line)
    if name is None:
        raise InvalidInput(f"{source}: no FASTA record (an empty file, or no '>' header)")
    yield record()


def iter_fasta(path: Path | str, check: bool = True) -> Iterator[tuple[str, str]]:
    """(id, sequence) records of a FASTA file (plain or gzipped), streamed; see `parse_fasta`."""
    path = Path(path)
    try:
        with _open_text(path) as handle:
            yield from parse_fasta(handle, path.name, check)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def iter_texts(path: Path | str) -> Iterator[tuple[str, str]]:
    """(id, text) rows of a CSV with `id` and `text` columns, streamed."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"id", "text"} <= set(reader.fieldnames):
                raise InvalidInput(f"{path.name}: a texts CSV needs 'id' and 'text' columns, found {reader.fieldnames}")
            for row in reader:
                if row["id"] is None or row["text"] is None:  # a short row: csv fills the missing fields with None
                    raise InvalidInput(f"{path.name}, line {reader.line_num}: a row without both an id and a text")
                yield row["id"], row["text"]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def iter_inputs(path: Path | str) -> Iterator[tuple[str, str]]:
    """(id, item) pairs of a FASTA file, a texts CSV, or a prepared directory (`sequences.fasta` / `texts.csv`)."""
    path = Path(path)
    if path.is_dir():
        if (path / "sequences.fasta").exists():
            return iter_fasta(path / "sequences.fasta")
        if (path / "texts.csv").exists():
            return iter_texts(path / "texts.csv")
        raise DataError(f"{path} holds neither sequences.fasta nor texts.csv")
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if is_fasta(path):
        return iter_fasta(path)
    if path.suffix.lower() == ".csv":
        return iter_texts(path)
    raise DataError(f"{path.name}: expected a FASTA file ({', '.join(FASTA_SUFFIXES)}), a texts CSV or a directory")


def read_inputs(path: Path | str) -> tuple[list[str], list[str]]:
    """All ids and items of `iter_inputs(path)`, in file order."""
    ids, items = [], []
    for item_id, item in iter_inputs(path):
        ids.append(item_id)
        items.append(item)
    return ids, items


def input_chunks(path: Path | str, size: int) -> Iterator[tuple[list[str], list[str]]]:
    """`iter_inputs(path)` in lists of at most `size` (ids, items): bounded memory for any file size."""
    ids: list[str] = []
    items: list[str] = []
    for item_id, item in iter_inputs(path):
        ids.append(item_id)
        items.append(item)
        if len(ids) == size:
            yield ids, items
            ids, items = [], []
    if ids:
        yield ids, items
