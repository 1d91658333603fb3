"""Open Inference Protocol v2 (KServe / Triton REST) routes, JSON and binary tensor extension.

`tritonclient[http]` and KServe clients work unchanged: one FP32 input `embedding` of shape `[rows, input_dim]`, and
two outputs, `probabilities` (FP32 `[rows, classes]`) and `label` (BYTES `[rows]`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from arginator import __version__
from arginator.serving.api.parsing import off_loop, read_body, v2_rows
from arginator.serving.api.service import Service, json_response

TENSOR = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "enum": ["embedding"]},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": 2},
        "datatype": {"type": "string", "enum": ["FP32"]},
        "data": {"type": "array", "items": {"type": "number"}},
        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"}}},
    },
    "required": ["name", "shape", "datatype"],
}
INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "inputs": {"type": "array", "items": TENSOR, "minItems": 1, "maxItems": 1},
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"name": {"type": "string", "enum": ["probabilities", "label", "novelty"]}},
                            "required": ["name"],
                        },
                    },
                },
                "required": ["inputs"],
            }
        }
    },
}


def v2_router(service: Service) -> APIRouter:
    """The v2 routes over `service`."""
    router = APIRouter()

    @router.get("/v2", summary="v2: server metadata")
    async def v2_server() -> Response:
        return json_response({"name": "arginator", "version": __version__, "extensions": ["binary_tensor_data"]})

    @router.get("/v2/health/live", summary="v2: liveness")
    async def v2_live() -> Response:
        return json_response({"live": True})

    @router.get("/v2/health/ready", summary="v2: readiness")
    async def v2_ready() -> Response:
        service.ready_predictor()
        return json_response({"ready": True})

    @router.get("/v2/models/{name}", summary="v2: model metadata")
    async def v2_model(name: str) -> Response:
        info = service.check_name(name).info
        return json_response(
            {
                "name": info.name,
                "versions": ["1"],
                "platform": "onnxruntime_onnx",
                "inputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, info.input_dim]}],
                "outputs": [
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(info.classes)]},
                    {"name": "label", "datatype": "BYTES", "shape": [-1]},
                    *([{"name": "novelty", "datatype": "FP32", "shape": [-1]}] if info.novelty_threshold else []),
                ],
                "parameters": {"classes": info.classes, "task": info.task, "novelty_threshold": info.novelty_threshold},
            }
        )

    @router.get("/v2/models/{name}/ready", summary="v2: model readiness")
    async def v2_model_ready(name: str) -> Response:
        service.check_name(name)
        return json_response({"name": name, "ready": True})

    @router.post(
        "/v2/models/{name}/infer",
        summary="v2: inference (JSON or binary tensor extension)",
        openapi_extra={"requestBody": INFER_BODY},
    )
    async def v2_infer(name: str, request: Request) -> Response:
        predictor = service.check_name(name)
        body = await read_body(request, service.settings.max_body_bytes)
        rows, inference, wanted = await off_loop(
            v2_rows,
            body,
            request.headers.get("inference-header-content-length"),
            predictor.input_dim,
            service.settings.max_rows,
        )
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
        if prediction.novelty is not None and (not wanted or "novelty" in wanted):
            novelty = prediction.novelty.astype(np.float32)
            outputs.append({"name": "novelty", "datatype": "FP32", "shape": [len(novelty)], "data": novelty})
        response: dict[str, Any] = {"model_name": predictor.info.name, "model_version": "1", "outputs": outputs}
        if "id" in inference:
            response["id"] = inference["id"]
        return json_response(response)

    return router
