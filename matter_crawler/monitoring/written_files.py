"""The files a crawl writes at its end, served beside the live page and linked from it.

With ``FEED_ATOM_PATH`` the server answers ``/feed.atom`` with that file, with
``REPORT_HTML_PATH`` ``/report.html`` with that one (each as the last crawl wrote it:
this crawl rewrites it when it ends; 404 until one has), and ``/links`` says which
of them the live page should link. The report is served under its own
Content-Security-Policy, the one its ``<meta>`` declares (its inline style by hash,
nothing else), because the server's policy for its own pages would block that style.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scrapy.settings import BaseSettings

from .resources import FileResource
from .server import MonitoringServer


@dataclass(frozen=True)
class WrittenFile:
    setting: str  # the path's setting
    link: str  # its key in /links
    address: str  # where the server serves it
    content_type: bytes
    policy: Callable[[], bytes] | None = None  # its own Content-Security-Policy, else the server's


def report_policy() -> bytes:
    """The report's own policy, and no framing; the report's code is imported only for it."""
    from ..reporting.report_html import STYLE, content_security_policy  # noqa: PLC0415

    return f"{content_security_policy(STYLE)}; frame-ancestors 'none'".encode("ascii")


WRITTEN_FILES = (
    WrittenFile("FEED_ATOM_PATH", "feed", "feed.atom", b"application/atom+xml; charset=utf-8"),
    WrittenFile("REPORT_HTML_PATH", "report", "report.html", b"text/html; charset=utf-8",
                report_policy),
)  # fmt: skip


def serve_written_files(server: MonitoringServer, settings: BaseSettings) -> dict[str, str]:
    """Serve each file whose setting is set; what ``/links`` tells the live page."""
    links: dict[str, str] = {}
    for written in WRITTEN_FILES:
        path = settings.get(written.setting)
        if not path:
            continue
        links[written.link] = written.address
        policy = written.policy() if written.policy is not None else None
        resource = FileResource(Path(path).expanduser(), written.content_type, policy)
        server.put(written.address, resource)
    return links
