"""The W&B model artifact of a training run, read back from the offline run's own record file."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from base64 import b64encode
from pathlib import Path

from wandb.proto import wandb_internal_pb2

from arginator.serving import metadata
from tests.conftest import FAST

BLOCK, HEADER = 32768, 7


def wandb_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every record of a `.wandb` file (W&B's LevelDB-style log: 32 KiB blocks of chunked protobuf records)."""
    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path} is not a W&B record file"
    records, pending, position = [], b"", HEADER
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        if left < HEADER:  # a block's tail too short for a chunk header is padding
            position += left
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        if kind == 0:
            break
        pending += data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_train_logs_checkpoint_onnx_and_figures_as_an_offline_artifact(seed_layout, tmp_path):
    run = tmp_path / "run"
    overrides = [o for o in FAST if not o.startswith("train.wandb")] + ["train.wandb.mode=offline"]
    env = os.environ | {"WANDB_MODE": "offline", "WANDB_DATA_DIR": str(tmp_path / "wandb-data")}
    env.pop("WANDB_API_KEY", None)
    command = [sys.executable, "-m", "arginator.cli", "train", "--data", str(seed_layout), "--out", str(run)]
    command += [arg for override in overrides for arg in ("--set", override)] + ["--embedder", "unirep"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "logged W&B artifact model-run" in done.stderr

    offline = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1, "one offline W&B run, kept for `wandb sync`"
    records = wandb_records(offline[0])
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert [(a.name, a.type) for a in artifacts] == [("model-run", "model")]
    files = {entry.path: entry for entry in artifacts[0].manifest.contents}
    assert {"model.ckpt", "model.onnx", "baseline.json", "config.yaml", "run.json"} <= set(files)
    assert {"figures/confusion_matrix.png", "figures/learning_curves.png", "figures/reliability.png"} <= set(files)
    # The staged copies that `wandb sync` uploads are there and are the files the run wrote.
    for name in ("model.ckpt", "baseline.json"):
        staged = Path(files[name].local_path)
        assert staged.read_bytes() == (run / name).read_bytes()
        assert files[name].digest == b64encode(hashlib.md5(staged.read_bytes()).digest()).decode()
    exported = metadata.read(files["model.onnx"].local_path)  # a servable model, as `arginator export` writes
    assert exported.embedder == "unirep" and exported.classes == ["a", "b", "c", "d", "non"]
    # The same run carries the configuration and the per-epoch metrics.
    history = [r.history for r in records if r.WhichOneof("record_type") == "history"]
    keys = {item.key or "/".join(item.nested_key) for h in history for item in h.item}
    assert {"val_macro_f1", "train_loss", "epoch"} <= keys
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
    assert config["model"]["hidden_sizes"] == [64, 32] and config["train"]["max_epochs"] == 4
