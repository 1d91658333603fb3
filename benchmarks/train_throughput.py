"""One training epoch: Lightning (our module and DataModule) against a plain PyTorch loop on the same tensors.

Both sides train the same FFNN (1024 -> 512 -> 256 -> 5, batch norm, dropout) with the same loss, optimiser and batch
iterator over in-memory tensors. Epochs are timed in interleaved pairs (the machine's speed drifts), and the report
gives the median throughput of each side and the median of the per-pair ratios.

Usage: python benchmarks/train_throughput.py [--rows 50000] [--pairs 5] [--out reports/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import lightning as L
import numpy as np
import torch

from arginator.config import ModelConfig, TrainConfig
from arginator.data.datamodule import EmbeddingDataModule, TensorBatches
from arginator.training.model import EmbeddingClassifier
from arginator.training.train import progress_bar

DIM, CLASSES = 1024, 5


class EpochTimer(L.Callback):
    """Wall time of the training epoch itself, without Trainer setup and teardown."""

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.start


def make_module(seed: int) -> EmbeddingClassifier:
    torch.manual_seed(seed)
    return EmbeddingClassifier(
        input_dim=DIM,
        classes=[f"c{i}" for i in range(CLASSES)],
        task="multiclass",
        model_config=ModelConfig().model_dump(),
        train_config=TrainConfig().model_dump(mode="json"),
        class_weights=[1.0] * CLASSES,
    )


def lightning_epoch(x: torch.Tensor, y: torch.Tensor, batch_size: int, progress_bar_on: bool) -> float:
    module = make_module(0)
    datamodule = EmbeddingDataModule(
        {"train": (x.numpy(), y.numpy()), "val": (x[:1].numpy(), y[:1].numpy())}, batch_size
    )
    timer = EpochTimer()
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress_bar_on,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer, progress_bar(len(datamodule.train_dataloader()))] if progress_bar_on else [timer],
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.seconds


def plain_epoch(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    module = make_module(0)
    net, loss_fn = module.net, module.loss_fn
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    net.train()
    start = time.perf_counter()
    for xb, yb in TensorBatches(x, y, batch_size, shuffle=True):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(xb), yb)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(args.rows, DIM)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, CLASSES, size=args.rows))

    plain_epoch(x, y, args.batch_size)  # warm-up: allocator, thread pool, kernels
    lightning_epoch(x, y, args.batch_size, progress_bar_on=False)
    rows: dict[str, list[float]] = {"plain": [], "lightning": [], "lightning_progress_bar": []}
    for pair in range(args.pairs):
        # Alternate the order inside each pair so that drift does not favour one side.
        order = ["plain", "lightning", "lightning_progress_bar"]
        for name in order if pair % 2 == 0 else order[::-1]:
            if name == "plain":
                seconds = plain_epoch(x, y, args.batch_size)
            else:
                seconds = lightning_epoch(x, y, args.batch_size, progress_bar_on=name.endswith("bar"))
            rows[name].append(args.rows / seconds)
        print(
            f"pair {pair + 1}/{args.pairs}: " + ", ".join(f"{k} {v[-1]:,.0f} rows/s" for k, v in rows.items()),
            flush=True,
        )

    ratios = [lit / plain for lit, plain in zip(rows["lightning"], rows["plain"], strict=True)]
    ratios_bar = [lit / plain for lit, plain in zip(rows["lightning_progress_bar"], rows["plain"], strict=True)]
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "rows": args.rows,
        "dim": DIM,
        "batch_size": args.batch_size,
        "pairs": args.pairs,
        "median_rows_per_s": {name: statistics.median(values) for name, values in rows.items()},
        "median_ratio_lightning_vs_plain": statistics.median(ratios),
        "median_ratio_lightning_progress_bar_vs_plain": statistics.median(ratios_bar),
        "ratios": ratios,
        "target": 0.9,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.json").write_text(json.dumps(result, indent=2))
    medians = result["median_rows_per_s"]
    table = "\n".join(
        [
            "# Training throughput: Lightning vs a plain PyTorch loop",
            "",
            f"One epoch of {args.rows:,} x {DIM} float32 rows, batch {args.batch_size}, FFNN {DIM}-512-256-{CLASSES} "
            f"(batch norm, dropout, AdamW), in-memory tensor batches; {args.pairs} interleaved pairs, medians. "
            f"{result['date']}, torch {torch.__version__}, {torch.get_num_threads()} threads.",
            "",
            "| loop | rows/s (median) | ratio to plain (median of pairs) |",
            "|---|---|---|",
            f"| plain PyTorch | {medians['plain']:,.0f} | 1.00 |",
            f"| Lightning | {medians['lightning']:,.0f} | {result['median_ratio_lightning_vs_plain']:.2f} |",
            f"| Lightning + progress bar | {medians['lightning_progress_bar']:,.0f} | "
            f"{result['median_ratio_lightning_progress_bar_vs_plain']:.2f} |",
            "",
            f"Target: Lightning >= {result['target']}x the plain loop. "
            f"Result: {'met' if result['median_ratio_lightning_vs_plain'] >= result['target'] else 'NOT met'}.",
            "",
        ]
    )
    (args.out / "train.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
