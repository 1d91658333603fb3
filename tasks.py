"""Invoke tasks: the project's menu (`invoke --list`). Thin wrappers over the `arginator` CLI and the dev tools."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from invoke import Context, task

ROOT = Path(__file__).resolve().parent
EXAMPLE_DIR = "data/example"
EXAMPLE_CONFIG = "configs/data/example.yaml"


def _sets(overrides: list[str] | None) -> str:
    return " ".join(f"--set '{override}'" for override in overrides or [])


@task
def example(c: Context, out: str = EXAMPLE_DIR) -> None:
    """Generate the example embeddings in the seed's per-class HDF5 layout."""
    c.run(f"arginator example --out {out}", pty=False)


@task(iterable=["set_"], help={"set_": "Override, e.g. train.max_epochs=20 (repeatable)."})
def train(
    c: Context,
    data: str = EXAMPLE_DIR,
    task_: str = "multiclass",
    negative: str = "",
    config: str = "",
    set_: list[str] | None = None,
    out: str = "",
) -> None:
    """Train the FFNN and the baseline and evaluate both (arginator train)."""
    command = f"arginator train --data {data} --task {task_}"
    command += f" --negative {negative}" if negative else ""
    command += f" --config {config}" if config else ""
    command += f" --out {out}" if out else ""
    c.run(f"{command} {_sets(set_)}", pty=False)


@task
def evaluate(c: Context, run: str, data: str = "", labels: str = "") -> None:
    """Score a run's FFNN and baseline on its test split, or on --data [--labels] (arginator evaluate)."""
    extra = (f" --data {data}" if data else "") + (f" --labels {labels}" if labels else "")
    c.run(f"arginator evaluate --run {run}{extra}", pty=False)


@task
def pipeline(c: Context) -> None:
    """The main job: `dvc repro`, every bundled dataset from raw data to reports (offline)."""
    c.run("dvc repro", env={"HF_HUB_OFFLINE": "1"}, pty=False)


@task(
    help={
        "dataset": "A bundled dataset (its embeddings and grouped split come from `invoke pipeline`).",
        "trials": "Trials this process runs (default: configs/sweep.yaml's).",
        "storage": "SQLAlchemy URL of the study, e.g. postgresql://user@host/db (default: SQLite in reports/sweeps).",
        "backend": "optuna (offline) or wandb (needs WANDB_API_KEY).",
    }
)
def sweep(c: Context, dataset: str = "arg-binary", trials: int = 0, storage: str = "", backend: str = "optuna") -> None:
    """Hyperparameter sweep of one bundled dataset (arginator sweep): results in reports/sweeps/<dataset>/."""
    command = (
        f"arginator sweep --data data/processed/{dataset}/embeddings.h5"
        f" --split data/processed/{dataset}/split_grouped.csv"
        f" --config configs/model.yaml --config configs/train.yaml --config configs/data/{dataset}.yaml"
        f" --out reports/sweeps/{dataset} --backend {backend}"
    )
    command += f" --trials {trials}" if trials else ""
    command += f" --storage '{storage}'" if storage else ""
    c.run(command, pty=False)


@task(help={"version": "Semantic version, e.g. v1.0.0.", "stage": "Promote it to this stage too (e.g. prod)."})
def register(c: Context, version: str, dataset: str = "arg-binary", stage: str = "") -> None:
    """Register deploy/<dataset> (committed at HEAD) in the git-tag registry, and promote it (arginator register)."""
    command = f"arginator register --model deploy/{dataset} --version {version}"
    c.run(command + (f" --stage {stage}" if stage else ""), pty=False)


@task
def example_run(c: Context) -> None:
    """A quick demo without DVC: generated seed-layout data, multiclass and binary runs with a grouped split."""
    example(c)
    c.run(
        f"arginator train --data {EXAMPLE_DIR} --config {EXAMPLE_CONFIG} --task multiclass "
        "--out models/example-multiclass --overwrite"
    )
    c.run(
        f"arginator train --data {EXAMPLE_DIR} --config {EXAMPLE_CONFIG} --task binary --negative non "
        "--out models/example-binary --overwrite"
    )


@task
def lint(c: Context) -> None:
    """Ruff lint and format check."""
    c.run("ruff check .")
    c.run("ruff format --check .")


@task
def format(c: Context) -> None:
    """Apply ruff's fixes and formatting."""
    c.run("ruff check --fix .")
    c.run("ruff format .")


@task
def test(c: Context) -> None:
    """The test command: the lint, the import contracts (.importlinter), then pytest (its summary is the last line)."""
    lint(c)
    c.run("lint-imports")
    c.run("python -m pytest --cov=arginator --cov-report=term:skip-covered", pty=False)


_GENERATED = "# Generated from pyproject.toml by `invoke requirements`: edit pyproject.toml, then run it.\n"
_TORCH_FIRST = "# Install requirements_torch.txt first (the pinned CPU wheel), or pip may pick a multi-GB CUDA build.\n"


def _expand(extras: dict[str, list[str]], extra: str, project: str) -> list[str]:
    """An extra's requirements, with references to the project's other extras (`project[a,b]`) spelled out."""
    out: list[str] = []
    for requirement in extras[extra]:
        reference = re.fullmatch(rf"{re.escape(project)}\[([^\]]+)\]", requirement.replace(" ", ""))
        if reference:
            for name in reference.group(1).split(","):
                out += _expand(extras, name, project)
        else:
            out.append(requirement)
    return list(dict.fromkeys(out))


def requirement_files(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """The text of requirements.txt, requirements_dev.txt and requirements_serve.txt, from pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras, runtime = project["optional-dependencies"], project["dependencies"]
    files = {
        "requirements.txt": (f"# Runtime dependencies ([project] dependencies).\n{_TORCH_FIRST}", runtime),
        "requirements_dev.txt": (
            f"# The runtime and the `dev` extra, with the extras it refers to spelled out.\n{_TORCH_FIRST}"
            "-r requirements.txt\n",
            [r for r in _expand(extras, "dev", project["name"]) if r not in runtime],  # the rest come with -r
        ),
        "requirements_serve.txt": (
            "# The `serve` extra: the inference service only (the API image). No torch: it runs ONNX models.\n",
            _expand(extras, "serve", project["name"]),
        ),
    }
    return {name: _GENERATED + header + "".join(f"{r}\n" for r in lines) for name, (header, lines) in files.items()}


@task(help={"check": "Write nothing; fail if a file is out of date."})
def requirements(c: Context, check: bool = False) -> None:
    """Regenerate requirements.txt, requirements_dev.txt and requirements_serve.txt from pyproject.toml."""
    files = requirement_files()
    stale = [name for name, text in files.items() if not (ROOT / name).is_file() or (ROOT / name).read_text() != text]
    if check:
        if stale:
            raise SystemExit(f"out of date (run `invoke requirements`): {', '.join(stale)}")
        return
    for name, text in files.items():
        (ROOT / name).write_text(text)
    print(f"regenerated from pyproject.toml: {', '.join(stale) or 'nothing changed'}")


@task
def docs(c: Context, serve: bool = False) -> None:
    """Build the documentation site strictly (warnings are errors), or serve it live."""
    c.run("mkdocs serve" if serve else "mkdocs build --strict", env={"NO_MKDOCS_2_WARNING": "1"})


@task
def bench_train(c: Context, pairs: int = 5) -> None:
    """One epoch, Lightning vs a plain PyTorch loop (50k x 1024, batch 256) -> reports/benchmarks/train.md."""
    c.run(f"python benchmarks/train_throughput.py --pairs {pairs}", pty=False)


@task
def bench_embed(c: Context) -> None:
    """UniRep: packed lanes vs bucketed batches vs stock get_reps -> reports/benchmarks/embed_unirep.md."""
    c.run("python benchmarks/embed_unirep.py", pty=False)


@task
def bench(c: Context, run: str = "models/arg-binary-grouped", deploy: str = "deploy/arg-binary") -> None:
    """Inference: torch vs ORT fp32/int8/shipped, threads 1 and 2, with the GEMM roofline -> reports/benchmarks/."""
    c.run(f"python benchmarks/inference.py --run {run} --deploy {deploy}", pty=False)


@task(
    help={"model": "A path, or a registered name@stage / name@v1.2.3 (default: $ARGINATOR_MODEL or deploy/arg-binary)."}
)
def serve(c: Context, model: str = "", port: int = 8000) -> None:
    """Serve a model with the API (uvicorn, one worker) on http://127.0.0.1:PORT; the web page is at /."""
    model = model or os.environ.get("ARGINATOR_MODEL", "deploy/arg-binary")
    env = {"ARGINATOR_MODEL": model}
    if "@" in model and not Path(model).exists():  # a registry reference: fetch that version, serve it under its name
        found = json.loads(c.run(f"arginator resolve-model --json {model}", hide="out", pty=False).stdout)
        env = {"ARGINATOR_MODEL": found["path"], "ARGINATOR_MODEL_NAME": found["name"]}
        env["ARGINATOR_MODEL_VERSION"] = found["version"]
    c.run(f"uvicorn arginator.serving.api.app:app --host 127.0.0.1 --port {port}", env=env, pty=False)


@task
def bench_api(c: Context, model: str = "deploy/arg-binary", rounds: int = 3, seconds: int = 5) -> None:
    """HTTP: /predict vs the HTTP floor, the in-process Predictor and naive JSON, with wrk -> reports/benchmarks/."""
    c.run(f"python benchmarks/api.py --model {model} --rounds {rounds} --seconds {seconds}", pty=False)


@task
def bench_predict(c: Context, rows: int = 1_000_000) -> None:
    """Batch prediction over a large HDF5 file (1M x 1024 = 4 GB): rows/s and peak RSS -> reports/benchmarks/."""
    c.run(f"python benchmarks/predict_stream.py --rows {rows}", pty=False)


@task
def loadtest(c: Context, model: str = "deploy/arg-binary", seconds: int = 60, connections: int = 32) -> None:
    """A bounded load (wrk, mixed requests) against a real server; fails on any error."""
    c.run(
        f"python -m tests.performancetests.loadtest --model {model} --seconds {seconds} --connections {connections}",
        pty=False,
    )


@task
def fuzz(c: Context, model: str = "deploy/arg-binary", max_examples: int = 100) -> None:
    """Schemathesis against the service's OpenAPI schema; fails on any server error."""
    c.run(f"python -m tests.performancetests.fuzz --model {model} --max-examples {max_examples}", pty=False)


DEFAULT_BASE = "python:3.11-slim"
# Podman as root on hosts with hybrid cgroups needs runc and explicit ulimits; harmless elsewhere.
PODMAN_GLOBAL = "--runtime runc" if shutil.which("runc") else ""
PODMAN_LIMITS = "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024"


def _docker_engine_runs() -> bool:
    """A docker client alone is not enough: its engine must answer."""
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0


def container_engine(engine: str = "") -> str:
    """The engine named, else docker if its engine runs, else podman (with its flags for this kind of host)."""
    name = engine or ("docker" if _docker_engine_runs() else "podman")
    return f"podman {PODMAN_GLOBAL}".strip() if name == "podman" else name


def base_image(c: Context, engine: str) -> str:
    """python:3.11-slim when present or pullable; else a local Debian bookworm base (dockerfiles/debian-base.sh)."""
    if c.run(f"{engine} image inspect {DEFAULT_BASE}", warn=True, hide=True).ok:
        return DEFAULT_BASE
    if c.run(f"{engine} pull {DEFAULT_BASE}", warn=True, hide=True, timeout=300).ok:
        return DEFAULT_BASE
    print(f"{DEFAULT_BASE} cannot be pulled here: building a local Debian base instead")
    name = engine.split()[0]
    return c.run(f"CONTAINER_ENGINE={name} dockerfiles/debian-base.sh", hide="out").stdout.strip()


def build_flags(engine: str) -> str:
    """Build flags for the engine.

    For podman: the host's network and CA bundle (pip in the build), explicit ulimits, and Docker format (OCI images
    drop HEALTHCHECK). The folder of a local torch wheel (PIP_FIND_LINKS) is mounted when there is one.
    """
    flags = ""
    if engine.startswith("podman"):
        flags = f"{PODMAN_LIMITS} --network host --format docker -v /etc/ssl/certs:/etc/ssl/certs:ro"
    links = os.environ.get("PIP_FIND_LINKS", "")
    if links:
        flags += f" --build-arg PIP_FIND_LINKS={links}"
        if Path(links).is_dir():
            flags += f" -v {links}:{links}:ro"
    return flags


@task(
    help={
        "tag": "Image tag (arginator-api:<tag>, arginator-train:<tag>).",
        "model": "A model directory to bake into the API image (default: mounted at run time).",
        "engine": "docker or podman (default: docker if its engine runs, else podman).",
        "base": "Base image (default: python:3.11-slim, or a local Debian base where it cannot be pulled).",
        "only": "api or train (default: both).",
    }
)
def docker_build(
    c: Context, tag: str = "latest", model: str = "", engine: str = "", base: str = "", only: str = ""
) -> None:
    """Build the API and training images with docker or podman."""
    command = container_engine(engine)
    base = base or base_image(c, command)
    flags = f"{build_flags(command)} --build-arg BASE_IMAGE={base}"
    baked = f" --build-arg MODEL_DIR={model}" if model else ""
    if only in ("", "api"):
        c.run(f"{command} build {flags}{baked} -f dockerfiles/api.dockerfile -t arginator-api:{tag} .")
    if only in ("", "train"):
        c.run(f"{command} build {flags} -f dockerfiles/train.dockerfile -t arginator-train:{tag} .")


@task
def bench_fasta(c: Context, proteins: int = 10_000, model: str = "deploy/arg-binary") -> None:
    """`arginator predict` on a FASTA vs embed-then-predict: sequences/s, peak RSS -> reports/benchmarks/."""
    c.run(f"python benchmarks/predict_fasta.py --proteins {proteins} --model {model}", pty=False)


@task
def bench_rows_per_call(c: Context, passes: int = 3) -> None:
    """Predictor rows/s by rows per ONNX Runtime call, every model -> reports/benchmarks/rows_per_call.md."""
    c.run(f"python benchmarks/rows_per_call.py --passes {passes}", pty=False)


@task
def bench_ray(c: Context, rows: int = 1_000_000, repeats: int = 3, linear_repeats: int = 5) -> None:
    """Batch prediction on Ray Data (2 actors, 1 actor) vs one process -> reports/benchmarks/predict_ray*.md.

    Three models: the shipped architecture on 1024-dim input (`predict_ray.md`), the shipped `deploy/arg-binary`
    (`predict_ray_shipped.md`) and a linear one (`predict_ray_linear.md`, quick, so more repeats).
    """
    for model, times in (("trained", repeats), ("shipped", repeats), ("linear", linear_repeats)):
        c.run(f"python benchmarks/predict_ray.py --model {model} --rows {rows} --repeats {times}", pty=False)


@task
def precommit(c: Context) -> None:
    """Run every pre-commit hook on all files (local hooks, works offline)."""
    c.run("pre-commit run --all-files")
