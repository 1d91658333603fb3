"""Shared fixtures: small data in the seed project's exact HDF5 layout, and fast training settings."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

from arginator.sources import write_example_dataset

DIM = 1024
SMALL_CLASSES = {"a": 24, "b": 16, "c": 16, "d": 16, "non": 48}
FAST = [
    "train.max_epochs=4",
    "train.batch_size=32",
    "train.progress_bar=false",
    "train.wandb.mode=disabled",
    "model.hidden_sizes=[64, 32]",
]


def write_class_file(path: Path, vectors: dict[str, np.ndarray]) -> Path:
    """One HDF5 file, one float32 dataset per protein id (as ProtT5 embedding scripts write them)."""
    with h5py.File(path, "w") as handle:
        for protein_id, vector in vectors.items():
            handle.create_dataset(protein_id, data=np.asarray(vector, dtype=np.float32))
    return path


def random_vectors(prefix: str, n: int, dim: int = DIM, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"sp|{prefix}{i:04d}|{prefix.upper()}_ECOLI": rng.normal(size=dim).astype(np.float32) for i in range(n)}


@pytest.fixture(scope="session")
def seed_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five per-class files card_class_{a,b,c,d,non}_embeddings.h5, 1024 dims, ids with '|', plus groups.csv."""
    return write_example_dataset(tmp_path_factory.mktemp("seed_layout"), class_sizes=SMALL_CLASSES, seed=1)


@pytest.fixture
def class_dir(tmp_path: Path) -> Path:
    """A writable copy-style directory with two small valid classes, for tests that add a broken file."""
    directory = tmp_path / "classes"
    directory.mkdir()
    write_class_file(directory / "card_class_a_embeddings.h5", random_vectors("a", 6, seed=1))
    write_class_file(directory / "card_class_non_embeddings.h5", random_vectors("n", 6, seed=2))
    return directory


def write_linear_onnx(
    path: Path,
    weights: np.ndarray,
    task: str,
    classes: list[str],
    thresholds: list[float] | None = None,
    embedder: str = "unirep",
) -> Path:
    """A real ONNX model (x @ W, then softmax or sigmoid) carrying arginator metadata, as `arginator export` writes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from arginator.serving import metadata

    dim, outputs = weights.shape
    activation = "Softmax" if task == "multiclass" else "Sigmoid"
    nodes = [helper.make_node("MatMul", ["embedding", "W"], ["logits"])]
    nodes.append(
        helper.make_node(activation, ["logits"], ["probabilities"], **({"axis": 1} if task == "multiclass" else {}))
    )
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", outputs])],
        [numpy_helper.from_array(weights.astype(np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata.write(model, metadata.build("ffnn", task, classes, dim, thresholds or [], embedder, "test"))
    onnx.save(model, path)
    return path


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A real uvicorn process serving `command` (default: the API app) on a free loopback port."""

    def __init__(
        self, env: dict[str, str], command: list[str] | None = None, port: int | None = None, cwd: Path | None = None
    ) -> None:
        import subprocess
        import sys

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = command or [sys.executable, "-m", "uvicorn", "arginator.serving.api.app:app"]
        argv = [*argv, "--host", "127.0.0.1", "--port", str(self.port)] if command is None else argv
        # The log goes to a file: an unread pipe fills after ~64 KB of access log and then blocks the server.
        import tempfile

        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives as long as the server; closed in stop)
        self.process = subprocess.Popen(
            argv,
            env={**os.environ, "ARGINATOR_THREADS": "1", **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            start_new_session=True,  # its own process group: stop() also ends what it started (e.g. invoke's uvicorn)
        )

    def wait(self, timeout: float = 60, path: str = "/health") -> Server:
        import time
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.output()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"server on {self.url} did not answer within {timeout} s")

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        """Everything the server has logged so far."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> str:
        """Stop the server and its process group; returns its log."""
        import signal

        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except Exception:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        output = self.output()
        self.log.close()
        return output


def headless_chromium(**capabilities: object):
    """Debian's chromium through its chromedriver, headless (Selenium); extra capabilities e.g. browser logs."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("google-chrome") or "/usr/bin/chromium"
    flags = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900")
    for flag in flags:
        options.add_argument(flag)
    for key, value in capabilities.items():
        options.set_capability(key, value)
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))
