"""A tiny `dvc repro` of the project's own dvc.yaml: one protein dataset, 60 proteins, a few epochs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
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
        "cv_folds": 2,
    }
    (project / "configs" / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    # The novelty checks read another embedder's vectors (MiniLM, from bbc-news); a small stand-in file here.
    other = project / "data" / "processed" / "bbc-news" / "embeddings.h5"
    other.parent.mkdir(parents=True)
    with h5py.File(other, "w") as handle:
        for i, vector in enumerate(np.random.default_rng(0).normal(0, 0.05, (20, 384)).astype(np.float32)):
            handle.create_dataset(f"text{i}", data=vector)
    train = yaml.safe_load((project / "configs" / "train.yaml").read_text())
    train["train"]["max_epochs"] = 3
    (project / "configs" / "train.yaml").write_text(yaml.safe_dump(train))

    assert dvc("init", "--no-scm", cwd=project).returncode == 0
    first = dvc("repro", cwd=project)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    metrics = json.loads((project / "reports" / "runs" / "arg-binary-grouped" / "metrics.json").read_text())
    assert {"ffnn", "baseline"} <= set(metrics)
    cv = json.loads((project / "reports" / "cv" / "arg-binary" / "cv.json").read_text())
    assert {"grouped", "random"} <= set(cv) and len(cv["random"]["folds"]) == 2
    point = cv["grouped"]["summary"]["ffnn"]["at_recall_target"]
    # 60 rows hold arg and at least one kind of negative (which kinds depends on the sample)
    labels = set(point["positive_rate_by_label"])
    assert point["recall_target"] == 0.9 and "arg" in labels and labels & {"background", "virulence"}
    card = (project / "deploy" / "arg-binary" / "model_card.md").read_text()
    assert card == (project / "docs" / "model-cards" / "arg-binary.md").read_text()
    grouped_f1 = cv["grouped"]["summary"]["ffnn"]["macro_f1"]
    assert f"| grouped | ffnn | {grouped_f1['mean']:.3f} ± {grouped_f1['sd']:.3f} |" in card  # from cv.json
    assert "## Where it must not be trusted" in card and "AMRFinderPlus" in card
    assert (project / "dvc.lock").exists()
    assert "arg-binary | grouped | ffnn" in (project / "docs" / "results.md").read_text()

    again = dvc("repro", cwd=project)
    assert again.returncode == 0 and "Running stage" not in again.stdout

    shown = dvc("metrics", "show", cwd=project)
    assert shown.returncode == 0 and "ffnn.macro_f1" in shown.stdout


# The module each stage's command runs; the stage must depend on every project module that one imports.
STAGE_ENTRY = {
    "background": "arginator.sources",
    "prepare": "arginator.sources",
    "embed": "arginator.embed",
    "split": "arginator.data.cluster",
    "train": "arginator.training.train",
    "evaluate": "arginator.training.evaluate",
    "export": "arginator.shipping.export",
    "compress": "arginator.shipping.compress",
    "results": "arginator.training.results",
    "cv": "arginator.training.crossval",
    "model_card": "arginator.shipping.model_card",
}
# Not outputs-relevant: the package root holds only the version string, errors only exception classes, the CLI only
# parses options (its defaults are spelled out in dvc.yaml's commands), and cores only how work is spread (results are
# tested to be the same on any number of workers).
NOT_DEPENDENCIES = {"arginator", "arginator.errors", "arginator.cli", "arginator.cores"}


def module_file(module: str) -> str:
    path = Path("src", *module.split("."))
    return str(path / "__init__.py") if (ROOT / path).is_dir() else str(path.with_suffix(".py"))


def test_every_stage_depends_on_the_code_it_runs():
    import grimp
    from dvc.repo import Repo

    graph = grimp.build_graph("arginator")
    stages = Repo(str(ROOT)).index.stages
    assert {stage.addressing.split("@")[0] for stage in stages} == set(STAGE_ENTRY)
    for stage in stages:
        entry = STAGE_ENTRY[stage.addressing.split("@")[0]]
        deps = [str(Path(dep.def_path)) for dep in stage.deps]
        needed = ({entry} | graph.find_upstream_modules(entry)) - NOT_DEPENDENCIES
        missing = [module_file(m) for m in sorted(needed) if not any(module_file(m).startswith(dep) for dep in deps)]
        assert not missing, f"{stage.addressing} does not depend on {missing}"


def test_train_follows_its_dataset_config_and_results_ignore_benchmarks():
    from dvc.repo import Repo

    for stage in Repo(str(ROOT)).index.stages:
        deps = {str(Path(dep.def_path)) for dep in stage.deps}
        if stage.addressing.startswith("train@"):
            dataset = stage.addressing.removeprefix("train@").rsplit("-", 1)[0]
            assert f"configs/data/{dataset}.yaml" in deps
        if stage.addressing == "results":
            assert "reports" not in deps and not any(dep.startswith("reports/benchmarks") for dep in deps)
