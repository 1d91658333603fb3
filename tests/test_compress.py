import json

import numpy as np
import onnx
import pytest
import torch

from arginator.config import load_config
from arginator.serving.metadata import read as read_metadata
from arginator.serving.session import create_session
from arginator.shipping.compress import choose_shipped, compress_run
from arginator.shipping.pruning import narrow, prune_unstructured, sparsity
from arginator.training.runs import load_model
from arginator.training.train import train_run
from tests.conftest import FAST


@pytest.fixture(scope="module")
def compressed(seed_layout, tmp_path_factory):
    run = tmp_path_factory.mktemp("compress") / "run"
    train_run(seed_layout, load_config(overrides=[*FAST, "model.hidden_sizes=[128, 64]"]), run)
    summary = compress_run(run, keep_ratios=(0.5,), sparsities=(0.5, 0.9), fine_tune_epochs=2, embedder="unirep")
    return run, summary


def test_variants_and_their_claims(compressed):
    run, summary = compressed
    variants = summary["variants"]
    assert set(variants) == {
        "fp32",
        "int8",
        "int8-static",
        "prune-l1-0.5",
        "prune-l1-0.9",
        "narrow-0.5",
        "narrow-0.5-int8",
        "torch-int8",
    }
    assert variants["prune-l1-0.5"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert variants["prune-l1-0.9"]["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert variants["int8"]["size_ratio"] > 3.5  # int8 weights: about a quarter of fp32
    assert variants["int8-static"]["size_ratio"] > 3.5
    assert variants["narrow-0.5"]["hidden_sizes"] == [64, 32]
    for row in variants.values():
        assert row["batch1_us_median"] > 0 and row["batch1024_rows_per_s"] > 0 and 0 <= row["agreement_with_fp32"] <= 1
    for name in ("int8", "int8-static", "narrow-0.5-int8"):
        graph = onnx.load(run / "compressed" / "variants" / f"{name}.onnx").graph
        assert any("Integer" in node.op_type or "Quant" in node.op_type for node in graph.node)


def test_static_int8_rows_do_not_depend_on_their_batch(compressed):
    run, _ = compressed
    variants = run / "compressed" / "variants"
    dim = read_metadata(variants / "int8-static.onnx").input_dim
    x = np.random.default_rng(3).standard_normal((2, dim)).astype(np.float32)
    with_outlier = np.concatenate([x[:1], 1000 * x[1:]])

    def first_row(name: str, batch: np.ndarray) -> np.ndarray:
        session = create_session(variants / f"{name}.onnx", cpu_only=True)
        return session.run(None, {session.get_inputs()[0].name: batch})[0][0]

    # Calibrated scales are fixed; dynamic int8 re-derives them from each batch, so an outlier row changes the others.
    for name in ("int8-static", "narrow-0.5-int8", "fp32"):
        np.testing.assert_array_equal(first_row(name, x[:1]), first_row(name, with_outlier))
    assert not np.array_equal(first_row("int8", x[:1]), first_row("int8", with_outlier))
    # Whatever the policy picked, a row's answer is the same alone and beside an outlier.
    shipped = run / "compressed" / "model.shipped.onnx"
    session = create_session(shipped, cpu_only=True)
    name = session.get_inputs()[0].name
    np.testing.assert_array_equal(session.run(None, {name: x[:1]})[0][0], session.run(None, {name: with_outlier})[0][0])


def test_policy_ships_an_eligible_variant(compressed):
    run, summary = compressed
    shipped = summary["variants"][summary["shipped"]]
    assert shipped["val_f1_drop"] <= summary["max_f1_drop"]
    eligible = {
        n: r
        for n, r in summary["variants"].items()
        if r["file"] and r["val_f1_drop"] <= summary["max_f1_drop"] and n != "int8"
    }
    assert not summary["variants"]["int8"]["batch_independent"]
    assert summary["variants"]["int8-static"]["batch_independent"]
    assert shipped["bytes"] == min(r["bytes"] for r in eligible.values())
    shipped_metadata = read_metadata(run / "compressed" / "model.shipped.onnx")
    assert shipped_metadata.classes == ["a", "b", "c", "d", "non"]
    assert shipped_metadata.embedder == "unirep"  # the serving side picks its text/protein embedder from this
    assert json.loads((run / "compressed" / "compression.json").read_text())["shipped"] == summary["shipped"]
    assert f"**{summary['shipped']}**" in (run / "compressed" / "compression.md").read_text()
    assert (run / "compressed" / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"


def test_ship_policy_ignores_speed():
    def row(size, val_f1, drop, speed, file="x.onnx"):
        return {"file": file, "bytes": size, "val_macro_f1": val_f1, "val_f1_drop": drop, "batch1024_rows_per_s": speed}

    rows = {
        "fp32": row(1000, 0.90, 0.0, 100),
        "narrow-0.5-int8": row(260, 0.897, 0.003, 900),  # the fastest, not the smallest
        "int8-static": row(250, 0.896, 0.004, 300),
        "narrow-0.25-int8": row(80, 0.80, 0.10, 2000),  # smallest of all but over the accuracy budget
        "torch-int8": row(10, 0.90, 0.0, 5000, file=None),  # not an ONNX file: never shipped
    }
    assert choose_shipped(rows, max_f1_drop=0.005) == "int8-static"
    for name in rows:  # another machine measures other speeds: the choice stays
        rows[name]["batch1024_rows_per_s"] = 1.0 / rows[name]["batch1024_rows_per_s"]
    assert choose_shipped(rows, max_f1_drop=0.005) == "int8-static"
    rows["narrow-0.5-int8"]["bytes"] = 250  # equal size: the better validation F1 wins, then the name
    assert choose_shipped(rows, max_f1_drop=0.005) == "narrow-0.5-int8"
    assert choose_shipped(rows, max_f1_drop=0.0) == "fp32"
    # Dynamic int8 takes its activation scales from each batch: never shipped, however small and accurate, whether
    # or not its row carries the flag.
    rows["int8"] = row(100, 0.90, 0.0, 900)
    assert choose_shipped(rows, max_f1_drop=0.005) == "narrow-0.5-int8"
    rows["int8"]["batch_independent"] = False
    assert choose_shipped(rows, max_f1_drop=0.005) == "narrow-0.5-int8"


def test_narrowing_keeps_the_strongest_neurons(compressed):
    run, _ = compressed
    module, _ = load_model(run / "model.ckpt")
    smaller = narrow(module, 0.25)
    assert smaller.hparams["model_config"]["hidden_sizes"] == [32, 16]
    old_first, new_first = module.net.layers[0], smaller.net.layers[0]
    norms = old_first.weight.norm(dim=1)
    strongest = torch.topk(norms, 32).indices.sort().values
    torch.testing.assert_close(new_first.weight, old_first.weight[strongest])  # the 32 largest-norm neurons, in order
    torch.testing.assert_close(new_first.bias, old_first.bias[strongest])
    assert norms[strongest].min() >= norms[torch.topk(norms, 96, largest=False).indices].max()
    second = smaller.net.layers[[i for i, m in enumerate(smaller.net.layers) if isinstance(m, torch.nn.Linear)][1]]
    assert second.in_features == 32  # the next layer reads exactly the kept neurons
    x = torch.randn(4, 1024)
    assert smaller.eval()(x).shape == module.eval()(x).shape
    pruned = prune_unstructured(module, 0.8)
    assert sparsity(pruned.net) == pytest.approx(0.8, abs=0.01) and sparsity(module.net) < 0.01
    assert not any(name.endswith("_orig") for name in pruned.net.state_dict())  # pruning made permanent
    np.testing.assert_array_equal(module.net.input_mean.numpy(), smaller.net.input_mean.numpy())
