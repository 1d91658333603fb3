"""The Dockerfiles: linted with hadolint, and the API image's install steps and CMD run for real in a fresh venv.

No Docker engine runs here, so the image's contract is tested piece by piece: the same requirement file, the same
`pip install --no-deps .`, the exact CMD (with a free port), and no torch anywhere in that environment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np

from tests.conftest import Server, free_port, write_linear_onnx

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "dockerfiles").glob("*.dockerfile"))


def test_dockerfiles_pass_hadolint():
    assert {p.name for p in DOCKERFILES} == {"api.dockerfile", "train.dockerfile"}
    result = subprocess.run(
        [Path(sys.executable).parent / "hadolint", *map(str, DOCKERFILES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_api_image_is_slim_non_root_and_checks_health():
    text = (ROOT / "dockerfiles" / "api.dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.MULTILINE)
    assert re.search(r"^USER 10001$", text, re.MULTILINE) and "HEALTHCHECK" in text
    requirements = [
        line for line in (ROOT / "requirements_serve.txt").read_text().splitlines() if not line.startswith("#")
    ]
    assert requirements and not any(line.startswith(("torch", "lightning")) for line in requirements)
    assert "-r requirements_serve.txt" in text and "--no-deps ." in text


def image_cmd() -> list[str]:
    text = (ROOT / "dockerfiles" / "api.dockerfile").read_text()
    return json.loads(re.search(r"^CMD (\[.*\])$", text, re.MULTILINE).group(1))


def test_api_cmd_serves_from_a_serving_only_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(ROOT / "requirements_serve.txt")], check=True)
    subprocess.run([*pip, "--no-deps", str(ROOT)], check=True, cwd=tmp_path)
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True, check=False)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr

    weights = np.random.default_rng(0).normal(size=(8, 1)).astype(np.float32)
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    write_linear_onnx(model_dir / "model.onnx", weights, "binary", ["neg", "pos"], [0.5])
    command = image_cmd()
    port = free_port()
    command[command.index("--port") + 1] = str(port)  # the image's command, on a free port
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "ARGINATOR_MODEL": str(model_dir)}
    server = Server(env, command=command, port=port).wait()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/ready").json()["model"] == "models"
            result = client.post("/predict", json=[[0.1] * 8, [-0.1] * 8]).json()
            assert result["classes"] == ["neg", "pos"] and len(result["labels"]) == 2
            assert client.post("/predict", json=[[0.1] * 7]).status_code == 400
    finally:
        server.stop()
