"""The playground's page and assets as served over HTTP, without a browser."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from mnist_backend.api.routes.playground import CONTENT_SECURITY_POLICY

PAGE_PATHS = ["/", "/playground"]
ASSETS = {
    "/static/playground.css": "text/css; charset=utf-8",
    "/static/playground.js": "text/javascript; charset=utf-8",
}
ABSOLUTE_URL = re.compile(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize("path", PAGE_PATHS, ids=["root", "playground"])
def test_page_is_html_that_says_it_needs_javascript(
    client: TestClient, path: str
) -> None:
    response = client.get(path)

    noscript = re.search(r"<noscript>(.*?)</noscript>", response.text, re.DOTALL)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert noscript is not None
    assert "This playground needs JavaScript" in noscript.group(1)


def test_page_is_sent_with_a_policy_allowing_only_this_service(
    client: TestClient,
) -> None:
    response = client.get("/")

    assert response.headers["content-security-policy"] == (
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"


def test_page_links_its_assets_and_the_api_reference(client: TestClient) -> None:
    html = client.get("/").text

    assert '<link rel="stylesheet" href="/static/playground.css">' in html
    assert '<script src="/static/playground.js" defer></script>' in html
    assert '<a href="/docs">API reference</a>' in html


@pytest.mark.parametrize(
    ("path", "content_type"), ASSETS.items(), ids=["stylesheet", "script"]
)
def test_asset_is_served_with_its_content_type(
    client: TestClient, path: str, content_type: str
) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "no-cache"
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["etag"])


@pytest.mark.parametrize(
    "path", [*PAGE_PATHS, *ASSETS], ids=["root", "playground", "stylesheet", "script"]
)
def test_unchanged_file_is_revalidated_with_304(client: TestClient, path: str) -> None:
    etag = client.get(path).headers["etag"]

    response = client.get(path, headers={"If-None-Match": f'W/"old", {etag}'})

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag


@pytest.mark.parametrize(
    "path",
    [
        "/static/index.html",
        "/static/missing.js",
        "/static/..%2Fconfig.py",
        "/static/%2E%2E%2F%2E%2E%2Fpyproject.toml",
    ],
    ids=["page-under-static", "unknown-name", "escaped-parent", "double-parent"],
)
def test_unlisted_static_path_is_404_json(client: TestClient, path: str) -> None:
    response = client.get(path)

    body = response.json()
    assert response.status_code == 404
    assert body == {
        "detail": "No endpoint matches this path; see /docs for the API.",
        "code": "not_found",
        "request_id": body["request_id"],
    }
    assert REQUEST_ID.match(body["request_id"])


@pytest.mark.parametrize(
    "path", [PAGE_PATHS[0], *ASSETS], ids=["page", "stylesheet", "script"]
)
def test_playground_refers_to_no_other_host(client: TestClient, path: str) -> None:
    text = client.get(path).text

    assert ABSOLUTE_URL.findall(text) == []
    assert "http:" not in text
    assert "https:" not in text


def test_playground_is_not_part_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert {"/", "/playground", "/static/{asset_name}"} & set(paths) == set()
    assert "/api/v1/predict" in paths
