"""The HTTP service: a thin FastAPI shell around the `Predictor` (ONNX Runtime), strict about its input.

Routes:
- `GET /health` (the process is up), `GET /ready` (the model is loaded), `GET /metadata`, `GET /metrics` (Prometheus);
- `POST /predict`: JSON (one vector, a list of vectors, or `{"embeddings": [...], "ids": [...]}`) parsed with orjson,
  or `application/octet-stream` raw little-endian float32 rows (the row count comes from the length);
- `POST /predict/text`: `{"texts": [...]}`, when the model was trained on MiniLM text embeddings and the text
  embedder is installed (`arginator[text]`);
- the Open Inference Protocol v2 REST routes (`/v2/health/ready`, `/v2/models/{name}`, `/v2/models/{name}/infer`,
  including the binary tensor extension), so KServe/Triton clients work unchanged;
- `GET /`: a small web page to try the model.

Every bad input is answered with a 4xx and `{"error": "..."}` saying what was wrong; the server keeps serving.
Settings come from `ARGINATOR_*` environment variables (see `Settings`). Run: `uvicorn arginator.serving.api.app:app`.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from arginator import __version__
from arginator.errors import InvalidInput, ModelLoadError
from arginator.serving.predictor import Prediction, Predictor

log = logging.getLogger(__name__)
# Routes that stay open when an API key is set: probes and the page that asks for the key.
OPEN_PATHS = {"/", "/health", "/ready", "/v2/health/live", "/v2/health/ready", "/metrics"}
# Above this many rows, inference runs in a worker thread (ONNX Runtime releases the GIL), so the event loop keeps
# accepting requests; below it the thread hop would cost more than the model itself.
THREAD_ROWS = 256


class Settings(BaseSettings):
    """Service settings, read from `ARGINATOR_<NAME>` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ARGINATOR_", protected_namespaces=())

    model: Path = Field(
        Path("/models"), description="An .onnx file or a directory holding model.shipped.onnx / model.onnx"
    )
    model_name: str | None = Field(None, description="Name in /metadata and the v2 routes (default: from the path)")
    threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads (0: all cores)")
    min_confidence: float = Field(0.5, ge=0, le=1, description="Rows below this confidence are flagged abstained")
    max_rows: int = Field(4096, gt=0, description="Most rows in one request")
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0, description="Largest request body")
    api_key: str | None = Field(None, description="When set, required as X-API-Key (or Bearer) on model routes")
    enable_text: bool = Field(True, description="Serve /predict/text when the model's embedder is installed")


class ApiError(Exception):
    """A request the service refuses: HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class TextRequest(BaseModel):
    """Texts to embed and classify."""

    texts: list[str] = Field(min_length=1, description="One or more texts")


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _columns(prediction: Prediction, model_name: str, ids: list[str] | None) -> dict[str, Any]:
    """Column-oriented response: cheap to build and parse for large batches."""
    body: dict[str, Any] = {
        "model": model_name,
        "classes": prediction.classes,
        "labels": prediction.labels,
        "confidence": prediction.confidence.astype(np.float32),
        "abstained": prediction.abstained,
        "probabilities": np.ascontiguousarray(prediction.probabilities, dtype=np.float32),
    }
    if ids is not None:
        body["ids"] = ids
    return body


class Service:
    """The state behind the routes: settings, the loaded Predictor (or why it is not loaded), metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.predictor: Predictor | None = None
        self.load_error: str | None = None
        self.embedder: Any = None
        self.registry = CollectorRegistry()
        self.requests = Counter("arginator_requests", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram(
            "arginator_request_seconds",
            "Request latency",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=self.registry,
        )
        self.rows = Counter("arginator_predicted_rows", "Rows predicted", registry=self.registry)
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}

    def record(self, route: str, status: int, seconds: float) -> None:
        """Count a request and its latency (label lookups cached: they cost more than the increments)."""
        series = self._series.get((route, status))
        if series is None:
            series = self._series[(route, status)] = (
                self.requests.labels(route, str(status)),
                self.latency.labels(route),
            )
        series[0].inc()
        series[1].observe(seconds)

    def load(self) -> None:
        """Load the model (and the text embedder when it applies); a failure is kept for /ready to report."""
        s = self.settings
        try:
            self.predictor = Predictor(s.model, threads=s.threads, min_confidence=s.min_confidence, name=s.model_name)
        except ModelLoadError as exc:
            self.load_error = str(exc)
            log.error("model not loaded: %s", exc)
            return
        if s.enable_text and self.predictor.info.embedder == "minilm":
            try:
                from arginator.embed import SentenceEmbedder

                self.embedder = SentenceEmbedder()
            except ImportError:
                log.info("text embedder not installed: /predict/text is off (pip install 'arginator[text]')")

    def ready_predictor(self) -> Predictor:
        """The loaded Predictor, or a 503 saying why there is none."""
        if self.predictor is None:
            raise ApiError(503, f"model not loaded: {self.load_error or 'still starting'}")
        return self.predictor

    def check_name(self, name: str) -> Predictor:
        """The Predictor if `name` is the served model's name, else a 404."""
        predictor = self.ready_predictor()
        if name != predictor.info.name:
            raise ApiError(404, f"unknown model '{name}'; this server serves '{predictor.info.name}'")
        return predictor

    def check_rows(self, rows: int) -> None:
        """A 413 when a request carries more rows than allowed."""
        if rows > self.settings.max_rows:
            raise ApiError(413, f"{rows} rows exceed the limit of {self.settings.max_rows} rows per request")

    async def run(self, predictor: Predictor, x: Any) -> Prediction:
        """Predict, in a worker thread for large batches, and count the rows."""
        rows = len(x) if isinstance(x, list | np.ndarray) else 1
        prediction = (
            await run_in_threadpool(predictor.predict_details, x)
            if rows > THREAD_ROWS
            else predictor.predict_details(x)
        )
        self.rows.inc(len(prediction.labels))
        return prediction


class GuardAndMeasure:
    """ASGI middleware: the API key check, and request counts and latency per route for /metrics.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware re-streams every request and
    response body through extra tasks, which costs more than the model on large batches.
    """

    def __init__(self, app: Any, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        """Check the key (unless the path is open), then call the app and record the outcome."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        key = self.service.settings.api_key
        if key and scope["path"] not in OPEN_PATHS:
            headers = dict(scope["headers"])
            given = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(b"Bearer ")
            if not hmac.compare_digest(given, key.encode()):
                self.service.record("unauthorized", 401, time.perf_counter() - start)
                await _json({"error": "missing or wrong API key (X-API-Key header)"}, 401)(scope, receive, send)
                return
        status = 500

        async def send_and_note_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # the router records the matched route
            self.service.record(route, status, time.perf_counter() - start)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"invalid Content-Length '{declared}'")
        if int(declared) > limit:
            raise ApiError(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def parse_json_rows(body: bytes) -> tuple[Any, list[str] | None]:
    """Rows (a list, or one vector) and optional ids from a JSON body; the Predictor checks shapes and values."""
    if not body:
        raise ApiError(400, 'empty body: send one vector, a list of vectors, or {"embeddings": [...]}')
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"invalid JSON ({exc}); NaN and Infinity are not JSON") from None
    ids = None
    if isinstance(payload, dict):
        unknown = set(payload) - {"embeddings", "embedding", "ids"}
        if unknown:
            raise ApiError(400, f"unknown field(s) {sorted(unknown)}: expected 'embeddings' and optional 'ids'")
        rows = payload.get("embeddings", payload.get("embedding"))
        if rows is None:
            raise ApiError(400, "missing 'embeddings': a list of vectors (or 'embedding': one vector)")
        ids = payload.get("ids")
    else:
        rows = payload
    if not isinstance(rows, list) or not rows:
        raise ApiError(400, "embeddings must be a non-empty list of numbers or of vectors")
    if bool in set(map(type, rows[0] if isinstance(rows[0], list) else rows)):  # C-speed scan of one row
        raise ApiError(400, "values must be numbers, not true/false")
    if ids is not None:
        n = len(rows) if isinstance(rows[0], list) else 1
        if not isinstance(ids, list) or len(ids) != n or not all(isinstance(i, str | int) for i in ids):
            raise ApiError(400, f"'ids' must be a list of {n} strings, one per row")
        ids = [str(i) for i in ids]
    return rows, ids


def parse_binary_rows(body: bytes, dim: int) -> np.ndarray:
    """(rows, dim) float32 from raw little-endian float32 bytes."""
    row_bytes = 4 * dim
    if not body:
        raise ApiError(400, "empty body: send rows of float32 values")
    if len(body) % row_bytes:
        raise ApiError(
            400,
            f"body of {len(body)} bytes is not a whole number of rows: each row is {dim} little-endian float32 "
            f"values ({row_bytes} bytes); truncated?",
        )
    return np.frombuffer(body, dtype="<f4").reshape(-1, dim)


def _v2_rows(body: bytes, header_length: str | None, dim: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The input tensor of an Open Inference Protocol v2 request (JSON data or the binary tensor extension)."""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise ApiError(400, f"invalid Inference-Header-Content-Length '{header_length}'")
        head, binary = body[: int(header_length)], body[int(header_length) :]
    else:
        head, binary = body, b""
    try:
        request = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"invalid JSON in the inference request ({exc})") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or len(request["inputs"]) != 1:
        raise ApiError(400, "the request must have exactly one entry in 'inputs' (name 'embedding')")
    tensor = request["inputs"][0]
    if not isinstance(tensor, dict):
        raise ApiError(400, "each input must be an object with name, shape, datatype and data")
    if tensor.get("name") != "embedding":
        raise ApiError(400, f"unknown input '{tensor.get('name')}': this model takes 'embedding'")
    if tensor.get("datatype") != "FP32":
        raise ApiError(400, f"input datatype must be FP32, got {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise ApiError(400, f"input shape must be [rows, {dim}], got {shape!r}")
    if shape[1] != dim:
        raise ApiError(400, f"expected {dim} values per row, got shape {shape}")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if size != len(binary) or size != 4 * shape[0] * shape[1]:
            raise ApiError(
                400, f"binary_data_size {size} does not match shape {shape} and the {len(binary)} bytes sent"
            )
        rows = np.frombuffer(binary, dtype="<f4").reshape(shape)
    else:
        data = tensor.get("data")
        try:
            rows = np.asarray(data, dtype=np.float32).reshape(shape)
        except (ValueError, TypeError) as exc:
            raise ApiError(400, f"input data does not fit shape {shape} as FP32 ({exc})") from None
    return rows, request


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI application; the model loads at startup (a failure leaves /ready answering 503 with the reason)."""
    service = Service(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.load()
        yield

    app = FastAPI(
        title="arginator",
        version=__version__,
        description="Classify protein and text embeddings with an exported arginator ONNX model.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(GuardAndMeasure, service=service)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _json({"error": exc.message}, exc.status)

    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, exc: InvalidInput) -> Response:
        return _json({"error": str(exc)}, 400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return _json({"error": f"invalid request: {problems}"}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _json({"error": str(exc.detail)}, exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return _json({"error": f"internal error ({type(exc).__name__})"}, 500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("arginator.serving.api").joinpath("static/index.html").read_text())

    @app.get("/health", summary="The process is up")
    async def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/ready", summary="The model is loaded", responses={503: {"description": "Model not loaded"}})
    async def ready() -> Response:
        service.ready_predictor()
        return _json({"status": "ready", "model": service.predictor.info.name})  # type: ignore[union-attr]

    @app.get("/metadata", summary="The model's labels, task, input dimension and provenance")
    async def metadata() -> Response:
        info = service.ready_predictor().info
        return _json(
            {
                "name": info.name,
                "task": info.task,
                "classes": info.classes,
                "input_dim": info.input_dim,
                "thresholds": info.thresholds,
                "embedder": info.embedder,
                "variant": info.variant,
                "model": info.kind,
                "data_fingerprint": info.data_fingerprint,
                "min_confidence": service.settings.min_confidence,
                "max_rows": service.settings.max_rows,
                "text": service.embedder is not None,
            }
        )

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/predict",
        summary="Classify embeddings (JSON or raw float32 rows)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"type": "array", "items": {"type": "number"}},
                                {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                                {
                                    "type": "object",
                                    "properties": {
                                        "embeddings": {
                                            "type": "array",
                                            "items": {"type": "array", "items": {"type": "number"}},
                                        },
                                        "ids": {"type": "array", "items": {"type": "string"}},
                                    },
                                    "required": ["embeddings"],
                                },
                            ]
                        }
                    },
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
    )
    async def predict(request: Request) -> Response:
        predictor = service.ready_predictor()
        body = await read_body(request, service.settings.max_body_bytes)
        media = _media_type(request)
        if media == "application/octet-stream":
            rows: Any = parse_binary_rows(body, predictor.input_dim)
            ids = None
            service.check_rows(len(rows))
        elif media in ("application/json", ""):
            rows, ids = parse_json_rows(body)
            service.check_rows(len(rows) if isinstance(rows[0], list) else 1)
        else:
            raise ApiError(
                415, f"unsupported content type '{media}': send application/json or application/octet-stream"
            )
        prediction = await service.run(predictor, rows)
        return _json(_columns(prediction, predictor.info.name, ids))

    @app.post("/predict/text", summary="Embed texts with the model's text embedder, then classify them")
    async def predict_text(request: TextRequest) -> Response:
        predictor = service.ready_predictor()
        if service.embedder is None:
            raise ApiError(
                404,
                f"text input is not available for model '{predictor.info.name}' (embedder "
                f"'{predictor.info.embedder}'; needs a MiniLM-trained model and arginator[text])",
            )
        service.check_rows(len(request.texts))
        vectors = await run_in_threadpool(service.embedder.embed, request.texts)
        prediction = await service.run(predictor, vectors)
        return _json(_columns(prediction, predictor.info.name, None))

    # Open Inference Protocol v2 (KServe / Triton REST)
    @app.get("/v2", summary="v2: server metadata")
    async def v2_server() -> Response:
        return _json({"name": "arginator", "version": __version__, "extensions": ["binary_tensor_data"]})

    @app.get("/v2/health/live", summary="v2: liveness")
    async def v2_live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready", summary="v2: readiness")
    async def v2_ready() -> Response:
        service.ready_predictor()
        return _json({"ready": True})

    @app.get("/v2/models/{name}", summary="v2: model metadata")
    async def v2_model(name: str) -> Response:
        info = service.check_name(name).info
        return _json(
            {
                "name": info.name,
                "versions": ["1"],
                "platform": "onnxruntime_onnx",
                "inputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, info.input_dim]}],
                "outputs": [
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(info.classes)]},
                    {"name": "label", "datatype": "BYTES", "shape": [-1]},
                ],
                "parameters": {"classes": info.classes, "task": info.task},
            }
        )

    @app.get("/v2/models/{name}/ready", summary="v2: model readiness")
    async def v2_model_ready(name: str) -> Response:
        service.check_name(name)
        return _json({"name": name, "ready": True})

    @app.post("/v2/models/{name}/infer", summary="v2: inference (JSON or binary tensor extension)")
    async def v2_infer(name: str, request: Request) -> Response:
        predictor = service.check_name(name)
        body = await read_body(request, service.settings.max_body_bytes)
        rows, inference = _v2_rows(body, request.headers.get("inference-header-content-length"), predictor.input_dim)
        service.check_rows(len(rows))
        wanted = [o.get("name") for o in inference.get("outputs") or [] if isinstance(o, dict)]
        unknown = set(wanted) - {"probabilities", "label"}
        if unknown:
            raise ApiError(400, f"unknown output(s) {sorted(unknown)}: this model gives 'probabilities' and 'label'")
        prediction = await service.run(predictor, rows)
        outputs = []
        if not wanted or "probabilities" in wanted:
            probabilities = np.ascontiguousarray(prediction.probabilities, dtype=np.float32)
            outputs.append(
                {
                    "name": "probabilities",
                    "datatype": "FP32",
                    "shape": list(probabilities.shape),
                    "data": probabilities.ravel(),
                }
            )
        if not wanted or "label" in wanted:
            outputs.append(
                {"name": "label", "datatype": "BYTES", "shape": [len(prediction.labels)], "data": prediction.labels}
            )
        response: dict[str, Any] = {"model_name": predictor.info.name, "model_version": "1", "outputs": outputs}
        if "id" in inference:
            response["id"] = inference["id"]
        return _json(response)

    return app


app = create_app()
