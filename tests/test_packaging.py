"""The install files agree with each other, and the default configs and docs reference real things.

pyproject.toml is the one list of requirements: the requirements files are generated from it (`invoke requirements`),
and torch is pinned in one file only, requirements_torch.txt.
"""

import importlib.util
import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
GENERATED = ("requirements.txt", "requirements_dev.txt", "requirements_serve.txt")
TORCH_PIN = ROOT / "requirements_torch.txt"
SELF_REFERENCE = re.compile(r"arginator\[([^\]]+)\]")


def requirement_lines(path: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-")]


def load_tasks():
    spec = importlib.util.spec_from_file_location("arginator_tasks", ROOT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def referenced_extras(extra: str) -> list[str]:
    return [name.strip() for req in EXTRAS[extra] if (m := SELF_REFERENCE.fullmatch(req)) for name in m[1].split(",")]


def torch_version() -> str:
    pins = [line for line in requirement_lines(TORCH_PIN) if line.startswith("torch")]
    assert len(pins) == 1 and re.fullmatch(r"torch==\d+\.\d+\.\d+", pins[0]), pins
    return pins[0].removeprefix("torch==")


def test_requirement_files_are_generated_from_pyproject():
    """Regenerate and compare: a stale file fails here; `invoke requirements` fixes it."""
    generated = load_tasks().requirement_files()
    assert set(generated) == set(GENERATED)
    for name, text in generated.items():
        assert (ROOT / name).read_text() == text, f"{name} is out of date: run `invoke requirements`"


def test_requirements_match_pyproject():
    runtime = PROJECT["dependencies"]
    assert requirement_lines(ROOT / "requirements.txt") == runtime
    assert requirement_lines(ROOT / "requirements_serve.txt") == EXTRAS["serve"]
    dev_file = (ROOT / "requirements_dev.txt").read_text()
    assert "-r requirements.txt" in dev_file.splitlines()
    dev = set(requirement_lines(ROOT / "requirements_dev.txt")) | set(runtime)
    for extra in EXTRAS:  # dev installs everything: every extra, and the dev tools
        assert set(EXTRAS[extra]) - {r for r in EXTRAS[extra] if SELF_REFERENCE.fullmatch(r)} <= dev, extra
    assert not any(SELF_REFERENCE.search(line) for line in requirement_lines(ROOT / "requirements_dev.txt"))
    for name in GENERATED:
        lines = requirement_lines(ROOT / name)
        assert len(lines) == len(set(lines)), name


def test_dev_extra_refers_to_the_other_extras_instead_of_repeating_them():
    others = set(EXTRAS) - {"dev"}
    assert set(referenced_extras("dev")) == others
    dev_only = [req for req in EXTRAS["dev"] if not SELF_REFERENCE.fullmatch(req)]
    assert "import-linter" in {re.split(r"[<>=\[ ]", req)[0] for req in dev_only}
    written_elsewhere = set(PROJECT["dependencies"]).union(*(EXTRAS[extra] for extra in others))
    assert not set(dev_only) & written_elsewhere


def test_serving_requirements_have_no_training_stack():
    names = {re.split(r"[<>=\[ ;]", req)[0].lower() for req in requirement_lines(ROOT / "requirements_serve.txt")}
    assert names and not names & {"torch", "lightning", "wandb", "scikit-learn", "dvc"}


def test_torch_is_pinned_in_one_file():
    version = torch_version()
    assert requirement_lines(TORCH_PIN) == [f"torch=={version}"]  # an exact pin, nothing else installed with it
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    spelled = []
    for name in set(tracked.stdout.split("\0")) - {"", TORCH_PIN.name}:
        path = ROOT / name
        if name.startswith(("reports/", "data/", "models/", "deploy/")) or not path.is_file():
            continue
        try:
            content = path.read_text()
        except UnicodeDecodeError:
            continue
        if re.search(rf"torch\s*==\s*{re.escape(version)}", content):
            spelled.append(name)
    assert not spelled, f"torch=={version} is spelled outside {TORCH_PIN.name}: {sorted(spelled)}"


def test_bootstrap_installs_pinned_torch_before_the_project():
    script = (ROOT / "script" / "bootstrap").read_text()
    torch_at = script.index("-r requirements_torch.txt")
    assert torch_at < script.index('-e ".[dev]"')


def test_readme_top_shows_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## The two commands", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["script/pipeline", "script/test"]
    for command in commands:
        script = (ROOT / command).read_text()
        assert "script/bootstrap" in script and (ROOT / command).stat().st_mode & 0o111
    assert "invoke pipeline" in (ROOT / "script" / "pipeline").read_text()
    assert "invoke test" in (ROOT / "script" / "test").read_text()
    assert re.search(r"^script/test$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)


def test_dockerfiles_use_the_torch_pin_or_no_torch():
    train = (ROOT / "dockerfiles" / "train.dockerfile").read_text()
    torch_at = train.index("-r requirements_torch.txt")
    assert torch_at < train.index("-r requirements.txt") < train.index('".[')
    extras = re.search(r'"\.\[([a-z,]+)\]"', train)[1].split(",")
    assert set(extras) <= set(EXTRAS) - {"dev", "serve"}
    api = (ROOT / "dockerfiles" / "api.dockerfile").read_text()
    assert "-r requirements_serve.txt" in api and "--no-deps ." in api
    assert "torch" not in re.sub(r"#.*", "", api)


def test_invoke_test_runs_the_import_contracts_before_pytest():
    tasks = (ROOT / "tasks.py").read_text()
    body = tasks[tasks.index("def test(") :]
    body = body[: body.index("\n\n\n")]
    assert body.index("lint(c)") < body.index('"lint-imports"') < body.index("python -m pytest")
    contracts = (ROOT / ".importlinter").read_text()
    assert "include_external_packages = True" in contracts
    assert re.search(r"source_modules =\s+arginator\.serving\n", contracts)


def test_readme_commands_exist_as_tasks():
    readme = (ROOT / "README.md").read_text()
    tasks = (ROOT / "tasks.py").read_text()
    for name in re.findall(r"^invoke ([a-z-]+)", readme, flags=re.MULTILINE):
        assert f"def {name.replace('-', '_')}(" in tasks, name


def table_rows(markdown: str, heading: str) -> list[str]:
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def test_readme_results_table_is_the_pipelines():
    """The README shows the table `arginator results` wrote into docs/results.md, not numbers typed by hand."""
    readme = table_rows((ROOT / "README.md").read_text(), "## Results")
    generated = table_rows((ROOT / "docs" / "results.md").read_text(), "# Results")
    assert readme and readme == generated
