"""The state behind the routes (settings, the Predictor, the text embedder, metrics) and the ASGI middleware."""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram

from arginator.errors import ArginatorError, ModelLoadError
from arginator.serving.api.parsing import ApiError, check_count
from arginator.serving.api.settings import Settings
from arginator.serving.predictor import Prediction, Predictor

log = logging.getLogger(__name__)
# Routes that stay open when an API key is set: probes and the page that asks for the key.
OPEN_PATHS = {"/", "/health", "/ready", "/v2/health/live", "/v2/health/ready", "/metrics"}
# Above this many rows, inference runs in a worker thread (ONNX Runtime releases the GIL), so the event loop keeps
# accepting requests; below it the thread hop would cost more than the model itself.
THREAD_ROWS = 256


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response serialised by orjson (numpy arrays included)."""
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


class Service:
    """The state behind the routes: settings, the loaded Predictor (or why it is not loaded), metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.predictor: Predictor | None = None
        self.load_error: str | None = None
        self.embedder: Any = None  # the model's own embedder, when its inputs can be embedded here
        self.embedder_kind: str | None = None  # "text" (MiniLM) or "protein" (UniRep)
        # One SentenceTransformer serves every request, and neither it nor its fast tokenizer is thread-safe
        # ("Already borrowed"): one embedding call at a time. The asyncio lock queues requests without holding
        # worker threads; the thread lock keeps the guarantee whoever calls `embed_now`.
        self._embed_queue = asyncio.Lock()
        self._embed_lock = threading.Lock()
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
        """Load the model (and its text or protein embedder when installed); a failure is kept for /ready to report."""
        s = self.settings
        self._embed_queue = asyncio.Lock()  # made in the serving event loop
        try:
            self.predictor = Predictor(s.model, threads=s.threads, min_confidence=s.min_confidence, name=s.model_name)
        except ModelLoadError as exc:
            self.load_error = str(exc)
            log.error("model not loaded: %s", exc)
            return
        embedder = self.predictor.info.embedder
        if s.enable_text and embedder == "minilm":
            self._load_embedder("text", "arginator[text]")
        elif s.enable_sequence and embedder.startswith("unirep"):
            self._load_embedder("protein", "arginator[protein]")

    def _load_embedder(self, kind: str, extra: str) -> None:
        """The model's embedder (text: MiniLM; protein: UniRep at the model's input size), or the route stays off."""
        route = "/predict/text" if kind == "text" else "/predict/sequence"
        try:
            from arginator.embed import embedder_for_model  # the heavy imports, only for models they serve

            self.embedder = embedder_for_model(self.predictor.info.embedder, self.predictor.input_dim)
            self.embedder.embed(["MKV"] if kind == "protein" else ["warm-up"])  # compiles now, not on a request
            self.embedder_kind = kind
        except ImportError:
            log.info("%s embedder not installed: %s is off (pip install '%s')", kind, route, extra)
        except (OSError, ArginatorError) as exc:  # model files missing, or a size UniRep does not have
            log.warning("%s embedder not loaded (%s): %s is off", kind, exc, route)

    def check_embedder(self, kind: str, needs: str) -> Predictor:
        """The Predictor, or a 404 when this model's inputs are not `kind` (or its embedder is not installed)."""
        predictor = self.ready_predictor()
        if self.embedder is None or self.embedder_kind != kind:
            raise ApiError(
                404,
                f"{kind} input is not available for model '{predictor.info.name}' (embedder "
                f"'{predictor.info.embedder}'; needs {needs})",
            )
        return predictor

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
        check_count(rows, self.settings.max_rows)

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

    def embed_now(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of texts or sequences from the shared embedder, one caller at a time (blocking)."""
        with self._embed_lock:
            return self.embedder.embed(texts)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of texts or sequences, computed in a worker thread; concurrent requests wait their turn."""
        async with self._embed_queue:
            return await run_in_threadpool(self.embed_now, texts)


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
                response = json_response({"error": "missing or wrong API key (X-API-Key header)"}, 401)
                await response(scope, receive, send)
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
