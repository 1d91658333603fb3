"""The install files agree with each other, and the default configs and docs reference real things."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def requirement_lines(path: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-r")]


def test_requirements_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert requirement_lines(ROOT / "requirements.txt") == project["dependencies"]
    assert requirement_lines(ROOT / "requirements_dev.txt") == project["optional-dependencies"]["dev"]
    extras = project["optional-dependencies"]
    for extra in ("tracking", "parquet", "protein", "text", "pipeline", "onnx", "serve"):
        assert set(extras[extra]) <= set(extras["dev"]) | set(project["dependencies"]), extra
    assert requirement_lines(ROOT / "requirements_serve.txt") == extras["serve"]
    assert not any(line.startswith(("torch", "lightning")) for line in extras["serve"])


def test_ci_installs_pinned_torch_before_the_project():
    script = (ROOT / ".ci" / "run").read_text()
    torch_at = script.index("torch==2.13.0")
    assert torch_at < script.index('-e ".[dev]"')
    assert "invoke test" in script


def test_readme_commands_exist_as_tasks():
    readme = (ROOT / "README.md").read_text()
    tasks = (ROOT / "tasks.py").read_text()
    for name in re.findall(r"^invoke ([a-z-]+)", readme, flags=re.MULTILINE):
        assert f"def {name.replace('-', '_')}(" in tasks, name
