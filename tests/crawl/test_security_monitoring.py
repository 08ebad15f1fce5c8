"""The crawl's HTTP server against local clients that hold on: limits on connections,
event streams, unread events and idle time (issue 15, "Servers we run").

The server is real (Twisted on the test's reactor, or a real crawl's), and so are
the clients: sockets on 127.0.0.1. A client "that never reads" is a socket with a
small receive buffer and a small maximum segment size, so the kernel holds little
for it (about 130 KB, against 3-4 MB with loopback's defaults) and what the
server sends beyond that stays in the server's own memory unless the server stops it.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise

import pytest
import pytest_twisted
from scrapy import Spider
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.test import get_crawler
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from matter_crawler.monitoring.events import EventHub
from matter_crawler.monitoring.resources import JsonResource
from matter_crawler.monitoring.server import MonitoringServer
from matter_crawler.monitoring.stream import EventsResource

from ..helpers import (
    monitoring_address,
    project_defaults,
    sqlite_url,
    start_crawl,
    stop_process,
    wait_for,
)


def project_settings(**overrides) -> dict:
    """The project's settings (the limits' defaults live there), any free port, overrides."""
    return {**project_defaults(), "MONITORING_PORT": 0, **overrides}


def silent_socket(port: int, request: bytes | None = None) -> socket.socket:
    """A client that never reads: tiny receive window and segments, so the kernel buffers little."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    client.connect(("127.0.0.1", port))
    if request is not None:
        client.sendall(request)
    return client


def events_request(port: int) -> bytes:
    return f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def closed_by_server(client: socket.socket, within: float) -> bool:
    """Whether the server closed (or reset) the connection within ``within`` seconds.

    Reads and discards whatever the server sent before closing.
    """
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        client.settimeout(left)
        try:
            if not client.recv(65536):
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def read_answer(client: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sent until it closed the connection (or ``timeout``)."""
    client.settimeout(timeout)
    received = b""
    try:
        while chunk := client.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received


@contextmanager
def closing_all(sockets: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield sockets
    finally:
        for client in sockets:
            client.close()


class StreamReader(threading.Thread):
    """A well-behaved /events client: reads every event until the server closes."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.status: int | None = None
        self.events: list[tuple[float, str]] = []  # (arrival, type)
        self.closed_event: dict | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=120) as client:
                client.sendall(events_request(self.port))
                lines = client.makefile("rb")
                self.status = int(lines.readline().split()[1])
                kind = None
                for raw in lines:
                    line = raw.decode().rstrip("\r\n")
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind is not None:
                        self.events.append((time.monotonic(), kind))
                        if kind == "closed":
                            self.closed_event = json.loads(line[6:])
                            return
        except BaseException as error:  # reported by the test
            self.error = error


# -- the server on its own ---------------------------------------------------------------


async def sleep(seconds: float) -> None:
    """Let the reactor (and the server on it) run for ``seconds``."""
    from twisted.internet import reactor

    await deferLater(reactor, seconds)


async def started_server(events: bool = True, **settings) -> tuple[MonitoringServer, EventHub, int]:
    crawler = get_crawler(Spider, project_settings(**settings))
    server = MonitoringServer.from_crawler(crawler)
    hub = EventHub(recent=10)
    server.put("status", JsonResource(lambda: {"ok": True}))
    if events:
        server.put("events", EventsResource(hub, server.limits))
    assert server.start()
    assert server.port is not None
    return server, hub, server.port


@pytest_twisted.ensureDeferred
async def test_connections_over_the_cap_are_closed_at_once():
    server, _hub, port = await started_server(events=False, MONITORING_MAX_CONNECTIONS=5)
    try:
        clients = await deferToThread(lambda: [silent_socket(port) for _ in range(8)])
        with closing_all(clients):
            # every connection accepted or refused by the server, however long a busy machine takes
            await deferToThread(
                wait_for,
                lambda: len(server.site.channels) + server.site.refused_connections == 8,
                10.0,
            )
            assert (len(server.site.channels), server.site.refused_connections) == (5, 3)
            closed = await deferToThread(lambda: [closed_by_server(c, 0.3) for c in clients])
            assert closed == [False] * 5 + [True] * 3
            # a slot freed is a slot taken again
            clients[0].close()
            await deferToThread(wait_for, lambda: len(server.site.channels) == 4, 10.0)
            again = await deferToThread(silent_socket, port)
            clients.append(again)
            assert not await deferToThread(closed_by_server, again, 0.5)
    finally:
        await deferred_from_coro(server.stop())


@pytest_twisted.ensureDeferred
async def test_a_connection_without_a_request_is_closed_after_the_idle_timeout():
    server, _hub, port = await started_server(events=False, MONITORING_IDLE_TIMEOUT=1.0)
    try:
        idle = await deferToThread(silent_socket, port)
        half = await deferToThread(silent_socket, port, b"GET /status HTTP/1.1\r\n")
        with closing_all([idle, half]):
            started = time.monotonic()
            assert await deferToThread(closed_by_server, idle, 10.0)
            assert await deferToThread(closed_by_server, half, 10.0)
            assert time.monotonic() - started < 5.0
    finally:
        await deferred_from_coro(server.stop())


@pytest_twisted.ensureDeferred
async def test_event_clients_over_the_limit_get_503_with_retry_after():
    server, hub, port = await started_server(MONITORING_MAX_CLIENTS=2)
    events = server.root.children[b"events"]
    readers = [StreamReader(port), StreamReader(port)]
    try:
        for reader in readers:
            reader.start()
        # both streams taken, not merely both connections open: a reader connected but
        # whose request the server has not rendered yet holds no stream, and the third
        # client would take it (CI, 2026-12-03)
        await deferToThread(wait_for, lambda: len(events.clients) == 2, 10.0)
        third = await deferToThread(silent_socket, port, events_request(port))
        with closing_all([third]):
            answer = await deferToThread(read_answer, third, 5.0)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert re.search(rb"(?im)^retry-after: \d+\r?$", head)
        assert b"MONITORING_MAX_CLIENTS" in body
        hub.close("finished")  # the two accepted clients still stream, to the end
        await deferToThread(lambda: [reader.join(10) for reader in readers])
        assert [(r.status, r.error, r.closed_event) for r in readers] == [
            (200, None, {"type": "closed", **hub.closed})
        ] * 2
    finally:
        await deferred_from_coro(server.stop())


@pytest_twisted.ensureDeferred
async def test_a_client_that_does_not_read_is_dropped_and_its_events_freed():
    buffer = 64 * 1024
    server, hub, port = await started_server(
        MONITORING_CLIENT_BUFFER=buffer, MONITORING_IDLE_TIMEOUT=60.0
    )
    events = server.root.children[b"events"]
    reader = StreamReader(port)
    reader.start()
    try:
        silent = await deferToThread(silent_socket, port, events_request(port))
        with closing_all([silent]):
            await deferToThread(wait_for, lambda: len(events.clients) == 2, 10.0)
            streams = list(events.clients.values())
            most_queued = 0
            # 4 MB of events, 2 KB each: far beyond what the silent client's kernel buffers hold
            for number in range(2000):
                hub.task("done", "detail", f"http://site/{number}", name="x" * 2000)
                most_queued = max(most_queued, *(stream.queued for stream in streams))
                if number % 20 == 0:
                    await sleep(0.01)  # 40 KB at a time: the reader keeps up
            assert most_queued <= buffer
            (dropped,) = [stream for stream in streams if stream.closed]
            assert list(events.clients.values()) == [s for s in streams if s is not dropped]
            assert (dropped.queued, list(dropped.queue)) == (0, [])  # its events were freed
            assert await deferToThread(closed_by_server, silent, 5.0)
            hub.close("finished")
            await deferToThread(reader.join, 30)
            assert reader.error is None
            tasks = [kind for _, kind in reader.events if kind == "task"]
            assert len(tasks) == 2000  # the reader lost nothing
    finally:
        await deferred_from_coro(server.stop())


@pytest_twisted.ensureDeferred
async def test_a_client_that_stalls_is_dropped_after_the_idle_timeout():
    server, hub, port = await started_server(
        MONITORING_CLIENT_BUFFER=64 * 1024 * 1024, MONITORING_IDLE_TIMEOUT=1.0
    )
    events = server.root.children[b"events"]
    try:
        silent = await deferToThread(silent_socket, port, events_request(port))
        with closing_all([silent]):
            await deferToThread(wait_for, lambda: len(events.clients) == 1, 10.0)
            for number in range(400):  # 800 KB: its connection fills, its queue stays small
                hub.task("done", "detail", f"http://site/{number}", name="x" * 2000)
            (stream,) = events.clients.values()
            assert stream.paused
            await sleep(2.0)
            assert not events.clients
            assert await deferToThread(closed_by_server, silent, 5.0)
    finally:
        await deferred_from_coro(server.stop())


# -- a real crawl, with 50 clients that never read -------------------------------------------


def resident_mb(pid: int) -> float:
    """The process's resident memory; 0 once it has exited (a zombie has none)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def products_done(url: str) -> int:
    with urllib.request.urlopen(f"{url}status", timeout=10) as answer:
        snapshot = json.loads(answer.read())
    return ((snapshot or {}).get("stages") or {}).get("detail", {}).get("done", 0)


@pytest.mark.slow
def test_fifty_clients_that_never_read_cost_the_crawl_nothing(simulated_site, tmp_path):
    # 100 ms a page, 8 at a time: the crawl lasts several seconds after the clients
    # connect however fast the machine is (on an idle one, without latency, it ended
    # 1.6 s after they did)
    site = simulated_site(products=600, seed=3, latency_ms=100)
    log = tmp_path / "crawl.log"
    crawl = start_crawl(
        site.base_url,
        sqlite_url(tmp_path / "matter.sqlite3"),
        log_path=log,
        settings={
            # a snapshot every 100 ms (the aggregator's floor): ten times a long crawl's rate
            "PROGRESS_INTERVAL": 0.1,
            "PROGRESS_LOG_INTERVAL": 0,
            "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
        },
    )
    silent: list[socket.socket] = []
    try:
        url, port = monitoring_address(log)
        reader = StreamReader(port)
        reader.start()
        wait_for(lambda: products_done(url) >= 100, 120, 0.2, "the crawl to get going")
        before = resident_mb(crawl.pid)
        silent += [silent_socket(port, events_request(port)) for _ in range(50)]
        clients_connected = time.monotonic()
        peak = before
        while crawl.poll() is None:
            peak = max(peak, resident_mb(crawl.pid))
            time.sleep(0.1)
        assert crawl.wait(timeout=180) == 0, log.read_text()[-4000:]
        answers = [read_answer(client, 2.0) for client in silent]
    finally:
        for client in silent:
            client.close()
        stop_process(crawl)
    output = log.read_text()
    print(f"resident memory: {before:.1f} MB before the 50 clients, peak {peak:.1f} MB after")
    assert "Traceback" not in output
    assert "Spider closed (finished)" in output
    # memory: c3359a7 grew ~22 MB more with these clients than without (29 MB against 7 MB)
    assert peak - before < 12, f"resident memory grew from {before:.0f} MB to {peak:.0f} MB"
    # the well-behaved client kept its stream, to the closed event
    reader.join(30)
    assert (reader.status, reader.error) == (200, None)
    assert reader.closed_event is not None
    assert reader.closed_event["reason"] == "finished"
    snapshots = [moment for moment, kind in reader.events if kind == "snapshot"]
    # it went on receiving while the 50 silent clients were connected
    assert len([moment for moment in snapshots if moment > clients_connected]) > 20
    assert max(later - earlier for earlier, later in pairwise(snapshots)) < 5.0
    # the others: 9 slots left (MONITORING_MAX_CLIENTS = 10), the rest refused with 503
    statuses = [
        answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/") else b"" for answer in answers
    ]
    refused = [answer for answer, status in zip(answers, statuses, strict=True) if status == b"503"]
    assert len(refused) >= 41
    assert all(re.search(rb"(?im)^retry-after: \d+\r?$", answer) for answer in refused)
