"""The service plus two reference routes for `benchmarks/api.py`, served in the same uvicorn process and stack.

- `POST /floor`: reads the body and returns a constant: the HTTP floor of this server stack;
- `POST /naive`: the textbook FastAPI path, a pydantic `list[list[float]]` body converted to numpy, then the same
  Predictor and the same response: what `/predict`'s orjson/raw-bytes parsing is compared against.
"""

from __future__ import annotations

import numpy as np
from fastapi import Request, Response
from pydantic import BaseModel

from arginator.serving.api.app import create_app
from arginator.serving.api.routes import columns
from arginator.serving.api.service import json_response

app = create_app()


class NaiveBody(BaseModel):
    """Rows as a pydantic model: every float becomes a validated Python object."""

    embeddings: list[list[float]]


@app.post("/floor", include_in_schema=False)
async def floor(request: Request) -> Response:
    await request.body()
    return Response(b'{"ok":true}', media_type="application/json")


@app.post("/naive", include_in_schema=False)
async def naive(body: NaiveBody) -> Response:
    predictor = app.state.service.ready_predictor()
    prediction = predictor.predict_details(np.asarray(body.embeddings, dtype=np.float32))
    return json_response(columns(prediction, predictor.info.name, None))
