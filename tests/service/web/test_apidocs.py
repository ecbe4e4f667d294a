"""Tests for apidocs.py: /docs and /redoc load everything from the app itself."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from churnguard.config import Settings
from churnguard.service import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home = tmp_path_factory.mktemp("apidocs")
    settings = Settings(home=home, models_dir=home / "models", model_retry_seconds=0)
    with TestClient(create_app(settings)) as client:
        yield client


def assets(html: str) -> list[str]:
    """Every script, stylesheet and icon a page loads."""
    return re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: ?'([^']+)'", html)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_pages_load_nothing_from_another_site(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
    loaded = assets(answer.text)
    assert loaded and all(url.startswith("/") for url in loaded), loaded
    assert "fonts.googleapis" not in answer.text and "cdn." not in answer.text
    for url in loaded:
        fetched = client.get(url)
        assert fetched.status_code == 200, url
        assert len(fetched.content) > 100, url


def test_the_assets_have_their_types_and_nothing_else_is_served(client: TestClient) -> None:
    script = client.get("/static/api-docs/swagger-ui-bundle.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert len(script.content) > 500_000  # the real bundle, not a stub
    assert (
        client.get("/static/api-docs/swagger-ui.css").headers["content-type"].startswith("text/css")
    )
    assert client.get("/static/api-docs/redoc.standalone.js").status_code == 200
    assert client.get("/static/api-docs/..%2F__init__.py").status_code == 404
    assert client.get("/static/api-docs/core.py").status_code == 404


def test_the_openapi_document_is_still_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/api/v1/score" in spec["paths"] and "/docs" not in spec["paths"]
