"""The images, built and run for real with Podman (or Docker): `invoke docker-build`, then the containers.

Base images cannot be pulled everywhere, so `invoke docker-build` falls back to a local Debian bookworm + Python 3.11
base made with debootstrap (dockerfiles/debian-base.sh). The API container serves a mounted model and must agree
with the in-process Predictor; the training container trains on mounted data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from arginator.serving.predictor import Predictor
from arginator.sources import write_example_dataset
from tests.conftest import free_port, write_linear_onnx

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "dockerfiles").glob("*.dockerfile"))
TAG = "test"
DIM = 16


def test_dockerfiles_pass_hadolint():
    assert {p.name for p in DOCKERFILES} == {"api.dockerfile", "train.dockerfile"}
    result = subprocess.run(
        [Path(sys.executable).parent / "hadolint", *map(str, DOCKERFILES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _engine() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from tasks import container_engine

    engine = container_engine()
    if shutil.which(engine.split()[0]) is None:
        pytest.fail("no container engine: script/bootstrap installs Debian's podman, runc and debootstrap")
    return engine.split()


ENGINE = _engine()
RUN_FLAGS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"] if ENGINE[0] == "podman" else []


def _invoke(*args: str) -> None:
    started = time.perf_counter()
    invoke = Path(sys.executable).parent / "invoke"
    done = subprocess.run([str(invoke), "docker-build", "--tag", TAG, *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"invoke docker-build {' '.join(args)}: {time.perf_counter() - started:.0f} s", file=sys.stderr)


def _container(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*ENGINE, *args], capture_output=True, text=True, check=check, timeout=600)


@pytest.fixture(scope="module")
def api_container(tmp_path_factory):
    """The API image, running with a real ONNX model mounted read-only, on a free port of the host network."""
    _invoke("--only", "api")
    model_dir = tmp_path_factory.mktemp("mounted") / "demo"
    model_dir.mkdir()
    weights = np.random.default_rng(0).normal(size=(DIM, 3)).astype(np.float32)
    write_linear_onnx(model_dir / "model.onnx", weights, "multiclass", ["a", "b", "c"])
    model_dir.chmod(0o755)
    port, name = free_port(), f"arginator-api-{uuid.uuid4().hex[:8]}"
    _container(
        "run", "-d", "--name", name, *RUN_FLAGS, "--network", "host", "-e", f"PORT={port}",
        "-v", f"{model_dir}:/models:ro", f"arginator-api:{TAG}",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the API container never became ready:\n" + _container("logs", name, check=False).stderr)
        yield name, url, model_dir / "model.onnx"
    finally:
        _container("rm", "-f", name, check=False)


def test_api_container_serves_the_predictors_answers(api_container):
    _, url, model = api_container
    rows = np.random.default_rng(1).normal(size=(5, DIM)).astype(np.float32)
    expected = Predictor(model).predict_details(rows)
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/ready").json() == {"status": "ready", "model": "models"}
        answer = client.post("/predict", json=rows.tolist())
        assert answer.status_code == 200
        assert answer.json()["labels"] == expected.labels
        np.testing.assert_allclose(answer.json()["probabilities"], expected.probabilities, atol=1e-6)
        bad = client.post("/predict", json=[[0.0] * (DIM - 1)])
        assert bad.status_code == 400 and f"expected {DIM} values per row" in bad.json()["error"]
        assert client.post("/predict", content=b"{not json").status_code == 400
        assert client.post("/predict", json=rows.tolist()).status_code == 200  # and it keeps serving


def test_api_container_runs_as_non_root_and_its_health_check_passes(api_container):
    name, _, _ = api_container
    assert _container("exec", name, "id", "-u").stdout.strip() == "10001"
    assert _container("exec", name, "python", "-c", "import torch", check=False).returncode != 0, "no torch in it"
    health = _container("healthcheck", "run", name, check=False) if ENGINE[0] == "podman" else None
    if health is not None:
        assert health.returncode == 0, health.stdout + health.stderr
    inspected = _container("image", "inspect", f"arginator-api:{TAG}", "--format", "{{json .Config.Healthcheck}}")
    assert "/ready" in inspected.stdout  # the image carries its health check (Docker format)


def test_training_container_trains_on_mounted_data(tmp_path):
    _invoke("--only", "train")
    data = write_example_dataset(tmp_path / "data", class_sizes={"a": 30, "b": 30, "non": 40}, seed=2)
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o777)  # the container writes as its non-root user
    for path in [tmp_path, data, *data.iterdir()]:
        path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else 0o644)
    done = _container(
        "run", "--rm", *RUN_FLAGS, "--network", "none", "-v", f"{data}:/data:ro", "-v", f"{out}:/out",
        f"arginator-train:{TAG}", "train", "--data", "/data", "--out", "/out/run",
        "--set", "train.max_epochs=3", "--set", "train.progress_bar=false", "--set", "model.hidden_sizes=[32]",
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert (out / "run" / "model.ckpt").is_file() and (out / "run" / "metrics.json").is_file()
    assert "macro_f1" in done.stdout  # the summary table of the evaluation
