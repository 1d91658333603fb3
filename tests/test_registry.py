"""The model registry: two versions registered with GTO, one promoted; predict and the API load the promoted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from arginator.errors import ConfigError
from arginator.serving.predictor import Predictor
from arginator.shipping.registry import register, resolve
from tests.conftest import Server, free_port, write_linear_onnx

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def registry_repo(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A git + DVC repository with two committed versions of deploy/arg-binary/model.onnx (DVC-tracked)."""
    repo = tmp_path / "repo"
    (repo / "deploy" / "arg-binary").mkdir(parents=True)
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.email", "ci@example.org"], repo)
    run(["git", "config", "user.name", "ci"], repo)
    run([sys.executable, "-m", "dvc", "init", "-q"], repo)
    artifacts = {"arg-binary": {"path": "deploy/arg-binary/model.onnx", "type": "model", "desc": "test model"}}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"artifacts": artifacts}))
    rng = np.random.default_rng(0)
    weights = {version: rng.normal(size=(8, 2)) for version in ("v1.0.0", "v2.0.0")}
    for version, w in weights.items():
        write_linear_onnx(repo / "deploy" / "arg-binary" / "model.onnx", w, "multiclass", ["non", "arg"])
        run([sys.executable, "-m", "dvc", "add", "-q", "deploy/arg-binary/model.onnx"], repo)
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", f"model {version}"], repo)
    return repo, weights


def test_the_promoted_version_is_what_predict_and_the_api_load(registry_repo, tmp_path, monkeypatch):
    repo, weights = registry_repo
    cli = [sys.executable, "-m", "arginator.cli"]
    run([*cli, "register", "--model", "deploy/arg-binary", "--version", "v1.0.0", "--ref", "HEAD~1"], repo)
    run([*cli, "register", "--model", "deploy/arg-binary", "--version", "v2.0.0", "--stage", "prod"], repo)
    monkeypatch.setenv("ARGINATOR_REGISTRY_CACHE", str(tmp_path / "cache"))
    assert resolve("arg-binary@prod", repo).version == "v2.0.0"
    # promote the older version: prod now points at v1.0.0, whose weights differ from the working copy (v2)
    assert register(repo / "deploy" / "arg-binary", "v1.0.0", stage="prod", repo=repo) == "arg-binary"
    resolved = resolve("arg-binary@prod", repo)
    assert (resolved.version, resolved.stage) == ("v1.0.0", "prod")
    x = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    logits = x @ weights["v1.0.0"]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(Predictor(resolved.path).predict_proba(x), expected, atol=1e-5)
    assert not np.allclose(Predictor(repo / "deploy" / "arg-binary").predict_proba(x), expected, atol=1e-3)

    # arginator predict --model name@stage, in the repository
    np.save(tmp_path / "x.npy", x)
    run(
        [*cli, "predict", str(tmp_path / "x.npy"), "--model", "arg-binary@prod", "--out", str(tmp_path / "p.csv")], repo
    )
    # invoke serve with ARGINATOR_MODEL=name@stage answers /ready with the promoted version
    env = {"ARGINATOR_MODEL": "arg-binary@prod", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    port = free_port()
    command = [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "serve", "--port", str(port)]
    server = Server(env, command, port=port, cwd=repo)
    try:
        server.wait(timeout=120)
        with urllib.request.urlopen(server.url + "/ready", timeout=10) as response:
            ready = json.loads(response.read())
        assert ready == {"status": "ready", "model": "arg-binary", "version": "v1.0.0"}
    finally:
        server.stop()


def test_unknown_stage_and_bad_versions_are_clear_errors(registry_repo):
    repo, _ = registry_repo
    register(repo / "deploy" / "arg-binary", "v1.0.0", repo=repo, ref="HEAD")
    with pytest.raises(ConfigError, match="no version of arg-binary is in stage 'staging'"):
        resolve("arg-binary@staging", repo)
    with pytest.raises(ConfigError, match=r"v1\.2\.3"):
        register(repo / "deploy" / "arg-binary", "1.0", repo=repo)
    with pytest.raises(ConfigError, match=r"no artifact of dvc\.yaml"):
        register(repo / "deploy" / "other", "v1.0.1", repo=repo)
    with pytest.raises(ConfigError, match="registered already; pass --stage"):
        register(repo / "deploy" / "arg-binary", "v1.0.0", repo=repo)
    with pytest.raises(ConfigError, match=r"registering arg-binary v1\.1\.0"):
        register(repo / "deploy" / "arg-binary", "v1.1.0", repo=repo)  # GTO: one version per commit
