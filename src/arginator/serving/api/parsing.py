"""Request bodies into rows: reading with limits, gzip/deflate decoding; JSON, raw float32, text, FASTA and v2 parsing.

Nothing here knows about routes: each function takes bytes (or the request, to read them) and returns rows, or
raises `ApiError` with the status and a message that says what was wrong.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from arginator.errors import InvalidInput
from arginator.inputs import check_protein, parse_fasta

T = TypeVar("T")

# Content-Encoding -> zlib window bits. HTTP "deflate" is the zlib format; raw deflate is accepted too (see _inflate).
DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Each decoding pass may produce up to the body limit, so the passes (stacked codings, gzip members) are few.
MAX_CODINGS, MAX_GZIP_MEMBERS = 2, 16


class ApiError(Exception):
    """A request the service refuses: HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def check_count(count: int, limit: int, what: str = "rows", setting: str = "") -> None:
    """A 413 when a request carries more rows (or texts) than allowed."""
    if count > limit:
        raise ApiError(413, f"{count} {what} exceed the limit of {limit} {what} per request{setting}")


# Bodies above this size are decoded and parsed in a worker thread: a 32 MB JSON body takes long enough to parse that
# doing it on the event loop would stall every other request (health probes included); below it the hop costs more.
OFF_LOOP_BYTES = 256 * 1024


async def off_loop(function: Callable[..., T], body: bytes, *args: Any) -> T:
    """`function(body, *args)`, in a worker thread when the body is large, else inline."""
    return await run_in_threadpool(function, body, *args) if len(body) > OFF_LOOP_BYTES else function(body, *args)


def header_length(value: str, name: str) -> int:
    """A byte count from a header: ASCII digits only, and short enough to be a real size (no 5,000-digit numbers)."""
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise ApiError(400, f"invalid {name} '{value[:40]}'")
    return int(value)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decoded per its Content-Encoding; 413 as soon as it (or its decoded form) exceeds `limit`."""
    declared = request.headers.get("content-length")
    try:
        if declared is not None:
            if header_length(declared, "Content-Length") > limit:
                raise ApiError(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
            body = await request.body()
        else:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
    except ClientDisconnect:  # the client went away mid-body: nothing to answer, but not a server error either
        raise ApiError(400, "client disconnected before the body was complete") from None
    encoding = request.headers.get("content-encoding")
    return await off_loop(decode_body, body, encoding, limit) if encoding else body


def decode_body(body: bytes, content_encoding: str, limit: int) -> bytes:
    """Undo the Content-Encoding (codings listed in the order they were applied); 415 for unknown codings."""
    codings = [c for c in (c.strip().lower() for c in content_encoding.split(",")) if c and c != "identity"]
    if len(codings) > MAX_CODINGS:
        raise ApiError(415, f"{len(codings)} content codings stacked; at most {MAX_CODINGS} are decoded")
    for coding in reversed(codings):
        if coding not in DECODERS:
            raise ApiError(415, f"unsupported Content-Encoding '{coding}': send identity, gzip or deflate")
        body = _inflate(body, coding, limit)
    return body


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    """Decompress at most `limit` bytes: a small compressed body that would inflate beyond it gets a 413."""
    wbits = DECODERS[coding]
    if coding == "deflate" and not (len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0):
        wbits = -zlib.MAX_WBITS  # raw deflate, without the zlib header (sent by some clients)
    parts, size = [], 0
    for _ in range(MAX_GZIP_MEMBERS):  # a gzip body may hold several members, decoded one after the other
        decoder = zlib.decompressobj(wbits)
        try:
            part = decoder.decompress(data, limit - size + 1)
        except zlib.error as exc:
            raise ApiError(400, f"body is not valid {coding} data ({exc})") from None
        size += len(part)
        if size > limit:
            raise ApiError(413, f"body exceeds the limit of {limit} bytes once {coding}-decoded")
        if not decoder.eof:
            raise ApiError(400, f"truncated {coding} body")
        parts.append(part)
        data = decoder.unused_data
        if not data:
            return b"".join(parts)
        if wbits != DECODERS["gzip"]:
            raise ApiError(400, f"unexpected data after the end of the {coding} stream")
    raise ApiError(400, f"more than {MAX_GZIP_MEMBERS} gzip members in one body")


def media_type(request: Request) -> str:
    """The Content-Type without parameters, lower case ('' when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


NUMBERS = {int, float}


def only_numbers(rows: list[Any]) -> bool:
    """Whether `rows` is one vector of numbers or a list of such vectors (a C-speed type scan per row).

    orjson gives true/false as Python bools and strings as str, which numpy would quietly turn into 1.0/0.0 or parse;
    `type(x) is int` is never true for a bool, so both are refused here.
    """
    types = set(map(type, rows))
    if types <= NUMBERS:
        return True
    return types == {list} and all(set(map(type, row)) <= NUMBERS for row in rows)


def _loads(body: bytes, what: str = "invalid JSON", hint: str = "") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # also invalid UTF-8 and lone surrogates, which a tokenizer cannot take
        raise ApiError(400, f"{what} ({exc}){hint}") from None


def parse_json_rows(body: bytes) -> tuple[Any, list[str] | None]:
    """Rows (a list, or one vector) and optional ids from a JSON body; the Predictor checks shapes and values."""
    if not body:
        raise ApiError(400, 'empty body: send one vector, a list of vectors, or {"embeddings": [...]}')
    payload = _loads(body, hint="; NaN and Infinity are not JSON")
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
    if not only_numbers(rows):
        raise ApiError(400, "values must be numbers (not true/false, strings or deeper lists)")
    if ids is not None:
        n = len(rows) if isinstance(rows[0], list) else 1
        if not isinstance(ids, list) or len(ids) != n or not all(type(i) in (str, int) for i in ids):
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


def parse_texts(body: bytes, max_texts: int, max_chars: int) -> list[str]:
    """The texts of a `{"texts": [...]}` body: 422 for a wrong shape, 413 for too many or too long texts."""
    if not body:
        raise ApiError(400, 'empty body: send {"texts": ["...", ...]}')
    payload = _loads(body)
    texts = payload.get("texts") if isinstance(payload, dict) else None
    if not isinstance(texts, list) or not texts:
        raise ApiError(422, 'invalid request: texts: expected {"texts": [...]} with a non-empty list of strings')
    check_count(len(texts), max_texts, "texts", " (ARGINATOR_MAX_ROWS)")
    wrong = next((i for i, text in enumerate(texts) if type(text) is not str), None)
    if wrong is not None:
        raise ApiError(422, f"invalid request: texts.{wrong}: expected a string, got {type(texts[wrong]).__name__}")
    long = next((i for i, text in enumerate(texts) if len(text) > max_chars), None)
    if long is not None:
        raise ApiError(
            413,
            f"text {long} has {len(texts[long])} characters, above the limit of {max_chars} characters per text "
            "(ARGINATOR_MAX_TEXT_CHARS)",
        )
    return texts


def parse_sequences(
    body: bytes, fasta: bool, max_sequences: int, max_length: int
) -> tuple[list[str] | None, list[str]]:
    """Ids (FASTA headers or `ids`) and checked protein sequences of a /predict/sequence body.

    The body is FASTA text (`fasta`), or JSON: a list of sequences, or `{"sequences": [...], "ids": [...]}`.
    400 for an empty or undecodable body, 413 for too many or too long sequences, 422 for anything that is not a
    protein (non-amino-acid letters, DNA, empty records), with the offending record named.
    """
    if not body:
        raise ApiError(400, 'empty body: send FASTA text, a JSON list of sequences, or {"sequences": [...]}')
    limit = " (ARGINATOR_MAX_SEQUENCES)"
    ids: list[str] | None = None
    if fasta:
        try:
            text = body.decode("utf-8-sig")  # a byte-order mark is not part of the FASTA
        except UnicodeDecodeError as exc:
            raise ApiError(400, f"FASTA body is not UTF-8 text ({exc})") from None
        records: list[tuple[str, str]] = []
        try:
            for record in parse_fasta(text.splitlines(), "FASTA body", check=False):
                records.append(record)
                check_count(len(records), max_sequences, "sequences", limit)  # stop reading as soon as it is over
        except InvalidInput as exc:
            raise ApiError(422, f"invalid request: {exc}") from None
        ids, sequences = [i for i, _ in records], [s for _, s in records]
    else:
        payload = _loads(body)
        sequences = payload.get("sequences") if isinstance(payload, dict) else payload
        if not isinstance(sequences, list) or not sequences or any(type(s) is not str for s in sequences):
            raise ApiError(
                422, 'invalid request: expected a non-empty list of sequence strings, or {"sequences": [...]}'
            )
        check_count(len(sequences), max_sequences, "sequences", limit)
        if isinstance(payload, dict) and payload.get("ids") is not None:
            ids = payload["ids"]
            if not isinstance(ids, list) or len(ids) != len(sequences) or any(type(i) is not str for i in ids):
                raise ApiError(422, f"invalid request: ids: expected {len(sequences)} strings, one per sequence")
    names = [f"'{i}'" for i in ids] if ids is not None else [f"sequence {n}" for n in range(len(sequences))]
    long = next((n for n, s in enumerate(sequences) if len(s) > max_length), None)
    if long is not None:
        raise ApiError(
            413,
            f"{names[long]} has {len(sequences[long])} letters, above the limit of {max_length} residues per "
            "sequence (ARGINATOR_MAX_SEQUENCE_LENGTH)",
        )
    try:
        return ids, [check_protein(s, name) for s, name in zip(sequences, names, strict=True)]
    except InvalidInput as exc:
        raise ApiError(422, f"invalid request: {exc}") from None


def v2_rows(
    body: bytes, json_length: str | None, dim: int, max_rows: int
) -> tuple[np.ndarray, dict[str, Any], list[str]]:
    """The input tensor, the request and the wanted outputs of an Open Inference Protocol v2 request.

    The tensor comes as JSON `data` or, with the binary tensor extension, as raw bytes after a JSON header of
    `Inference-Header-Content-Length` bytes.
    """
    if json_length is not None:
        length = header_length(json_length, "Inference-Header-Content-Length")
        if length > len(body):
            raise ApiError(400, f"invalid Inference-Header-Content-Length '{json_length}': longer than the body")
        head, binary = body[:length], body[length:]
    else:
        head, binary = body, b""
    request = _loads(head, "invalid JSON in the inference request")
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or len(request["inputs"]) != 1:
        raise ApiError(400, "the request must have exactly one entry in 'inputs' (name 'embedding')")
    if "id" in request and type(request["id"]) is not str:  # echoed back: only a string, as the protocol says
        raise ApiError(400, f"'id' must be a string, got {type(request['id']).__name__}")
    tensor = request["inputs"][0]
    if not isinstance(tensor, dict):
        raise ApiError(400, "each input must be an object with name, shape, datatype and data")
    if tensor.get("name") != "embedding":
        raise ApiError(400, f"unknown input '{tensor.get('name')}': this model takes 'embedding'")
    if tensor.get("datatype") != "FP32":
        raise ApiError(400, f"input datatype must be FP32, got {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(type(s) is int and s >= 0 for s in shape)):
        raise ApiError(400, f"input shape must be [rows, {dim}], got {shape!r}")
    if shape[1] != dim:
        raise ApiError(400, f"expected {dim} values per row, got shape {shape}")
    check_count(shape[0], max_rows)
    parameters = tensor.get("parameters")
    if not isinstance(parameters, dict | None):
        raise ApiError(400, f"input 'parameters' must be an object, got {type(parameters).__name__}")
    size = (parameters or {}).get("binary_data_size")
    if size is not None:
        if type(size) is not int or size != len(binary) or size != 4 * shape[0] * shape[1]:
            raise ApiError(
                400, f"binary_data_size {size!r} does not match shape {shape} and the {len(binary)} bytes sent"
            )
        rows = np.frombuffer(binary, dtype="<f4").reshape(shape)
    else:
        data = tensor.get("data")
        if not isinstance(data, list):
            raise ApiError(400, f"input 'data' must be a list of numbers, got {type(data).__name__}")
        if not only_numbers(data):
            raise ApiError(400, "input 'data' must hold numbers only (not true/false, strings or deeper lists)")
        try:
            rows = np.asarray(data, dtype=np.float32).reshape(shape)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ApiError(400, f"input data does not fit shape {shape} as FP32 ({exc})") from None
    return rows, request, _v2_outputs(request.get("outputs"))


def _v2_outputs(outputs: Any) -> list[str]:
    """The names in a v2 request's optional `outputs` list (none: all outputs)."""
    if outputs is None:
        return []
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and type(o.get("name")) is str for o in outputs):
        raise ApiError(400, "'outputs' must be a list of objects with a 'name' ('probabilities', 'label' or 'novelty')")
    wanted = [o["name"] for o in outputs]
    unknown = set(wanted) - {"probabilities", "label", "novelty"}
    if unknown:
        raise ApiError(
            400,
            f"unknown output(s) {sorted(unknown)}: outputs are 'probabilities', 'label' and, "
            "for a model with novelty, 'novelty'",
        )
    return wanted
