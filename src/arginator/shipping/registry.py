"""The model registry: GTO (git tags) over the `artifacts:` of `dvc.yaml`, resolved through DVC.

Registering a version tags the commit that holds a model (`arg-binary@v1.0.0`); promoting it to a stage adds a stage
tag (`arg-binary#prod#1`). Nothing else stores state: the registry is the git history, and the model file at that
commit comes from DVC's cache (or its remote). `name@stage` and `name@vX.Y.Z` resolve to a local copy of that
version's ONNX file (`<cache>/<name>/<version>/model.onnx`), which `arginator predict --model` and `invoke serve`
accept like any path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from arginator.atomic import atomic_path
from arginator.errors import ConfigError

REFERENCE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)@(?P<target>[A-Za-z0-9._-]+)$")
VERSION = re.compile(r"^v\d+\.\d+\.\d+$")
CACHE_VARIABLE = "ARGINATOR_REGISTRY_CACHE"  # where resolved versions are kept (default ~/.cache/arginator/registry)


@dataclass(frozen=True)
class Resolved:
    """A registered model materialised locally."""

    path: Path
    name: str
    version: str
    stage: str | None
    rev: str


def artifacts(repo: Path | str = ".") -> dict[str, dict]:
    """The `artifacts:` declared in the repository's `dvc.yaml` (name -> path, type, desc)."""
    dvc_yaml = Path(repo) / "dvc.yaml"
    try:
        declared = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("artifacts") or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the artifacts of {dvc_yaml}: {exc}") from None
    return dict(declared)


def artifact_name(model: Path | str, repo: Path | str = ".") -> str:
    """The artifact a model path stands for: `deploy/<name>` or its ONNX file, declared in dvc.yaml."""
    declared = artifacts(repo)
    wanted = Path(model)
    for name, spec in declared.items():
        path = Path(spec["path"])
        if wanted in (path, path.parent) or wanted.name == name:
            return name
    raise ConfigError(f"{model} is no artifact of dvc.yaml (declared: {', '.join(sorted(declared)) or 'none'})")


def register(
    model: Path | str, version: str, stage: str | None = None, repo: Path | str = ".", ref: str = "HEAD"
) -> str:
    """Register the model committed at `ref` as `version` and/or promote that version to `stage`; returns the name.

    A version registered already is promoted only (`ref` is then ignored); GTO keeps one version per commit.
    """
    import gto.api

    if not VERSION.match(version):
        raise ConfigError(f"version must look like v1.2.3, not {version!r}")
    name = artifact_name(model, repo)
    tag = subprocess.run(
        ["git", "-C", str(repo), "tag", "--list", f"{name}@{version}"], capture_output=True, text=True, check=False
    )
    exists = bool(tag.stdout.strip())
    if exists and not stage:
        raise ConfigError(f"{name} {version} is registered already; pass --stage to promote it")
    try:
        if not exists:  # an existing version is only promoted
            gto.api.register(str(repo), name, ref, version=version)
        if stage:
            gto.api.assign(str(repo), name, stage, version=version)
    except Exception as exc:  # GTO's own errors (tag exists, not a git repository, ...) are messages for the user
        raise ConfigError(f"registering {name} {version}: {exc}") from None
    return name


def is_reference(text: str) -> bool:
    """True for `name@stage` / `name@vX.Y.Z` that is not an existing path."""
    return bool(REFERENCE.match(text)) and not Path(text).exists()


def _last_promoted(in_stage: list) -> str:
    """The version promoted to the stage last.

    GTO numbers a stage's assignment tags (`name#stage#N`) in order; tags made in the same second have equal
    timestamps, so the number decides.
    """

    def latest(entry) -> int:
        return max(int(a.tag.rsplit("#", 1)[1]) for a in entry.assignments if a.addition)

    return max(in_stage, key=latest).version


def resolve(reference: str, repo: Path | str = ".", cache: Path | str | None = None) -> Resolved:
    """Materialise `name@stage` (the version now in that stage) or `name@vX.Y.Z` from the registry.

    Raises:
        ConfigError: the reference is malformed, or nothing is registered or promoted under it.
    """
    import dvc.api
    import gto.api

    match = REFERENCE.match(reference)
    if not match:
        raise ConfigError(f"a registry reference is name@stage or name@v1.2.3, not {reference!r}")
    name, target = match["name"], match["target"]
    is_version = bool(VERSION.match(target))
    try:
        if is_version:
            version, stage = target, None
        else:
            in_stage = gto.api.find_versions_in_stage(
                str(repo), name, target, assignments_per_version=-1, versions_per_stage=-1
            )
            if not in_stage:
                raise ConfigError(f"no version of {name} is in stage {target!r}")
            version, stage = _last_promoted(in_stage), target
        found = dvc.api.artifacts_show(name, version=version, repo=str(repo))
    except ConfigError:
        raise
    except Exception as exc:  # DVC/GTO errors: unknown artifact or version, not a repository
        raise ConfigError(f"cannot resolve {reference}: {exc}") from None
    default = os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "arginator" / "registry"
    target_path = Path(cache or default) / name / version / Path(found["path"]).name
    if not target_path.exists():
        target_path.parent.mkdir(parents=True, exist_ok=True)
        with (
            dvc.api.open(found["path"], repo=str(repo), rev=found["rev"], mode="rb") as source,
            atomic_path(target_path) as partial,
            open(partial, "wb") as sink,
        ):
            shutil.copyfileobj(source, sink)
    return Resolved(target_path, name, version, stage, found["rev"])
