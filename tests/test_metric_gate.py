"""The train workflow's metric gate (.ci/metric_gate.py), on a real git repository with two commits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GATE = Path(__file__).resolve().parents[1] / ".ci" / "metric_gate.py"


def _cv(folds: list[float]) -> dict:
    mean = sum(folds) / len(folds)
    sd = (sum((f - mean) ** 2 for f in folds) / (len(folds) - 1)) ** 0.5
    return {
        "grouped": {
            "folds": [{"ffnn": {"macro_f1": f}} for f in folds],
            "summary": {"ffnn": {"macro_f1": {"mean": mean, "sd": sd, "n": len(folds)}}},
        }
    }


def _commit(repo: Path, dropout: float, scores: dict[str, list[float]], message: str) -> None:
    (repo / "configs").mkdir(exist_ok=True)
    (repo / "configs" / "model.yaml").write_text(f"model:\n  dropout: {dropout}\n")
    for dataset, folds in scores.items():
        path = repo / "reports" / "cv" / dataset / "cv.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_cv(folds)))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], cwd=repo, check=True)


def _gate(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GATE), *args], cwd=repo, capture_output=True, text=True)


def test_gate_passes_inside_the_spread_and_fails_beyond_it(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    base = {"a": [0.80, 0.85, 0.75, 0.82, 0.78], "b": [0.60, 0.62, 0.61, 0.59, 0.58]}  # sd 0.038 and 0.016
    _commit(repo, 0.2, base, "defaults")
    _commit(repo, 0.3, {"a": [0.79, 0.83, 0.74, 0.80, 0.77], "b": [0.61, 0.63, 0.62, 0.60, 0.59]}, "dropout 0.3")
    _commit(repo, 0.5, {"a": [0.70, 0.74, 0.66, 0.71, 0.69], "b": [0.61, 0.63, 0.62, 0.60, 0.59]}, "dropout 0.5")

    small = _gate(repo, "--base", "HEAD~2", "--head", "HEAD~1", "--out", str(tmp_path / "small.md"))
    assert small.returncode == 0, small.stdout + small.stderr
    report = (tmp_path / "small.md").read_text()
    assert "| a | 0.800 ± 0.038 | 0.786 ± 0.034 | -0.014 | within the spread |" in report
    assert "| b |" in report and "better" in report

    large = _gate(repo, "--base", "HEAD~2", "--head", "HEAD", "--out", str(tmp_path / "large.md"))
    assert large.returncode == 1
    assert "| a | 0.800 ± 0.038 | 0.700 ± 0.029 | -0.100 | **regression**" in (tmp_path / "large.md").read_text()

    # The working tree is the default head; the reverse direction (an improvement) passes.
    subprocess.run(["git", "checkout", "-q", "HEAD~2"], cwd=repo, check=True)
    assert _gate(repo, "--base", "main").returncode == 0


def test_gate_refuses_to_judge_without_results(tmp_path):
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=tmp_path, check=True)
    (tmp_path / "x").write_text("x")
    subprocess.run(["git", "add", "x"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], cwd=tmp_path, check=True)
    done = _gate(tmp_path, "--base", "main")
    assert done.returncode == 2 and "no reports/cv" in done.stderr
    assert _gate(tmp_path, "--base", "no-such-branch").returncode == 2


def test_plot_diff_renders_dvc_plots_json_as_images(tmp_path):
    """`.ci/plot_diff.py` on the shape `dvc plots diff --json` prints (vega-lite spec, y in the first layer)."""
    rows = [
        {"model": model, "class": "x", "recall": str(r), "precision": str(1 - r / 2), "rev": rev}
        for rev in ("workspace", "main")
        for model in ("ffnn", "baseline")
        for r in (0.0, 0.5, 1.0)
    ]
    spec = {
        "data": {"values": rows},
        "encoding": {"x": {"field": "recall"}, "color": {"field": "rev"}},
        "layer": [{"layer": [{"mark": "line"}], "encoding": {"y": {"field": "precision"}}}],
    }
    payload = json.dumps({"data": {"reports/runs/a/pr_curves.csv": [{"type": "vega", "content": spec}]}})
    script = GATE.with_name("plot_diff.py")
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)], input=payload, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    image = tmp_path / "reports_runs_a_pr_curves.png"
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 5000
    empty = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "e")], input='{"data": {}}', text=True)
    assert empty.returncode == 1, "no plot at all is an error, not an empty comment"
