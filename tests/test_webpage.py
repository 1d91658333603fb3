"""The web page at `/`, driven end to end in headless Chromium (Debian's chromium + chromium-driver) via Selenium."""

from __future__ import annotations

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from arginator.serving.predictor import Predictor
from tests.conftest import Server, headless_chromium, write_linear_onnx

DIM = 16
CLASSES = ["alpha", "beta", "gamma"]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    weights = np.random.default_rng(2).normal(size=(DIM, 3)).astype(np.float32)
    path = write_linear_onnx(tmp_path_factory.mktemp("web") / "model.onnx", weights, "multiclass", CLASSES)
    server = Server({"ARGINATOR_MODEL": str(path)}).wait()
    driver = headless_chromium()
    try:
        driver.get(server.url + "/")
        WebDriverWait(driver, 20).until(lambda d: "classes:" in d.find_element(By.ID, "model").text)
        yield driver, Predictor(path)
    finally:
        driver.quit()
        server.stop()


def test_pasted_vector_shows_label_and_bars(page):
    driver, predictor = page
    vector = np.random.default_rng(9).normal(size=DIM).round(4)
    expected = predictor.predict_details(vector.astype(np.float32))
    box = driver.find_element(By.ID, "vector")
    box.clear()
    box.send_keys(", ".join(str(v) for v in vector))
    driver.find_element(By.ID, "predict-vector").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "label").text)
    assert driver.find_element(By.ID, "label").text.startswith(expected.labels[0])
    bars = driver.find_elements(By.CSS_SELECTOR, "#chart .row")
    assert [bar.get_attribute("data-cls") for bar in bars] == CLASSES
    shown = [float(bar.find_element(By.CLASS_NAME, "value").text) for bar in bars]
    np.testing.assert_allclose(shown, expected.probabilities[0], atol=1e-3)
    assert not driver.find_element(By.ID, "text-box").is_displayed()  # no text embedder for this model


def test_uploaded_file_and_a_wrong_vector(page, tmp_path):
    driver, predictor = page
    rows = np.random.default_rng(4).normal(size=(3, DIM)).round(4)
    upload = tmp_path / "rows.csv"
    upload.write_text("\n".join(",".join(str(v) for v in row) for row in rows))
    driver.find_element(By.ID, "file").send_keys(str(upload))
    WebDriverWait(driver, 20).until(lambda d: "3 rows" in d.find_element(By.ID, "rows").text)
    labels = predictor.predict_details(rows.astype(np.float32)).labels
    assert driver.find_element(By.ID, "rows").text == "3 rows: " + ", ".join(
        f"{i + 1}: {x}" for i, x in enumerate(labels)
    )
    box = driver.find_element(By.ID, "vector")
    box.clear()
    box.send_keys("1, 2, 3")
    driver.find_element(By.ID, "predict-vector").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_element(By.ID, "error").text)
    assert f"expected {DIM} values per row, got 3" in driver.find_element(By.ID, "error").text
    assert driver.find_element(By.ID, "label").text == ""
