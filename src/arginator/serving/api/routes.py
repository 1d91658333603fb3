"""The v1 routes: probes, metadata, metrics, `/predict` (JSON or raw float32), the embedding routes, the web page.

`/predict/text` and `/predict/sequence` embed texts or protein sequences with the model's own embedder first.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from arginator.serving.api.parsing import (
    ApiError,
    media_type,
    off_loop,
    parse_binary_rows,
    parse_json_rows,
    parse_sequences,
    parse_texts,
    read_body,
)
from arginator.serving.api.service import Service, json_response
from arginator.serving.predictor import Prediction

VECTOR = {"type": "array", "items": {"type": "number"}}
PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    VECTOR,
                    {"type": "array", "items": VECTOR},
                    {
                        "type": "object",
                        "properties": {
                            "embeddings": {"type": "array", "items": VECTOR},
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


def sequence_body(max_sequences: int, max_length: int) -> dict[str, Any]:
    """The OpenAPI request body of /predict/sequence (FASTA text, or JSON), with the configured limits."""
    sequence = {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": "^[A-Za-z*\\s]+$"}
    sequences = {"type": "array", "minItems": 1, "maxItems": max_sequences, "items": sequence}
    ids = {"type": "array", "items": {"type": "string"}}
    keyed = {"type": "object", "properties": {"sequences": sequences, "ids": ids}, "required": ["sequences"]}
    return {
        "required": True,
        "content": {
            "text/x-fasta": {"schema": {"type": "string"}, "example": ">query1\nMKVLAAGIVALLLAA\n"},
            "application/json": {"schema": {"oneOf": [sequences, keyed]}},
        },
    }


def text_body(max_texts: int, max_chars: int) -> dict[str, Any]:
    """The OpenAPI request body of /predict/text, with the configured limits."""
    texts = {"type": "array", "minItems": 1, "maxItems": max_texts, "items": {"type": "string", "maxLength": max_chars}}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"texts": texts}, "required": ["texts"]},
            }
        },
    }


def columns(prediction: Prediction, model_name: str, ids: list[str] | None) -> dict[str, Any]:
    """Column-oriented response: cheap to build and parse for large batches."""
    body: dict[str, Any] = {
        "model": model_name,
        "classes": prediction.classes,
        "labels": prediction.labels,
        "confidence": prediction.confidence.astype(np.float32),
        "abstained": prediction.abstained,
        "probabilities": np.ascontiguousarray(prediction.probabilities, dtype=np.float32),
    }
    if prediction.novelty is not None:  # above the model's novelty threshold: "I don't know" (abstained)
        body["novelty"] = prediction.novelty.astype(np.float32)
    if ids is not None:
        body["ids"] = ids
    return body


def v1_router(service: Service) -> APIRouter:
    """The v1 routes over `service`."""
    router = APIRouter()
    settings = service.settings

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("arginator.serving.api").joinpath("static/index.html").read_text())

    @router.get("/health", summary="The process is up")
    async def health() -> Response:
        return json_response({"status": "ok"})

    @router.get("/ready", summary="The model is loaded", responses={503: {"description": "Model not loaded"}})
    async def ready() -> Response:
        name, version = service.ready_predictor().info.name, service.settings.model_version
        return json_response({"status": "ready", "model": name} | ({"version": version} if version else {}))

    @router.get("/metadata", summary="The model's labels, task, input dimension and provenance")
    async def metadata() -> Response:
        info = service.ready_predictor().info
        return json_response(
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
                "min_confidence": settings.min_confidence,
                "novelty_threshold": info.novelty_threshold,
                "max_rows": settings.max_rows,
                "text": service.embedder_kind == "text",
                "sequence": service.embedder_kind == "protein",
            }
        )

    @router.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    @router.post(
        "/predict",
        summary="Classify embeddings (JSON or raw float32 rows)",
        openapi_extra={"requestBody": PREDICT_BODY},
    )
    async def predict(request: Request) -> Response:
        predictor = service.ready_predictor()
        media = media_type(request)
        if media not in ("application/octet-stream", "application/json", ""):  # refused before reading the body
            raise ApiError(
                415, f"unsupported content type '{media}': send application/json or application/octet-stream"
            )
        body = await read_body(request, settings.max_body_bytes)
        if media == "application/octet-stream":
            rows: Any = parse_binary_rows(body, predictor.input_dim)
            ids = None
            service.check_rows(len(rows))
        else:
            rows, ids = await off_loop(parse_json_rows, body)
            service.check_rows(len(rows) if isinstance(rows[0], list) else 1)
        prediction = await service.run(predictor, rows)
        return json_response(columns(prediction, predictor.info.name, ids))

    @router.post(
        "/predict/text",
        summary="Embed texts with the model's text embedder, then classify them",
        openapi_extra={"requestBody": text_body(settings.max_rows, settings.max_text_chars)},
    )
    async def predict_text(request: Request) -> Response:
        media = media_type(request)
        if media not in ("application/json", ""):
            raise ApiError(415, f"unsupported content type '{media}': send application/json")
        body = await read_body(request, settings.max_body_bytes)
        texts = parse_texts(body, settings.max_rows, settings.max_text_chars)  # a bad body is told so on any model
        predictor = service.check_embedder("text", "a MiniLM-trained model and arginator[text]")
        vectors = await service.embed(texts)
        prediction = await service.run(predictor, vectors)
        return json_response(columns(prediction, predictor.info.name, None))

    @router.post(
        "/predict/sequence",
        summary="Embed protein sequences with the model's embedder (UniRep), then classify them",
        openapi_extra={"requestBody": sequence_body(settings.max_sequences, settings.max_sequence_length)},
    )
    async def predict_sequence(request: Request) -> Response:
        media = media_type(request)
        if not (media in ("application/json", "application/x-fasta", "") or media.startswith("text/")):
            raise ApiError(415, f"unsupported content type '{media}': send text/x-fasta (FASTA) or application/json")
        body = await read_body(request, settings.max_body_bytes)
        fasta = (
            media.startswith("text/")
            or media == "application/x-fasta"
            or (media == "" and body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b">"))
        )
        ids, sequences = parse_sequences(body, fasta, settings.max_sequences, settings.max_sequence_length)
        predictor = service.check_embedder("protein", "a UniRep-trained model and arginator[protein]")
        vectors = await service.embed(sequences)
        prediction = await service.run(predictor, vectors)
        return json_response(columns(prediction, predictor.info.name, ids))

    return router
