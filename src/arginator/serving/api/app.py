"""The HTTP service: a thin FastAPI shell around the `Predictor` (ONNX Runtime), strict about its input.

Routes (`routes.py`, `v2.py`):
- `GET /health` (the process is up), `GET /ready` (the model is loaded), `GET /metadata`, `GET /metrics` (Prometheus);
- `POST /predict`: JSON (one vector, a list of vectors, or `{"embeddings": [...], "ids": [...]}`) parsed with orjson,
  or `application/octet-stream` raw little-endian float32 rows (the row count comes from the length);
- `POST /predict/text`: `{"texts": [...]}`, when the model was trained on MiniLM text embeddings and the text
  embedder is installed (`arginator[text]`);
- `POST /predict/sequence`: FASTA text or a JSON list of protein sequences, when the model was trained on UniRep
  vectors and UniRep is installed (`arginator[protein]`); limits on count and length, 422 for non-protein letters;
- the Open Inference Protocol v2 REST routes (`/v2/health/ready`, `/v2/models/{name}`, `/v2/models/{name}/infer`,
  including the binary tensor extension), so KServe/Triton clients work unchanged;
- `GET /`: a small web page to try the model.

Bodies may be gzip- or deflate-encoded (`Content-Encoding`); the size limit applies before and after decoding
(`parsing.py`). Every bad input is answered with a 4xx and `{"error": "..."}` saying what was wrong; the server keeps
serving. Settings come from `ARGINATOR_*` environment variables (`settings.py`); invalid ones (an empty API key
among them) stop the server at startup. Run: `uvicorn arginator.serving.api.app:app`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from arginator import __version__
from arginator.errors import InvalidInput
from arginator.serving.api.parsing import ApiError
from arginator.serving.api.routes import v1_router
from arginator.serving.api.service import GuardAndMeasure, Service, json_response
from arginator.serving.api.settings import Settings, load_settings
from arginator.serving.api.v2 import v2_router

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI application; the model loads at startup (a failure leaves /ready answering 503 with the reason).

    Raises:
        ConfigError: `settings` is None and the `ARGINATOR_*` environment holds an invalid value.
    """
    service = Service(settings or load_settings())

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
        return json_response({"error": exc.message}, exc.status)

    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, exc: InvalidInput) -> Response:
        return json_response({"error": str(exc)}, 400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return json_response({"error": f"invalid request: {problems}"}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return json_response({"error": str(exc.detail)}, exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return json_response({"error": f"internal error ({type(exc).__name__})"}, 500)

    app.include_router(v1_router(service))
    app.include_router(v2_router(service))
    return app


app = create_app()
