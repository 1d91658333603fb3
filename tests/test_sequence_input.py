"""Sequences in, answers out: FASTA/texts reading, `arginator predict` and `embed` on them, `POST /predict/sequence`.

The served model is fitted here on real UniRep vectors of bundled Ambler-class beta-lactamases, so "correct labels for
known proteins" is checked against the proteins' database annotation, through a real uvicorn server.
"""

from __future__ import annotations

import gzip
import subprocess
import sys

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from arginator.cli import app
from arginator.errors import DataError, InvalidInput
from arginator.inputs import check_protein, input_chunks, iter_inputs, parse_fasta, read_inputs
from arginator.serving.predictor import Predictor
from tests.conftest import Server, write_linear_onnx

runner = CliRunner()
PER_CLASS, MAX_SEQUENCES, MAX_LENGTH = 12, 8, 1500


@pytest.fixture(scope="module")
def lactamases():
    """(id, sequence, Ambler class) of bundled NCBI beta-lactamases: a few per class A, B and D, seeded."""
    from arginator.sources import _proteins, ambler_class

    by_class: dict[str, list[tuple[str, str, str]]] = {}
    for pid, protein, gene in _proteins("ncbi"):
        label = ambler_class(gene["description"])
        if label in ("A", "B", "D") and len(protein) <= MAX_LENGTH:
            by_class.setdefault(label, []).append((pid, protein, label))
    rng = np.random.default_rng(0)
    picked = {label: rng.permutation(len(rows))[:PER_CLASS] for label, rows in sorted(by_class.items())}
    return [by_class[label][i] for label, rows in picked.items() for i in rows]


@pytest.fixture(scope="module")
def unirep256():
    from arginator.embed import UniRepEmbedder

    return UniRepEmbedder(size=256)


@pytest.fixture(scope="module")
def lactamase_model(tmp_path_factory, lactamases, unirep256):
    """A linear softmax model on UniRep-256 vectors of the known proteins, as an arginator ONNX file."""
    from sklearn.linear_model import LogisticRegression

    vectors = unirep256.embed([s for _, s, _ in lactamases])
    labels = [label for _, _, label in lactamases]
    fitted = LogisticRegression(C=1e4, fit_intercept=False, max_iter=5000).fit(vectors * 10, labels)
    assert fitted.score(vectors * 10, labels) == 1.0  # the premise: the model knows these proteins
    path = tmp_path_factory.mktemp("lactamase") / "model.onnx"
    return write_linear_onnx(path, (fitted.coef_.T * 10), "multiclass", list(fitted.classes_), embedder="unirep")


@pytest.fixture(scope="module")
def sequence_server(lactamase_model):
    env = {
        "ARGINATOR_MODEL": str(lactamase_model),
        "ARGINATOR_MAX_SEQUENCES": str(MAX_SEQUENCES),
        "ARGINATOR_MAX_SEQUENCE_LENGTH": str(MAX_LENGTH),
    }
    running = Server(env).wait(timeout=120, path="/ready")
    yield running
    running.stop()


def fasta(records) -> str:
    return "".join(f">{pid} some description\n{seq[:60]}\n{seq[60:]}\n" for pid, seq, *_ in records)


# Reading and checking inputs


def test_check_protein_cleans_and_refuses_what_is_no_protein():
    assert check_protein(" mkv lag\n*", "q") == "MKVLAG"
    for bad, message in [
        ("MKV1A", "not amino acids: '1'"),
        ("MK-VA", "not amino acids: '-'"),
        ("", "empty sequence"),
        ("ACGT" * 10, "looks like DNA"),
    ]:
        with pytest.raises(InvalidInput, match=message) as raised:
            check_protein(bad, "query7")
        assert "query7" in str(raised.value)
    assert check_protein("ACGTACGT", "short") == "ACGTACGT"  # a short all-ACGT peptide is a plausible protein


def test_fasta_parsing_streams_and_names_the_faulty_record(tmp_path):
    text = ">a first\nMKV\nLAG\n>b\nMSTNPKPQRK\n"
    assert list(parse_fasta(text.splitlines(), "t")) == [("a", "MKVLAG"), ("b", "MSTNPKPQRK")]
    path = tmp_path / "x.faa.gz"
    path.write_bytes(gzip.compress(text.encode()))
    assert read_inputs(path) == (["a", "b"], ["MKVLAG", "MSTNPKPQRK"])
    assert list(input_chunks(path, 1)) == [(["a"], ["MKVLAG"]), (["b"], ["MSTNPKPQRK"])]
    for bad, message in [
        ("MKV\n>a\nMKV\n", "before the first '>'"),
        (">a\nMKV\n>a\nMKV\n", "'a' appears twice"),
        (">\nMKV\n", "header without an id"),
        (">a\nMKV\n>b\n", "'b': empty sequence"),
        (">a\nMKJ#\n", "'a': letters that are not amino acids: '#'"),
        ("", "no FASTA record"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            list(parse_fasta(bad.splitlines(), "t"))
    with pytest.raises(DataError, match="cannot read"):
        (tmp_path / "broken.fa.gz").write_bytes(b"\x1f\x8b not gzip")
        list(iter_inputs(tmp_path / "broken.fa.gz"))
    with pytest.raises(DataError, match="expected a FASTA file"):
        (tmp_path / "x.txt").write_text(text)
        iter_inputs(tmp_path / "x.txt")
    (tmp_path / "bom.fasta").write_bytes("\ufeff>a\nMKV\n".encode())  # a byte-order mark, as some editors save
    assert read_inputs(tmp_path / "bom.fasta") == (["a"], ["MKV"])


def test_texts_csv_reading_and_detection(tmp_path):
    from arginator.inputs import is_texts_csv

    quoted = tmp_path / "quoted.csv"
    quoted.write_text('"id","text"\n"t1","Hello, world"\n')
    assert is_texts_csv(quoted) and read_inputs(quoted) == (["t1"], ["Hello, world"])
    vectors = tmp_path / "vectors.csv"
    vectors.write_text("id,0,1\na,0.1,0.2\n")
    assert not is_texts_csv(vectors)
    short = tmp_path / "short.csv"
    short.write_text("id,text\n1,hello\n2\n")
    with pytest.raises(InvalidInput, match="line 3: a row without both an id and a text"):
        read_inputs(short)


# The command line


def test_predict_on_fasta_equals_embed_then_predict(tmp_path, lactamases, lactamase_model):
    source = tmp_path / "proteins.fasta"
    source.write_text(fasta(lactamases))
    direct = tmp_path / "direct.parquet"
    result = runner.invoke(
        app, ["predict", str(source), "--model", str(lactamase_model), "--out", str(direct), "--cache", ""]
    )
    assert result.exit_code == 0, result.output
    embedded = tmp_path / "vectors.h5"
    result = runner.invoke(app, ["embed", "--input", str(source), "--out", str(embedded), "--cache", ""])
    assert result.exit_code == 0, result.output
    two_step = tmp_path / "two_step.parquet"
    result = runner.invoke(app, ["predict", str(embedded), "--model", str(lactamase_model), "--out", str(two_step)])
    assert result.exit_code == 0, result.output
    a = pd.read_parquet(direct)
    b = pd.read_parquet(two_step).set_index("id").loc[a["id"]].reset_index()  # HDF5 ids come back sorted
    assert list(a["id"]) == [pid for pid, _, _ in lactamases]  # FASTA order kept
    pd.testing.assert_frame_equal(a, b)
    assert list(a["label"]) == [label for _, _, label in lactamases]
    assert {"label", "confidence", "abstained"} <= set(a.columns)


def test_predict_on_bad_fasta_fails_clearly_and_writes_nothing(tmp_path, lactamase_model):
    source = tmp_path / "bad.fasta"
    source.write_text(">ok\nMKVLAG\n>dna\n" + "ACGT" * 20 + "\n")
    out = tmp_path / "hits.csv"
    result = runner.invoke(app, ["predict", str(source), "--model", str(lactamase_model), "--out", str(out)])
    assert result.exit_code == 2 and "'dna': looks like DNA" in result.output
    assert not out.exists() and not list(tmp_path.glob("hits*"))


def test_predict_refuses_inputs_the_model_cannot_take(tmp_path):
    model = write_linear_onnx(tmp_path / "news.onnx", np.ones((384, 2)), "multiclass", ["a", "b"], embedder="minilm")
    source = tmp_path / "p.fasta"
    source.write_text(">p\nMKVLAG\n")
    result = runner.invoke(app, ["predict", str(source), "--model", str(model), "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert "holds protein sequences, but model 'news' was trained on 'minilm'" in result.output
    # A registry name that does not resolve: a one-line error (a real process: the registry logs as it resolves).
    command = [sys.executable, "-m", "arginator.cli", "predict", str(source), "--model", "nosuch@prod"]
    done = subprocess.run([*command, "--out", str(tmp_path / "o.csv")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "error: " in done.stderr, done.stderr
    assert not (tmp_path / "o.csv").exists()


def test_predict_on_a_texts_csv_embeds_with_minilm(tmp_path):
    from arginator.embed import SentenceEmbedder

    weights = np.random.default_rng(1).normal(size=(384, 2))
    model = write_linear_onnx(tmp_path / "news.onnx", weights, "multiclass", ["a", "b"], embedder="minilm")
    texts = ["The striker scored twice.", "A new chip doubles battery life."]
    source = tmp_path / "texts.csv"
    pd.DataFrame({"id": ["t1", "t2"], "text": texts}).to_csv(source, index=False)
    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["predict", str(source), "--model", str(model), "--out", str(out), "--cache", ""])
    assert result.exit_code == 0, result.output
    expected = Predictor(model).predict_details(SentenceEmbedder().embed(texts))
    got = pd.read_parquet(out)
    assert list(got["label"]) == expected.labels
    np.testing.assert_allclose(got[["p_a", "p_b"]].to_numpy(), expected.probabilities, atol=1e-5)


# The API


def test_sequence_route_labels_known_proteins(sequence_server, lactamases):
    known = lactamases[:: len(lactamases) // MAX_SEQUENCES][:MAX_SEQUENCES]
    with httpx.Client(base_url=sequence_server.url, timeout=120) as client:
        meta = client.get("/metadata").json()
        assert meta["sequence"] is True and meta["text"] is False
        as_fasta = client.post("/predict/sequence", content=fasta(known), headers={"content-type": "text/x-fasta"})
        assert as_fasta.status_code == 200, as_fasta.text
        assert as_fasta.json()["ids"] == [pid for pid, _, _ in known]
        assert as_fasta.json()["labels"] == [label for _, _, label in known]
        as_json = client.post("/predict/sequence", json=[seq.lower() for _, seq, _ in known]).json()
        assert as_json["labels"] == [label for _, _, label in known]
        np.testing.assert_allclose(as_json["probabilities"], as_fasta.json()["probabilities"], atol=1e-6)
        keyed = client.post("/predict/sequence", json={"sequences": [known[0][1]], "ids": ["q"]}).json()
        assert keyed["ids"] == ["q"] and keyed["labels"] == [known[0][2]]
        with_bom = ("\ufeff" + fasta(known[:1])).encode()
        for media in ("text/x-fasta", "application/x-fasta", "text/fasta"):
            response = client.post("/predict/sequence", content=with_bom, headers={"content-type": media})
            assert response.status_code == 200 and response.json()["labels"] == [known[0][2]], response.text


def test_sequence_route_refuses_bad_requests_and_keeps_serving(sequence_server, lactamases):
    long = "M" * (MAX_LENGTH + 1)
    cases = [
        ({"content": ">q\nMKV1LAG\n", "headers": {"content-type": "text/x-fasta"}}, 422, "'q': letters that are not"),
        ({"json": ["ACGT" * 20]}, 422, "sequence 0: looks like DNA"),
        ({"json": ["MKV", ""]}, 422, "sequence 1: empty sequence"),
        ({"json": []}, 422, "non-empty list"),
        ({"json": {"sequences": ["MKV"], "ids": ["a", "b"]}}, 422, "ids: expected 1 strings"),
        ({"json": [1, 2]}, 422, "list of sequence strings"),
        ({"content": b"", "headers": {"content-type": "text/x-fasta"}}, 400, "empty body"),
        ({"content": b"[1,", "headers": {"content-type": "application/json"}}, 400, "invalid JSON"),
        ({"content": b"\xff\xfe>", "headers": {"content-type": "text/plain"}}, 400, "not UTF-8"),
        ({"content": "MKV\n", "headers": {"content-type": "text/x-fasta"}}, 422, "before the first '>'"),
        ({"json": ["MKV"] * (MAX_SEQUENCES + 1)}, 413, f"exceed the limit of {MAX_SEQUENCES} sequences"),
        ({"content": ">a\nMKV\n" * 1, "headers": {"content-type": "image/png"}}, 415, "unsupported content type"),
        ({"json": [long]}, 413, f"above the limit of {MAX_LENGTH} residues"),
    ]
    many = "".join(f">s{i}\nMKV\n" for i in range(MAX_SEQUENCES + 5))
    cases.append(({"content": many, "headers": {"content-type": "text/x-fasta"}}, 413, "exceed the limit"))
    with httpx.Client(base_url=sequence_server.url, timeout=60) as client:
        for request, status, message in cases:
            response = client.post("/predict/sequence", **request)
            assert response.status_code == status, (request, response.text)
            assert message in response.json()["error"], (request, response.text)
        ok = client.post("/predict/sequence", json=[lactamases[0][1]])
        assert ok.status_code == 200 and ok.json()["labels"] == [lactamases[0][2]]
    assert sequence_server.alive()


def test_sequence_route_is_off_for_a_model_without_a_protein_embedder(tmp_path):
    from fastapi.testclient import TestClient

    from arginator.serving.api.app import create_app
    from arginator.serving.api.settings import Settings

    model = write_linear_onnx(tmp_path / "m.onnx", np.ones((8, 2)), "multiclass", ["a", "b"], embedder="custom")
    with TestClient(create_app(Settings(model=model))) as client:
        assert client.get("/metadata").json()["sequence"] is False
        response = client.post("/predict/sequence", json=["MKV"])
        assert response.status_code == 404 and "protein input is not available" in response.json()["error"]
        assert client.post("/predict/sequence", json=["MK1"]).status_code == 422  # a bad body is told so anyway


def test_web_page_classifies_a_pasted_fasta(sequence_server, lactamases):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.conftest import headless_chromium

    pid, sequence, label = lactamases[-1]
    driver = headless_chromium()
    try:
        driver.get(sequence_server.url + "/")
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "sequence-box").is_displayed())
        assert not driver.find_element(By.ID, "text-box").is_displayed()
        box = driver.find_element(By.ID, "sequence")
        box.send_keys(f">{pid}\n{sequence}\n")
        driver.find_element(By.ID, "predict-sequence").click()
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "label").text)
        assert driver.find_element(By.ID, "label").text.startswith(label)
        box.clear()
        box.send_keys("MKV1")
        driver.find_element(By.ID, "predict-sequence").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "error").text)
        assert "letters that are not amino acids" in driver.find_element(By.ID, "error").text
    finally:
        driver.quit()
