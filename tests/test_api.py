"""The HTTP service, over a real uvicorn server on loopback, with real ONNX models and real clients."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest

from arginator.inference import Predictor
from tests.conftest import Server, write_linear_onnx

DIM = 16
CLASSES = ["x", "y", "z"]
WEIGHTS = np.random.default_rng(11).normal(size=(DIM, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    directory = tmp_path_factory.mktemp("served") / "demo"
    directory.mkdir()
    return write_linear_onnx(directory / "model.onnx", WEIGHTS, "multiclass", CLASSES)


@pytest.fixture(scope="module")
def server(model_path):
    running = Server(
        {"ARGINATOR_MODEL": str(model_path.parent), "ARGINATOR_MAX_ROWS": "100", "ARGINATOR_MAX_BODY_BYTES": "200000"}
    ).wait()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as session:
        yield session


@pytest.fixture
def rows():
    return np.random.default_rng(3).normal(size=(5, DIM)).astype(np.float32)


def test_probes_and_metadata(client):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready", "model": "demo"}
    meta = client.get("/metadata").json()
    assert meta["classes"] == CLASSES and meta["input_dim"] == DIM and meta["task"] == "multiclass"
    assert meta["text"] is False


def test_json_and_binary_bodies_give_the_predictors_answer(client, model_path, rows):
    expected = Predictor(model_path).predict_details(rows)
    as_rows = client.post("/predict", json=rows.tolist()).json()
    assert as_rows["labels"] == expected.labels and as_rows["classes"] == CLASSES
    np.testing.assert_allclose(as_rows["probabilities"], expected.probabilities, atol=1e-6)
    one = client.post("/predict", json=rows[0].tolist()).json()
    assert one["labels"] == expected.labels[:1]
    named = client.post("/predict", json={"embeddings": rows.tolist(), "ids": list("abcde")}).json()
    assert named["ids"] == list("abcde") and named["labels"] == expected.labels
    binary = client.post(
        "/predict", content=rows.astype("<f4").tobytes(), headers={"content-type": "application/octet-stream"}
    ).json()
    assert binary["labels"] == expected.labels
    np.testing.assert_allclose(binary["probabilities"], expected.probabilities, atol=1e-6)
    assert binary["abstained"] == expected.abstained.tolist()


BAD_REQUESTS = [
    ("wrong dimension", {"json": [[0.0] * (DIM - 1)]}, 400, f"expected {DIM} values per row, got {DIM - 1}"),
    ("NaN", {"content": b"[" + b"NaN," * (DIM - 1) + b"NaN]"}, 400, "invalid JSON"),
    ("huge value", {"json": [1e39] * DIM}, 400, "NaN or infinite"),
    ("strings", {"json": [["a"] * DIM]}, 400, "values must be numbers"),
    ("booleans", {"json": [True] * DIM}, 400, "not true/false"),
    ("empty list", {"json": []}, 400, "non-empty list"),
    ("ragged rows", {"json": [[0.0] * DIM, [0.0] * 2]}, 400, f"rows must all have {DIM} values"),
    ("malformed JSON", {"content": b"[1, 2,"}, 400, "invalid JSON"),
    ("empty body", {"content": b""}, 400, "empty body"),
    ("unknown field", {"json": {"vectors": [[0.0] * DIM]}}, 400, "unknown field"),
    ("ids mismatch", {"json": {"embeddings": [[0.0] * DIM], "ids": ["a", "b"]}}, 400, "'ids' must be a list of 1"),
    ("wrong content type", {"content": b"1,2", "headers": {"content-type": "text/csv"}}, 415, "unsupported content"),
    (
        "truncated binary",
        {"content": b"\0" * (4 * DIM + 3), "headers": {"content-type": "application/octet-stream"}},
        400,
        "not a whole number of rows",
    ),
    ("too many rows", {"json": [[0.0] * DIM] * 101}, 413, "exceed the limit of 100 rows"),
    (
        "oversize body",
        {"content": b"\0" * 200_004, "headers": {"content-type": "application/octet-stream"}},
        413,
        "exceeds the limit of 200000 bytes",
    ),
]


@pytest.mark.parametrize(
    ("what", "request_kwargs", "status", "message"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_input_gets_a_4xx_that_names_the_problem(client, server, rows, what, request_kwargs, status, message):
    response = client.post("/predict", **request_kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert server.alive()
    assert client.post("/predict", json=rows.tolist()).status_code == 200  # and it keeps serving


def test_route_and_model_errors_are_json_4xx(client):
    assert client.get("/v2/models/other").status_code == 404
    assert "unknown model 'other'" in client.get("/v2/models/other").json()["error"]
    assert client.get("/no/such/route").json() == {"error": "Not Found"}
    assert client.get("/predict").status_code == 405
    response = client.post("/predict/text", json={"texts": []})
    assert response.status_code == 422 and "texts" in response.json()["error"]
    response = client.post("/predict/text", json={"texts": ["hello"]})
    assert response.status_code == 404 and "text input is not available" in response.json()["error"]


def test_open_inference_protocol_with_tritonclient(server, model_path, rows):
    import tritonclient.http as triton

    expected = Predictor(model_path).predict_details(rows)
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("demo")
    metadata = client.get_model_metadata("demo")
    assert metadata["inputs"][0] == {"name": "embedding", "datatype": "FP32", "shape": [-1, DIM]}
    for binary in (False, True):  # JSON data, then the binary tensor extension
        tensor = triton.InferInput("embedding", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        outputs = [
            triton.InferRequestedOutput("probabilities", binary_data=False),
            triton.InferRequestedOutput("label"),
        ]
        result = client.infer("demo", [tensor], outputs=outputs)
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected.probabilities, atol=1e-6)
        assert [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("label")] == (
            expected.labels
        )
    with pytest.raises(Exception, match="unknown model"):
        client.infer("nope", [tensor])
    wrong = triton.InferInput("embedding", [1, DIM - 1], "FP32")
    wrong.set_data_from_numpy(rows[:1, : DIM - 1], binary_data=False)
    with pytest.raises(Exception, match=f"expected {DIM} values per row"):
        client.infer("demo", [wrong])


def test_v2_json_errors(client):
    assert client.post("/v2/models/demo/infer", content=b"{").status_code == 400
    body = {"inputs": [{"name": "embedding", "shape": [1, DIM], "datatype": "FP64", "data": [0.0] * DIM}]}
    assert "FP32" in client.post("/v2/models/demo/infer", json=body).json()["error"]
    body["inputs"][0] |= {"datatype": "FP32", "shape": [2, DIM]}
    assert "does not fit shape" in client.post("/v2/models/demo/infer", json=body).json()["error"]


def test_metrics_count_requests(client, rows):
    client.post("/predict", json=rows.tolist())
    text = client.get("/metrics").text
    assert 'arginator_requests_total{route="/predict",status="200"}' in text
    assert "arginator_predicted_rows_total" in text and "arginator_request_seconds_bucket" in text


def test_openapi_schema_documents_both_body_types(client):
    schema = client.get("/openapi.json").json()
    content = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/octet-stream"} <= set(content)


def test_api_key_and_a_missing_model(tmp_path, model_path, rows):
    locked = Server({"ARGINATOR_MODEL": str(model_path), "ARGINATOR_API_KEY": "s3cret"}).wait()
    missing = Server({"ARGINATOR_MODEL": str(tmp_path / "absent.onnx")}).wait()
    try:
        with httpx.Client(base_url=locked.url) as client:
            assert client.post("/predict", json=rows.tolist()).status_code == 401
            assert client.post("/predict", json=rows.tolist(), headers={"x-api-key": "wrong"}).status_code == 401
            assert client.post("/predict", json=rows.tolist(), headers={"x-api-key": "s3cret"}).status_code == 200
            assert client.get("/ready").status_code == 200  # probes stay open
        with httpx.Client(base_url=missing.url) as client:
            assert client.get("/health").status_code == 200
            ready = client.get("/ready")
            assert ready.status_code == 503 and "model not found" in ready.json()["error"]
            assert client.post("/predict", json=rows.tolist()).status_code == 503
    finally:
        locked.stop(), missing.stop()


def test_text_route_embeds_with_minilm(tmp_path):
    from arginator.embed import SentenceEmbedder

    weights = np.random.default_rng(5).normal(size=(384, 2)).astype(np.float32)
    path = write_linear_onnx(tmp_path / "news.onnx", weights, "multiclass", ["sport", "tech"], embedder="minilm")
    texts = ["The striker scored twice in the cup final.", "A new chip doubles battery life."]
    expected = Predictor(path).predict_details(SentenceEmbedder().embed(texts))
    server = Server({"ARGINATOR_MODEL": str(path), "HF_HUB_OFFLINE": "1"}).wait()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert client.get("/metadata").json()["text"] is True
            result = client.post("/predict/text", json={"texts": texts}).json()
            assert result["labels"] == expected.labels
            np.testing.assert_allclose(result["probabilities"], expected.probabilities, atol=1e-5)
    finally:
        server.stop()


def test_orjson_body_matches_the_json_module(client, rows):
    # Clients may send any valid JSON encoding of the numbers; orjson and json must agree on the result.
    import json

    a = client.post("/predict", content=json.dumps(rows.tolist()).encode()).json()
    b = client.post("/predict", content=orjson.dumps(rows.tolist())).json()
    assert a == b
