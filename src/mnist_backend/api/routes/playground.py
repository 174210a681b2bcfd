"""The browser playground: its page at ``/`` and ``/playground``, and its assets.

Only files shipped inside the package are served, each under a name listed here; the
page itself talks to the service through the public prediction and info endpoints.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, HTTPException, Request, Response, status

router = APIRouter(tags=["playground"])

PAGE_FILE = "index.html"
PAGE_MEDIA_TYPE = "text/html; charset=utf-8"
ASSET_MEDIA_TYPES = {
    "playground.css": "text/css; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
}

# The page loads its script, style and data only from this service; the model's
# 28x28 preview arrives as a data: URL.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Browsers revalidate every time, so a new release is seen at once; an unchanged file
# costs a 304 without a body.
CACHE_CONTROL = "no-cache"


@dataclass(frozen=True)
class StaticFile:
    """A packaged file ready to serve, with the validator browsers revalidate with."""

    body: bytes
    media_type: str
    etag: str


@router.get("/", include_in_schema=False)
@router.get("/playground", include_in_schema=False)
async def serve_playground(request: Request) -> Response:
    """Return the playground page, which draws digits and sends them for prediction."""
    page = load_static_file(PAGE_FILE, PAGE_MEDIA_TYPE)
    return _respond(request, page, {"Content-Security-Policy": CONTENT_SECURITY_POLICY})


@router.get("/static/{asset_name}", include_in_schema=False)
async def serve_asset(request: Request, asset_name: str) -> Response:
    """Return one of the playground's stylesheet and script; any other name is 404."""
    media_type = ASSET_MEDIA_TYPES.get(asset_name)
    if media_type is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND)
    return _respond(request, load_static_file(asset_name, media_type), {})


@cache
def load_static_file(name: str, media_type: str) -> StaticFile:
    """Return the packaged file ``static/<name>``, read once per process.

    Callers pass only names listed in this module, never a name from a request.
    Raises FileNotFoundError when the package was installed without its static files.
    """
    body = resources.files("mnist_backend").joinpath("static", name).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return StaticFile(body=body, media_type=media_type, etag=etag)


def _respond(
    request: Request, static_file: StaticFile, extra_headers: dict[str, str]
) -> Response:
    """Return the file, or 304 Not Modified when the browser's copy is current."""
    headers = {
        "ETag": static_file.etag,
        "Cache-Control": CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        **extra_headers,
    }
    if _is_cached_copy_current(request, static_file.etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(
        content=static_file.body, media_type=static_file.media_type, headers=headers
    )


def _is_cached_copy_current(request: Request, etag: str) -> bool:
    """Return whether If-None-Match names ``etag`` (weak or strong) or is ``*``."""
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    offered = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in offered or etag in offered
