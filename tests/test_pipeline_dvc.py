"""A tiny `dvc repro` of the project's own dvc.yaml: one protein dataset, 60 proteins, a few epochs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    bin_dir = str(Path(sys.executable).parent)
    env = os.environ | {
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
    }
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_tiny_dvc_repro(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    shutil.copytree(ROOT / "configs", project / "configs")
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (project / "docs").mkdir()
    pipeline = {
        "datasets": {"arg-binary": {"embedder": "unirep", "split": "mmseqs"}},
        "names": ["arg-binary"],
        "limit": 60,
    }
    (project / "configs" / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    train = yaml.safe_load((project / "configs" / "train.yaml").read_text())
    train["train"]["max_epochs"] = 3
    (project / "configs" / "train.yaml").write_text(yaml.safe_dump(train))

    assert dvc("init", "--no-scm", cwd=project).returncode == 0
    first = dvc("repro", cwd=project)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for split in ("grouped", "random"):
        metrics = json.loads((project / "reports" / f"arg-binary-{split}" / "metrics.json").read_text())
        assert {"ffnn", "baseline"} <= set(metrics)
    assert (project / "dvc.lock").exists()
    assert "arg-binary | grouped | ffnn" in (project / "docs" / "results.md").read_text()

    again = dvc("repro", cwd=project)
    assert again.returncode == 0 and "Running stage" not in again.stdout

    shown = dvc("metrics", "show", cwd=project)
    assert shown.returncode == 0 and "ffnn.macro_f1" in shown.stdout
