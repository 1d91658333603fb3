# Training and the DVC pipeline (CPU), in a virtual environment. Build from the repository root:
#   docker build -f dockerfiles/train.dockerfile -t arginator-train .       (or `invoke docker-build`, docker or podman)
#   docker run -v "$PWD/models:/app/models" arginator-train train --data /data/embeddings --out models/run
# Where no registry is reachable, build on a local Debian base: --build-arg BASE_IMAGE=$(dockerfiles/debian-base.sh)
ARG BASE_IMAGE=python:3.11-slim
# hadolint ignore=DL3006
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    WANDB_MODE=offline \
    HF_HUB_OFFLINE=1 \
    MPLBACKEND=Agg

# MMseqs2 gives the homology-aware splits; git is needed by DVC. Unpinned on purpose: the base pins the Debian
# release, and pinning package versions would break the build at each security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends mmseqs2 git \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
WORKDIR /app
# Where the pinned CPU torch wheel lies when the index has CUDA builds only (a folder mounted into the build, or an
# index URL); empty: the configured index.
ARG PIP_FIND_LINKS=""
# torch first, from its one pin (requirements_torch.txt, the CPU wheel): an unpinned torch may resolve to a multi-GB
# CUDA build. The same file then constrains every later install, so nothing moves torch off the pin.
COPY requirements_torch.txt ./
RUN pip install --no-cache-dir -r requirements_torch.txt
COPY requirements.txt ./
RUN pip install --no-cache-dir -c requirements_torch.txt -r requirements.txt
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# The project itself with its extras; their versions are bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir -c requirements_torch.txt ".[tracking,parquet,protein,text,pipeline,onnx]" \
    && useradd --create-home --uid 10001 arginator
COPY --chown=arginator configs ./configs
COPY --chown=arginator dvc.yaml dvc.lock ./

USER 10001
HEALTHCHECK NONE
ENTRYPOINT ["arginator"]
CMD ["--help"]
