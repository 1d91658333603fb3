# The inference service: ONNX Runtime + FastAPI only (no torch). Build from the repository root:
#   docker build -f dockerfiles/api.dockerfile -t arginator-api .
# Serve a model mounted at run time:
#   docker run -p 8000:8000 -v "$PWD/deploy/arg-binary:/models:ro" arginator-api
# or bake one in: docker build -f dockerfiles/api.dockerfile --build-arg MODEL_DIR=deploy/arg-binary -t arginator-api .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ARGINATOR_MODEL=/models

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
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2).status != 200)"]
CMD ["uvicorn", "arginator.serving.api.app:app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]
