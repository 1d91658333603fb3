"""The documentation site: built strictly, every internal link followed offline, every page rendered in Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import Server, free_port, headless_chromium

ROOT = Path(__file__).resolve().parents[1]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        for key in ("href", "src"):
            if values.get(key) and not (tag == "link" and values.get("rel") in ("canonical",)):
                self.links.append(values[key])


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(errors="replace"))
    return parser


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("index.html") if "assets" not in p.parts)


def test_every_internal_link_and_anchor_resolves(site):
    parsed = {path: _parse(path) for path in site.rglob("*.html")}
    broken = []
    for page, links in parsed.items():
        base = "/" + page.relative_to(site).as_posix()
        for link in links.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "data:", "javascript:")):
                continue
            target = site / unquote(urlsplit(urljoin(base, parts.path)).path).lstrip("/")
            if target.is_dir() or not target.suffix:
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)} -> {link}")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in parsed[target].ids:
                broken.append(f"{page.relative_to(site)} -> {link} (no such anchor)")
    assert not broken, "\n".join(broken[:30])
    assert len(parsed) >= 15


def test_generated_pages_follow_the_code(site):
    from typer.main import get_command

    from arginator.cli import app

    cli = (site / "cli" / "index.html").read_text()
    for name in get_command(app).commands:
        assert f'id="arginator-{name}"' in cli, f"the CLI reference lacks `arginator {name}`"
    api = (site / "http-api" / "index.html").read_text()
    assert "/predict" in api and "application/octet-stream" in api
    import json

    assert "/v2/models/{name}/infer" in json.loads((site / "openapi.json").read_text())["paths"]


def test_every_page_renders_without_console_errors(site, tmp_path):
    port = free_port()
    server = Server({}, command=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                 "--directory", str(site)], port=port)  # fmt: skip
    server.wait(path="/")
    driver = headless_chromium(**{"goog:loggingPrefs": {"browser": "ALL"}})
    problems, shots = [], 0
    try:
        for page in _pages(site):
            route = page.parent.relative_to(site).as_posix()
            url = f"{server.url}/{'' if route == '.' else route + '/'}"
            driver.get(url)
            WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
            severe = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            problems += [f"{route}: {message}" for message in severe]
            shots += driver.save_screenshot(str(tmp_path / f"{route.replace('/', '_') or 'home'}.png"))
            if route == "results":
                images = driver.execute_script(
                    "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth])"
                )
                figures = [src for src, width in images if "results-figures" in src]
                assert len(figures) >= 10, images
                assert all(width for src, width in images if "results-figures" in src), "a results figure did not load"
    finally:
        driver.quit()
        server.stop()
    assert not problems, "\n".join(problems)
    assert shots == len(_pages(site))
