"""The monitoring server's plain HTTP resources: metrics, JSON, packaged and written files, 421.

Every answer carries :data:`SECURITY_HEADERS`: a Content-Security-Policy that
allows only the server's own scripts, no sniffing, no referrer, no caching. The
event stream (``/events``) lives in :mod:`matter_crawler.monitoring.stream`.
"""

from __future__ import annotations

import json
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.web.resource import Resource
from twisted.web.server import Request

SECURITY_HEADERS = {
    b"Content-Security-Policy": (
        b"default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-store",
}


def apply_headers(request: Request, content_type: bytes) -> None:
    """The answer's content type and the security headers every answer carries."""
    request.setHeader(b"Content-Type", content_type)
    for name, value in SECURITY_HEADERS.items():
        request.setHeader(name, value)


class MetricsResource(Resource):
    """Prometheus exposition (text or OpenMetrics, as the scraper's Accept asks)."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        accept = (request.getHeader(b"accept") or b"").decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        apply_headers(request, content_type.encode("latin-1"))
        return encoder(self.registry)


class JsonResource(Resource):
    """What ``produce()`` returns, as JSON (``/status``)."""

    isLeaf = True

    def __init__(self, produce: Callable[[], Any]) -> None:
        super().__init__()
        self.produce = produce

    def render_GET(self, request: Request) -> bytes:
        apply_headers(request, b"application/json")
        return json.dumps(self.produce(), default=str).encode("ascii")


class PackageFileResource(Resource):
    """A file shipped in the package (read with pkgutil: works from a zipped egg too)."""

    isLeaf = True

    def __init__(self, package: str, name: str, content_type: bytes) -> None:
        super().__init__()
        data = pkgutil.get_data(package, name)
        if data is None:
            raise FileNotFoundError(f"{package}/{name} is not in the package")
        self.data = data
        self.content_type = content_type

    def render_GET(self, request: Request) -> bytes:
        apply_headers(request, self.content_type)
        return self.data


class FileResource(Resource):
    """A file the crawl writes (the feed, the report), read when asked for: 404 until it exists.

    ``policy`` replaces the server's Content-Security-Policy for this file (the report
    brings its own).
    """

    isLeaf = True

    def __init__(self, path: Path, content_type: bytes, policy: bytes | None = None) -> None:
        super().__init__()
        self.path = path
        self.content_type = content_type
        self.policy = policy

    def render_GET(self, request: Request) -> bytes:
        try:
            data = self.path.read_bytes()
        except OSError:
            request.setResponseCode(404)
            apply_headers(request, b"text/plain; charset=utf-8")
            return b"Not written yet: this file is written at the end of a crawl.\n"
        apply_headers(request, self.content_type)
        if self.policy is not None:
            request.setHeader(b"Content-Security-Policy", self.policy)
        return data


class MisdirectedResource(Resource):
    """421 for a request whose Host header names another server (DNS rebinding)."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(421, b"Misdirected Request")
        apply_headers(request, b"text/plain; charset=utf-8")
        return b"This server answers only to its own address (Host header refused).\n"
