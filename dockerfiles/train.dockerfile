# Training and the DVC pipeline (CPU). Build from the repository root:
#   docker build -f dockerfiles/train.dockerfile -t arginator-train .
#   docker run -v "$PWD/models:/app/models" arginator-train train --data /data/embeddings --out models/run
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WANDB_MODE=offline \
    HF_HUB_OFFLINE=1 \
    MPLBACKEND=Agg

# MMseqs2 gives the homology-aware splits; git is needed by DVC. Unpinned on purpose: the slim base pins the Debian
# release, and pinning package versions would break the build at each security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends mmseqs2 git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
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
