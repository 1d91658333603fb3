# The inference service: ONNX Runtime + FastAPI only (no torch), in a virtual environment. Build from the repo root:
#   docker build -f dockerfiles/api.dockerfile -t arginator-api .          (or `invoke docker-build`, docker or podman)
# Serve a model mounted at run time:
#   docker run -p 8000:8000 -v "$PWD/deploy/arg-binary:/models:ro" arginator-api
# or bake one in: docker build -f dockerfiles/api.dockerfile --build-arg MODEL_DIR=deploy/arg-binary -t arginator-api .
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
    ARGINATOR_MODEL=/models \
    PORT=8000

# A venv works the same on python:3.11-slim and on Debian's own Python (which refuses system-wide pip installs).
RUN python3 -m venv /opt/venv
WORKDIR /app
# The `serve` extra (requirements_serve.txt, generated from pyproject.toml): no torch, so no requirements_torch.txt here.
COPY requirements_serve.txt .
RUN pip install --no-cache-dir -r requirements_serve.txt
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# --no-deps: the serving requirements above are all the service imports; the training stack stays out of the image.
RUN pip install --no-cache-dir --no-deps . \
    && useradd --create-home --uid 10001 arginator

ARG MODEL_DIR=dockerfiles/no-model
COPY --chown=arginator ${MODEL_DIR} /models

USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/ready', timeout=2).status != 200)"]
# A shell form only to read $PORT; exec hands PID 1 to uvicorn, so stop signals reach it.
CMD ["sh", "-c", "exec uvicorn arginator.serving.api.app:app --host 0.0.0.0 --port \"$PORT\" --no-access-log"]
