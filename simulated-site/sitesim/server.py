"""The Twisted web server: routes page requests, carries out fault decisions, keeps the account.

Twisted (already a Scrapy dependency) rather than ``http.server``: it listens
with a large backlog, serves thousands of pages a second on one core, and
delays responses without blocking (``callLater``), which latency, hangs,
overload delays and the capacity limit all rely on. Nothing here ever sleeps.
"""

from __future__ import annotations

import os
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.web import resource, server
from twisted.web.http import Request

from . import drift, hostile, hostile_parsing, hostile_script
from .api import SimApi
from .cassettes import Recording, js_only_shell, page_kind
from .catalogue import Catalogue
from .config import Settings
from .dcl import PREFIX as DCL_PREFIX
from .dcl import Gateway
from .faults import Decision, RefusalWindow, decide, in_scope
from .mutations import MutationSchedule
from .products import Entry
from .render import LISTING_PATH, ROBOTS_TXT, Renderer
from .stats import Stats, Visit

HTML = b"text/html; charset=UTF-8"
_PAGE_PATH = re.compile(r"^/csa-iot_products/page/([^/]+)/?$")
_DETAIL_PATH = re.compile(r"^/csa_product/([^/]+)(/?)$")
_HOST_HEADER = re.compile(r"^[A-Za-z0-9.\-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$")
_WILDCARDS = ("0.0.0.0", "::", "")
# Base URLs whose page chrome is kept (one unless listening on a wildcard address).
_MAX_RENDERERS = 16
# How long a reset fault leaves the partial response on the wire before the RST.
_RESET_AFTER = 0.05


@dataclass(frozen=True, slots=True)
class Response:
    """A complete HTTP answer, before any fault alters it."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ((b"content-type", HTML),)


@dataclass(frozen=True, slots=True)
class Target:
    """What a URL names: its kind, its page identity and how to render it."""

    kind: str  # "list", "detail" or "other"
    key: str  # the page regardless of URL form, e.g. "list:3", "detail:wi-fi-plug-27"
    render: Callable[[bool], Response]  # js_only -> response
    is_page: bool = False  # a 200 page (JS-only and truncation apply)


def error_page(status: int) -> bytes:
    """The small HTML body of an error answer (not the WordPress 404)."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return (
        f"<!DOCTYPE html>\n<html><head><title>{status} {phrase}</title></head>"
        f"<body><h1>{status} {phrase}</h1><p>The server could not complete your request."
        "</p></body></html>\n"
    ).encode()


def hard_reset(request: Request) -> None:
    """Abort the request's TCP connection with an RST, dropping unsent data."""
    transport = request.channel.transport if request.channel else None
    if transport is None:
        return
    handle = transport.getHandle()
    if isinstance(handle, socket.socket):
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abortConnection()


def _unchanged(page: bytes) -> bytes:
    return page


# How a hostile product's detail page is spoiled (see hostile.py).
_SPOILERS: dict[str, Callable[[bytes], bytes]] = {
    "malformed_html": hostile.malformed,
    "missing_fields": hostile.without_required_fields,
    "oversized": hostile.oversized,
}


class SimServer:
    """State of the running site: catalogue, settings, fault counters, account."""

    def __init__(
        self,
        catalogue: Catalogue,
        settings: Settings,
        host: str,
        reactor: IReactorTime,
        *,
        recording: Recording | None = None,
        set_cookies: bool = False,
        dcl: Gateway | None = None,
    ) -> None:
        self.catalogue = catalogue
        # --dcl: the simulated ledger's REST paths under /dcl/ (see dcl/)
        self.dcl = dcl
        # --cassettes: pages come from a recording; the catalogue only seeds faults and chrome
        self.recording = recording
        # --set-cookies: a session cookie on every page answer (recorders must drop it)
        self.set_cookies = set_cookies
        self.host = host
        self.port = 0  # set once listening
        # All timing goes through the reactor (epoch seconds from a real one),
        # so tests can drive it with twisted.internet.task.Clock.
        self.reactor = reactor
        self.clock = reactor.seconds
        now = self.clock()
        self.settings = settings
        self.outage_window = self._window(settings.outage, now)
        self.stats = Stats(started_at=now, log_size=settings.request_log_size)
        self.path_counts: dict[str, int] = {}
        self.admitted_open = 0
        self.refusals = RefusalWindow()  # recent refusals over capacity slow accepted requests
        self.throttles = 0
        self._renderers: dict[str, Renderer] = {}
        # mutations waiting for a moment of the crawl (POST /__sim__/mutate with a trigger)
        self.mutations = MutationSchedule(catalogue, self.clock)
        self.api = SimApi(self)

    # --- settings -----------------------------------------------------------

    @staticmethod
    def _window(outage: tuple[float, float] | None, anchor: float) -> tuple[float, float] | None:
        if outage is None:
            return None
        start, seconds = outage
        return (anchor + start, anchor + start + seconds)

    def update_settings(self, changes: dict[str, Any]) -> None:
        """Apply runtime changes (validated; a runtime outage starts relative to now)."""
        settings = self.settings.updated(changes)
        if "outage" in changes:
            self.outage_window = self._window(settings.outage, self.clock())
        if settings.request_log_size != self.stats.log_size:
            self.stats.resize_log(settings.request_log_size)
        self.settings = settings

    def reset_account(self) -> None:
        """Zero the account and restart every path's fault sequence."""
        self.stats.reset(self.clock())
        self.path_counts.clear()
        self.refusals.clear()
        self.throttles = 0

    # --- URLs ---------------------------------------------------------------

    def base_url(self, request: Request | None = None) -> str:
        """``http://host:port`` the pages link to: the listening address, or the
        Host header when listening on a wildcard address."""
        if self.host in _WILDCARDS and request is not None:
            header = (request.getHeader(b"host") or b"").decode("latin-1")
            if _HOST_HEADER.match(header):
                return f"http://{header}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def renderer(self, base_url: str) -> Renderer:
        """The renderer for ``base_url`` (its page chrome is built once)."""
        found = self._renderers.get(base_url)
        if found is None:
            found = Renderer(self.catalogue, base_url)
            if len(self._renderers) < _MAX_RENDERERS:  # Host headers are client-chosen
                self._renderers[base_url] = found
        return found

    # --- routing ------------------------------------------------------------

    def route(self, request: Request, path: str) -> Target:
        """What the request's URL names (before any fault)."""
        renderer = self.renderer(self.base_url(request))
        if self.settings.hostile_script and path.startswith(hostile_script.PATH_PREFIX):
            status, body, headers = hostile_script.answer(path, request.args)
            return Target("other", path, lambda _: Response(status, body, headers))
        if request.method not in (b"GET", b"HEAD"):
            kind = "list" if path.startswith(LISTING_PATH) else "other"
            return Target(kind, path, lambda _: Response(405, error_page(405)))
        if self.dcl is not None and path.startswith(DCL_PREFIX):
            answer = Response(*self.dcl.answer(path, request.args))
            return Target("dcl", path, lambda _: answer)
        if self.recording is not None:
            return self._recorded(request, path, renderer)
        if path == LISTING_PATH:
            paged = request.args.get(b"paged", [b"1"])[0].decode("latin-1")
            return self._listing(renderer, paged)
        if match := _PAGE_PATH.match(path):
            if match.group(1) == "1":
                return self._redirect("list", "list:1", renderer.listing_url(1), 301)
            return self._listing(renderer, match.group(1))
        if match := _DETAIL_PATH.match(path):
            entry = self.catalogue.entry(match.group(1))
            if entry is None:
                return self._not_found("detail", renderer)
            if self.catalogue.hostile.get(entry.slug) == "redirect_loop":
                # /x/ -> /x/?moved=1 -> /x/ -> ...
                moved = b"moved" in request.args
                location = renderer.base + entry.path + ("" if moved else "?moved=1")
                return self._redirect("detail", f"detail:{entry.slug}", location, 302)
            if not match.group(2):
                return self._redirect(
                    "detail", f"detail:{entry.slug}", renderer.base + entry.path, 301
                )
            return self._detail(renderer, entry)
        if path == LISTING_PATH.rstrip("/"):
            query = request.uri.partition(b"?")[2].decode("latin-1")
            location = f"{renderer.base}{LISTING_PATH}" + (f"?{query}" if query else "")
            return self._redirect("list", "list:1", location, 301)
        if path == "/robots.txt":
            robots = Response(200, ROBOTS_TXT, ((b"content-type", b"text/plain; charset=utf-8"),))
            return Target("other", path, lambda _: robots)
        if path == "/":
            location = renderer.listing_url(1)
            return self._redirect("other", path, location, 302)
        return self._not_found("other", renderer)

    def _listing(self, renderer: Renderer, number: str) -> Target:
        page = int(number) if number.isdigit() else 0
        if page < 1:
            return self._not_found("list", renderer)
        settings = self.settings
        hidden = settings.hide_pages is not None and (
            settings.hide_pages[0] <= page <= settings.hide_pages[1]
        )
        if page > self.catalogue.page_count() or hidden:
            if settings.past_end == "redirect":
                return self._redirect("list", f"list:{page}", renderer.listing_url(1), 302)
            return self._not_found("list", renderer)
        rate, shift, claim = settings.variant_rate, settings.drift, settings.claim_last_page

        def render(js_only: bool) -> Response:
            body = renderer.listing(page, rate, js_only, claimed_last_page=claim)
            return Response(200, drift.listing(body, shift))

        return Target("list", f"list:{page}", render, is_page=True)

    def _detail(self, renderer: Renderer, entry: Entry) -> Target:
        rate, shift = self.settings.variant_rate, self.settings.drift
        spoil = _SPOILERS.get(self.catalogue.hostile.get(entry.slug, ""), _unchanged)
        parsing_kind = self.catalogue.hostile_parsing.get(entry.slug)

        def render(js_only: bool) -> Response:
            page = drift.detail(spoil(renderer.detail(entry, rate, js_only)), shift)
            if parsing_kind is None:
                return Response(200, page)
            # hostile_parsing.py's group: the page, and its charset when not UTF-8
            page, charset = hostile_parsing.detail(parsing_kind, page, entry.certificate_id)
            if charset is None:
                return Response(200, page)
            return Response(
                200, page, ((b"content-type", f"text/html; charset={charset}".encode()),)
            )

        return Target("detail", f"detail:{entry.slug}", render, is_page=True)

    def _recorded(self, request: Request, path: str, renderer: Renderer) -> Target:
        """A page of the recording, links rewritten to this site; 404 when not recorded."""
        recording = self.recording
        assert recording is not None
        query = request.uri.partition(b"?")[2].decode("latin-1")
        page = recording.find(path, query)
        if page is None:
            missing = recording.not_found_page
            kind = page_kind(path)
            if missing is None:
                return self._not_found(kind, renderer)
            body = recording.body_for(missing, renderer.base)
            headers = recording.headers_for(missing, renderer.base)
            return Target(kind, "404", lambda _: Response(404, body, headers))
        body = recording.body_for(page, renderer.base)
        headers = recording.headers_for(page, renderer.base)
        is_page = page.status == 200 and page.kind in ("list", "detail") and page.is_text

        def render(js_only: bool) -> Response:
            shown = js_only_shell(body, page.encoding) if js_only else body
            return Response(page.status, shown, headers)

        return Target(page.kind, page.key, render, is_page=is_page)

    @staticmethod
    def _redirect(kind: str, key: str, location: str, status: int) -> Target:
        headers = ((b"content-type", HTML), (b"location", location.encode()))
        return Target(kind, key, lambda _: Response(status, b"", headers))

    @staticmethod
    def _not_found(kind: str, renderer: Renderer) -> Target:
        return Target(kind, "404", lambda _: Response(404, renderer.not_found()))

    # --- serving ------------------------------------------------------------

    def handle(self, request: Request) -> int:
        """Serve one page request (possibly later); always NOT_DONE_YET."""
        now = self.clock()
        path = request.path.decode("utf-8", "replace")
        uri = request.uri.decode("latin-1")
        target = self.route(request, path)
        visit = self.stats.arrive(now, uri, target.kind)
        request.notifyFinish().addBoth(self._closed, request, visit)
        count = self.path_counts.get(uri, 0)
        self.path_counts[uri] = count + 1
        if target.kind == "detail" and hostile_parsing.retry_after_answer(
            self.catalogue.hostile_parsing.get(target.key.partition(":")[2]), count
        ):
            # hostile_parsing.py: 429 with a Retry-After that is not a number ("²")
            headers = ((b"content-type", HTML), (b"retry-after", hostile_parsing.BAD_RETRY_AFTER))
            self._write(request, visit, Response(429, error_page(429), headers))
            return server.NOT_DONE_YET
        settings = self.settings
        decision = decide(
            settings,
            seed=self.catalogue.seed,
            kind=target.kind,
            path=uri,
            count=count,
            page_key=target.key,
            outage_window=self.outage_window,
            now=now,
            admitted_open=self.admitted_open,
            recent_refusals=self.refusals.count(now),
        )
        fault = decision.fault
        if fault is not None:
            self.stats.fault(visit, fault)
        if fault == "capacity":
            self.refusals.add(now)
        if fault == "outage":
            if settings.outage_mode == "reset":
                hard_reset(request)
            else:
                self._write(request, visit, Response(503, error_page(503)))
            return server.NOT_DONE_YET
        if fault != "capacity" and in_scope(settings, target.kind):
            visit.admitted = True
            self.admitted_open += 1
        js_only = decision.js_only and target.is_page
        if js_only:
            self.stats.fault(visit, "js_only")
        rendered = target.render(js_only)
        if js_only and settings.hostile_script:
            body = hostile_script.inject(rendered.body, settings.hostile_script)
            rendered = Response(rendered.status, body, rendered.headers)
        response = self._faulty(rendered, decision, visit, target.is_page, now)
        # rendered above: a page that triggers a mutation shows the catalogue before it
        self.mutations.served(target.kind, target.key, response.status)
        reset_at = int(decision.cut * len(response.body)) if fault == "reset" else None
        if decision.delay > 0:
            visit.pending = self.reactor.callLater(
                decision.delay, self._write, request, visit, response, reset_at
            )
        else:
            self._write(request, visit, response, reset_at)
        return server.NOT_DONE_YET

    def _faulty(
        self, response: Response, decision: Decision, visit: Visit, is_page: bool, now: float
    ) -> Response:
        """The response as the fault alters it."""
        fault = decision.fault
        if fault in ("error", "capacity", "throttle"):
            assert decision.status is not None
            headers: tuple[tuple[bytes, bytes], ...] = ((b"content-type", HTML),)
            retry_after = None
            if fault == "throttle":
                retry_after = self._retry_after(now)
            elif decision.status == 429:
                retry_after = "1"
            if retry_after is not None:
                visit.retry_after = retry_after
                headers += ((b"retry-after", retry_after.encode()),)
            return Response(decision.status, error_page(decision.status), headers)
        if fault == "truncate" and is_page:
            end = response.body.rfind(b"</html>")
            cut = max(1, int(decision.cut * end))
            return Response(response.status, response.body[:cut], response.headers)
        return response

    def _retry_after(self, now: float) -> str:
        """Alternately delta-seconds and an HTTP date (never earlier than promised)."""
        self.throttles += 1
        seconds = self.settings.retry_after
        if self.throttles % 2:
            return str(seconds)
        return formatdate(int(now) + seconds + 1, usegmt=True)

    def _write(
        self, request: Request, visit: Visit, response: Response, reset_at: int | None = None
    ) -> None:
        visit.pending = None
        if visit.done:
            return
        request.setResponseCode(response.status)
        for name, value in response.headers:
            request.setHeader(name, value)
        if self.set_cookies:
            # random, like a real session id: nothing may depend on it
            cookie = f"wp_sim_session={os.urandom(8).hex()}; Path=/; HttpOnly; SameSite=Lax"
            request.setHeader(b"set-cookie", cookie.encode())
        request.setHeader(b"content-length", str(len(response.body)).encode())
        if reset_at is None:
            request.write(response.body)
            request.finish()
            return
        request.write(response.body[:reset_at])
        visit.pending = self.reactor.callLater(_RESET_AFTER, hard_reset, request)

    def _closed(self, _result: object, request: Request, visit: Visit) -> None:
        """The request ended: answered, or its connection was lost."""
        visit.done = True
        pending: IDelayedCall | None = visit.pending
        if pending is not None and pending.active():
            pending.cancel()
        if visit.admitted:
            self.admitted_open -= 1
        status = request.code if request.startedWriting else None
        self.stats.finish(visit, status, self.clock())


class SiteResource(resource.Resource):
    """The single resource answering every URL (routing is done by SimServer)."""

    isLeaf = True

    def __init__(self, sim: SimServer) -> None:
        super().__init__()
        self.sim = sim

    def render(self, request: Request) -> bytes | int:  # type: ignore[override]
        """Dispatch to the control API or to the site's pages."""
        if request.path.startswith(b"/__sim__/") or request.path == b"/__sim__":
            return self.sim.api.render(request)
        return self.sim.handle(request)


class SimSite(server.Site):
    """A Site without the per-request access log (it costs CPU under load)."""

    noisy = False

    def log(self, request: Request) -> None:
        """Deliberately nothing: the account in /__sim__/ replaces the access log."""
