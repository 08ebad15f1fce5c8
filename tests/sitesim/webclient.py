"""A tiny HTTP client for the simulated-site tests (http.client: no redirects followed).

urllib would follow redirects and turn statuses into exceptions; these tests
need the raw status, headers and body exactly as the site sent them.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    """One HTTP answer as received."""

    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def fetch(url: str, timeout: float = 10.0, method: str = "GET") -> Reply:
    """Fetch ``url`` once (new connection); raises on connection errors and timeouts."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request(method, target)
        response = connection.getresponse()
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, headers, body, time.monotonic() - started)
    finally:
        connection.close()
