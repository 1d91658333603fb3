"""The HTTP service, over a real uvicorn server on loopback, with real ONNX models and real clients."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest

from arginator.serving.predictor import Predictor
from tests.conftest import Server, write_linear_onnx

DIM = 16
CLASSES = ["x", "y", "z"]
WEIGHTS = np.random.default_rng(11).normal(size=(DIM, 3)).astype(np.float32)
TEXT_MAX_ROWS, TEXT_MAX_BODY, TEXT_MAX_CHARS = 8, 20_000, 1_000


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


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    weights = np.random.default_rng(5).normal(size=(384, 2)).astype(np.float32)
    path = tmp_path_factory.mktemp("text") / "news.onnx"
    return write_linear_onnx(path, weights, "multiclass", ["sport", "tech"], embedder="minilm")


@pytest.fixture(scope="module")
def text_server(text_model):
    env = {
        "ARGINATOR_MODEL": str(text_model),
        "ARGINATOR_MAX_ROWS": str(TEXT_MAX_ROWS),
        "ARGINATOR_MAX_BODY_BYTES": str(TEXT_MAX_BODY),
        "ARGINATOR_MAX_TEXT_CHARS": str(TEXT_MAX_CHARS),
        "HF_HUB_OFFLINE": "1",
    }
    running = Server(env).wait()
    yield running
    running.stop()


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


def test_text_route_embeds_with_minilm(text_server, text_model):
    from arginator.embed import SentenceEmbedder

    texts = ["The striker scored twice in the cup final.", "A new chip doubles battery life."]
    expected = Predictor(text_model).predict_details(SentenceEmbedder().embed(texts))
    with httpx.Client(base_url=text_server.url, timeout=60) as client:
        assert client.get("/metadata").json()["text"] is True
        result = client.post("/predict/text", json={"texts": texts}).json()
        assert result["labels"] == expected.labels
        np.testing.assert_allclose(result["probabilities"], expected.probabilities, atol=1e-5)


def test_orjson_body_matches_the_json_module(client, rows):
    # Clients may send any valid JSON encoding of the numbers; orjson and json must agree on the result.
    import json

    a = client.post("/predict", content=json.dumps(rows.tolist()).encode()).json()
    b = client.post("/predict", content=orjson.dumps(rows.tolist())).json()
    assert a == b


# Faults found in review: each test below failed before its fix.


class OverlapProbe:
    """Wraps an embedder and records how many calls were inside it at the same time."""

    def __init__(self, inner) -> None:
        import threading

        self.inner, self.active, self.most, self.lock = inner, 0, 0, threading.Lock()

    def embed(self, texts):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            return self.inner.embed(texts)
        finally:
            with self.lock:
                self.active -= 1


def test_concurrent_text_requests_use_the_shared_embedder_one_at_a_time(text_model):
    # One SentenceTransformer (and its fast tokenizer, which raises "Already borrowed" when used from two threads)
    # serves all requests: concurrent requests must all succeed, with the answers they get one at a time.
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from arginator.serving.api.app import create_app
    from arginator.serving.api.settings import Settings

    words = ["goal", "match", "chip", "battery", "league", "phone"]
    bodies = [{"texts": [" ".join(words[(i + j) % 6] for j in range(1 + i % 9))] * (1 + i % 3)} for i in range(40)]
    with TestClient(create_app(Settings(model=text_model)), raise_server_exceptions=False) as client:
        service = client.app.state.service
        service.embedder = probe = OverlapProbe(service.embedder)
        sequential = [client.post("/predict/text", json=body).json() for body in bodies]
        assert probe.most == 1
        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(lambda body: client.post("/predict/text", json=body), bodies))
    assert [r.status_code for r in responses] == [200] * len(bodies), {r.text for r in responses}
    for response, alone in zip(responses, sequential, strict=True):
        assert response.json()["labels"] == alone["labels"]
        np.testing.assert_allclose(response.json()["probabilities"], alone["probabilities"], atol=1e-5)
    assert probe.most == 1, f"{probe.most} requests were inside the shared embedder at once"


def test_text_route_applies_the_body_size_limit(text_server):
    texts = ["word " * 150] * TEXT_MAX_ROWS  # each text and the count within their limits; the body is not
    body = orjson.dumps({"texts": texts * 4})
    assert len(body) > TEXT_MAX_BODY
    with httpx.Client(base_url=text_server.url, timeout=60) as client:
        for content in (body, iter([body[:10_000], body[10_000:]])):  # with a Content-Length, and chunked
            response = client.post("/predict/text", content=content, headers={"content-type": "application/json"})
            assert response.status_code == 413, response.text
            assert f"exceeds the limit of {TEXT_MAX_BODY} bytes" in response.json()["error"]
        assert client.post("/predict/text", json={"texts": ["ok"]}).status_code == 200
    assert text_server.alive()


def test_text_route_limits_text_length_and_count(text_server):
    with httpx.Client(base_url=text_server.url, timeout=60) as client:
        response = client.post("/predict/text", json={"texts": ["short", "x" * (TEXT_MAX_CHARS + 1)]})
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert "text 1 has" in error and f"limit of {TEXT_MAX_CHARS} characters" in error
        assert "ARGINATOR_MAX_TEXT_CHARS" in error
        response = client.post("/predict/text", json={"texts": ["a"] * (TEXT_MAX_ROWS + 1)})
        assert response.status_code == 413
        assert f"exceed the limit of {TEXT_MAX_ROWS} texts" in response.json()["error"]
        assert client.post("/predict/text", json={"texts": ["x" * TEXT_MAX_CHARS] * TEXT_MAX_ROWS}).status_code == 200
    assert text_server.alive()


def test_booleans_are_refused_in_any_row(client, rows):
    late = [*rows.tolist(), [0.5] * (DIM - 1) + [False]]
    for body in ([rows[0].tolist(), [True] * DIM], late, {"embeddings": late}):
        response = client.post("/predict", json=body)
        assert response.status_code == 400, response.text
        assert "not true/false" in response.json()["error"]
    strings = [rows[0].tolist(), ["0.5"] * DIM]  # numpy would parse these: still not numbers
    assert client.post("/predict", json=strings).status_code == 400
    named = client.post("/predict", json={"embeddings": rows[:2].tolist(), "ids": ["true", "false"]})
    assert named.status_code == 200 and named.json()["ids"] == ["true", "false"]  # the words alone are fine
    assert client.post("/predict", json={"embeddings": rows[:1].tolist(), "ids": [True]}).status_code == 400
    for data in ([0.5] * (DIM - 1) + [True], [[[True] * DIM]], [["0.5"] * DIM]):  # flat, nested deeper, strings
        tensor = {"name": "embedding", "shape": [1, DIM], "datatype": "FP32", "data": data}
        response = client.post("/v2/models/demo/infer", json={"inputs": [tensor]})
        assert response.status_code == 400 and "not true/false" in response.json()["error"], response.text


def test_gzip_and_deflate_bodies_are_decoded_within_the_limit(client, server, text_server, model_path, rows):
    import gzip
    import zlib

    expected = Predictor(model_path).predict_details(rows)
    plain = orjson.dumps(rows.tolist())
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    encoded = [
        ("gzip", gzip.compress(plain)),
        ("deflate", zlib.compress(plain)),
        ("deflate", raw_deflate.compress(plain) + raw_deflate.flush()),  # raw deflate, as some clients send it
        ("gzip, identity", gzip.compress(plain)),
        ("deflate, gzip", gzip.compress(zlib.compress(plain))),
        ("gzip", gzip.compress(plain[:100]) + gzip.compress(plain[100:])),  # two gzip members
    ]
    for coding, body in encoded:
        response = client.post("/predict", content=body, headers={"content-encoding": coding})
        assert response.status_code == 200, (coding, response.text)
        np.testing.assert_allclose(response.json()["probabilities"], expected.probabilities, atol=1e-6)
    tensor = {"name": "embedding", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}
    v2 = client.post(
        "/v2/models/demo/infer",
        content=gzip.compress(orjson.dumps({"inputs": [tensor]})),
        headers={"content-encoding": "gzip"},
    )
    assert v2.status_code == 200, v2.text
    bomb = gzip.compress(b"[" + b"0," * 5_000_000 + b"0]")  # 10 MB of JSON in ~10 kB
    assert len(bomb) < 200_000
    for path in ("/predict", "/v2/models/demo/infer"):
        response = client.post(path, content=bomb, headers={"content-encoding": "gzip"})
        assert response.status_code == 413, response.text
        assert "exceeds the limit of 200000 bytes once gzip-decoded" in response.json()["error"]
    refused = [
        ("br", plain, 415, "unsupported Content-Encoding 'br'"),
        ("gzip, gzip, gzip", plain, 415, "3 content codings stacked"),
        ("gzip", gzip.compress(plain)[:-20], 400, "truncated gzip body"),
        ("gzip", plain, 400, "not valid gzip data"),
    ]
    for coding, body, status, message in refused:
        response = client.post("/predict", content=body, headers={"content-encoding": coding})
        assert response.status_code == status and message in response.json()["error"], response.text
    with httpx.Client(base_url=text_server.url, timeout=60) as text_client:
        texts = gzip.compress(b'{"texts": ["A new chip doubles battery life."]}')
        headers = {"content-encoding": "gzip", "content-type": "application/json"}
        assert text_client.post("/predict/text", content=texts, headers=headers).status_code == 200
        bomb = gzip.compress(b'{"texts": ["' + b"a" * 1_000_000 + b'"]}')
        response = text_client.post("/predict/text", content=bomb, headers=headers)
        assert response.status_code == 413 and f"limit of {TEXT_MAX_BODY} bytes once gzip" in response.json()["error"]
    assert server.alive() and text_server.alive()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "unset the variable to disable authentication"),
        ("   ", "unset the variable to disable authentication"),
        (" s3cret", "remove the whitespace"),  # HTTP strips it from headers: no client could send this key
    ],
)
def test_an_empty_api_key_stops_the_server_at_startup(model_path, key, message):
    import subprocess

    server = Server({"ARGINATOR_MODEL": str(model_path), "ARGINATOR_API_KEY": key})
    try:
        try:
            returncode = server.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server started with the API key {key!r}")
    finally:
        output = server.stop()
    assert returncode != 0
    assert "ARGINATOR_API_KEY" in output and message in output, output


V2_TENSOR = {"name": "embedding", "shape": [1, DIM], "datatype": "FP32", "data": [0.5] * DIM}
BAD_V2_REQUESTS = [
    ("outputs not a list", {"inputs": [V2_TENSOR], "outputs": 5}, 400, "'outputs' must be a list"),
    ("output name not a string", {"inputs": [V2_TENSOR], "outputs": [{"name": [1]}]}, 400, "'outputs' must be"),
    ("parameters not an object", {"inputs": [V2_TENSOR | {"parameters": [1]}]}, 400, "'parameters' must be"),
    (
        "binary_data_size not a number",
        {"inputs": [V2_TENSOR | {"parameters": {"binary_data_size": "64"}}]},
        400,
        "binary_data_size '64' does not match",
    ),
    ("boolean in shape", {"inputs": [V2_TENSOR | {"shape": [True, DIM]}]}, 400, "input shape must be"),
    ("huge shape", {"inputs": [V2_TENSOR | {"shape": [2**63, DIM]}]}, 413, "exceed the limit of 100 rows"),
    ("data not a list", {"inputs": [V2_TENSOR | {"data": "abc"}]}, 400, "'data' must be a list"),
]


@pytest.mark.parametrize(("what", "body", "status", "message"), BAD_V2_REQUESTS, ids=[b[0] for b in BAD_V2_REQUESTS])
def test_malformed_v2_requests_get_4xx_not_500(client, server, what, body, status, message):
    response = client.post("/v2/models/demo/infer", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert server.alive()
    assert client.post("/v2/models/demo/infer", json={"inputs": [V2_TENSOR]}).status_code == 200


def test_v2_header_length_must_be_ascii_digits(client):
    # "²" is a digit to str.isdigit() but not to int(): the header is read as Latin-1, so a client can send it.
    response = client.post(
        "/v2/models/demo/infer", content=b"{}", headers=[(b"inference-header-content-length", b"\xb2")]
    )
    assert response.status_code == 400 and "Inference-Header-Content-Length" in response.json()["error"]


JSON_TYPE = {"content-type": "application/json"}
BAD_TEXT_REQUESTS = [
    # a lone surrogate is valid to Python's json module, and then made the tokenizer raise a TypeError (a 500)
    ("lone surrogate", {"content": b'{"texts": ["\\ud800"]}', "headers": JSON_TYPE}, 400, "invalid JSON"),
    ("not UTF-8", {"content": b'{"texts": ["\xff"]}', "headers": JSON_TYPE}, 400, "not valid UTF-8"),
    ("malformed JSON", {"content": b'{"texts": ', "headers": JSON_TYPE}, 400, "invalid JSON"),
    ("empty body", {"content": b"", "headers": JSON_TYPE}, 400, "empty body"),
    ("no content type", {"content": b'{"texts": 1}'}, 422, "texts"),
    ("texts not a list", {"json": {"texts": "hello"}}, 422, "texts"),
    ("texts missing", {"json": {"text": ["hello"]}}, 422, "texts"),
    ("a text not a string", {"json": {"texts": ["ok", 3]}}, 422, "texts.1: expected a string, got int"),
    ("a list body", {"json": ["hello"]}, 422, "texts"),
    ("form body", {"data": {"texts": "hello"}}, 415, "unsupported content type"),
    ("plain text", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "send application/json"),
    (
        "multipart",
        {"content": b"--x\r\n\r\n--x--", "headers": {"content-type": "multipart/form-data; boundary=x"}},
        415,
        "unsupported content type",
    ),
]


@pytest.mark.parametrize(
    ("what", "request_kwargs", "status", "message"), BAD_TEXT_REQUESTS, ids=[b[0] for b in BAD_TEXT_REQUESTS]
)
def test_malformed_text_requests_get_4xx_not_500(text_server, what, request_kwargs, status, message):
    with httpx.Client(base_url=text_server.url, timeout=60) as client:
        response = client.post("/predict/text", **request_kwargs)
        assert response.status_code == status, response.text
        assert message in response.json()["error"]
        assert client.post("/predict/text", json={"texts": ["still serving"]}).status_code == 200
    assert text_server.alive()


def test_oversized_headers_deep_ids_and_wrong_media_get_4xx(client, rows):
    tensor = {"name": "embedding", "shape": [1, DIM], "datatype": "FP32", "data": rows[0].tolist()}
    # orjson reads 1024 levels but writes 254: echoing this id would have failed after inference
    deep = b'{"id": ' + b"[" * 300 + b'"x"' + b"]" * 300 + b', "inputs": [' + orjson.dumps(tensor) + b"]}"
    response = client.post("/v2/models/demo/infer", content=deep)
    assert response.status_code == 400 and "'id' must be a string" in response.json()["error"]
    body = orjson.dumps({"inputs": [tensor]})
    huge = client.post("/v2/models/demo/infer", content=body, headers={"inference-header-content-length": "9" * 5000})
    assert huge.status_code == 400 and "Inference-Header-Content-Length" in huge.json()["error"]
    form = client.post("/predict", content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    assert client.get("/health").status_code == 200
