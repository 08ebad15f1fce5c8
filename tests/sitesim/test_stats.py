"""The server's own account, the request log, and the loopback-only control API."""

from __future__ import annotations

import fcntl
import socket
import struct
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from sitesim.api import is_loopback
from sitesim.catalogue import MIN_PRODUCTS, Catalogue
from sitesim.config import Settings
from sitesim.process import SimulatedSite
from sitesim.server import SimServer, SimSite, SiteResource

from .webclient import fetch


def test_counts_by_kind_and_status(fault_site: SimulatedSite) -> None:
    site = fault_site
    detail = site.url(site.truth()[0]["url"])
    started = time.time()
    fetch(site.listing_url(1))
    fetch(site.listing_url(2))
    fetch(site.listing_url(99))  # 404, still a list request
    fetch(detail)
    fetch(site.url("/csa_product/nope/"))
    fetch(site.url("/robots.txt"))
    site.truth()  # control API: never counted
    site.faults()
    stats = site.stats()
    assert stats["requests_total"] == 6
    assert stats["by_kind"] == {"list": 3, "detail": 2, "other": 1}
    assert stats["by_status"] == {"200": 4, "404": 2}
    assert stats["faults"] == dict.fromkeys(stats["faults"], 0)
    assert stats["open_requests"] == 0
    assert stats["max_concurrency"] == 1
    assert sum(count for _, count in stats["rps"]) == 6
    assert stats["started_at"] <= started
    log = site.requests_log()
    assert [e["kind"] for e in log] == ["list", "list", "list", "detail", "detail", "other"]
    assert [e["status"] for e in log] == [200, 200, 404, 200, 404, 200]
    assert log[0]["path"] == site.listing_url(1)[len(site.base_url) :]
    assert all(e["fault"] is None and e["retry_after"] is None for e in log)
    assert all(e["duration_ms"] >= 0 and e["t"] >= started for e in log)
    assert site.requests_log(since=log[3]["t"]) == log[3:]


def test_max_concurrency_counts_slow_requests_open_at_once(fault_site: SimulatedSite) -> None:
    fault_site.set_faults(latency_ms=400)
    urls = [fault_site.url(r["url"]) for r in fault_site.truth()[:5]]
    with ThreadPoolExecutor(5) as pool:
        assert {r.status for r in pool.map(fetch, urls)} == {200}
    stats = fault_site.stats()
    assert stats["max_concurrency"] == 5
    assert stats["open_requests"] == 0
    assert all(e["duration_ms"] >= 399 for e in fault_site.requests_log())


def test_reset_zeroes_everything(fault_site: SimulatedSite) -> None:
    fault_site.set_faults(error_rate=1)
    fetch(fault_site.listing_url(1))
    assert fault_site.stats()["requests_total"] == 1
    before = time.time()
    stats = fault_site.reset_stats()
    assert stats["requests_total"] == 0
    assert stats["by_status"] == {}
    assert stats["rps"] == []
    assert stats["max_concurrency"] == 0
    assert sum(stats["faults"].values()) == 0
    assert stats["started_at"] >= before
    assert fault_site.requests_log() == []


def test_request_log_is_a_ring_buffer(fault_site: SimulatedSite) -> None:
    fault_site.set_faults(request_log_size=3)
    for page in range(1, 6):
        fetch(fault_site.listing_url(page))
    log = fault_site.requests_log()
    assert [e["path"].split("/")[3] for e in log] == ["3", "4", "5"]
    assert fault_site.stats()["requests_total"] == 5


def test_loopback_check() -> None:
    for host in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        assert is_loopback(host), host
    for host in ("10.0.0.1", "192.168.1.2", "::ffff:10.0.0.1", "2001:db8::1", "", "localhost"):
        assert not is_loopback(host), host


def test_control_api_errors(site: SimulatedSite) -> None:
    assert fetch(site.url("/__sim__/nothing")).status == 404
    reply = fetch(site.url("/__sim__/mutate"))
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"
    request = urllib.request.Request(site.url("/__sim__/faults"), data=b"[1, 2]", method="POST")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)
    assert raised.value.code == 400


def _status_for_peer(peer: IPv4Address | IPv6Address, path: str) -> int:
    """The status the site's server stack answers ``GET path`` from a client at ``peer``.

    The real server (Twisted's HTTP channel, the site's resource, the control
    API) with an in-memory transport in place of the socket: the one way to be
    a non-loopback client on a machine that has no other interface.
    """
    clock = Clock()
    sim = SimServer(Catalogue(MIN_PRODUCTS, 1), Settings(), "127.0.0.1", clock)
    channel = SimSite(SiteResource(sim), reactor=clock).buildProtocol(peer)
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8800), peerAddress=peer)
    channel.makeConnection(transport)
    channel.dataReceived(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:8800\r\nConnection: close\r\n\r\n".encode()
    )
    status_line = transport.value().split(b"\r\n", 1)[0]  # b"HTTP/1.1 403 Forbidden"
    return int(status_line.split()[1])


@pytest.mark.parametrize(
    ("peer", "api_status"),
    [
        (IPv4Address("TCP", "127.0.0.1", 40000), 200),
        (IPv4Address("TCP", "127.8.9.10", 40000), 200),
        (IPv6Address("TCP", "::1", 40000), 200),
        (IPv6Address("TCP", "::ffff:127.0.0.1", 40000), 200),
        (IPv4Address("TCP", "192.0.2.7", 40000), 403),
        (IPv4Address("TCP", "10.0.0.1", 40000), 403),
        (IPv6Address("TCP", "2001:db8::1", 40000), 403),
        (IPv6Address("TCP", "::ffff:10.0.0.1", 40000), 403),
    ],
    ids=lambda value: getattr(value, "host", value),
)
def test_control_api_answers_loopback_peers_only(peer, api_status: int) -> None:
    assert _status_for_peer(peer, "/__sim__/stats") == api_status
    assert _status_for_peer(peer, "/robots.txt") == 200  # the site itself answers anyone


def _interface_ipv4_addresses() -> Iterator[str]:
    """The IPv4 address of every network interface (Linux's SIOCGIFADDR)."""
    siocgifaddr = 0x8915
    try:
        interfaces = socket.if_nameindex()
    except OSError:
        return
    for _index, name in interfaces:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(probe.fileno(), siocgifaddr, request)
            except OSError:  # an interface without an IPv4 address, or not Linux
                continue
        yield socket.inet_ntoa(answer[20:24])


def _non_loopback_address() -> str | None:
    return next((a for a in _interface_ipv4_addresses() if not is_loopback(a)), None)


def test_control_api_refuses_other_clients() -> None:
    """End to end, over a real socket, when the machine has an address to connect from."""
    address = _non_loopback_address()
    if address is None:
        # test_control_api_answers_loopback_peers_only checks the refusal on every machine
        pytest.skip("no network interface has a non-loopback IPv4 address to connect from")
    with SimulatedSite(products=20, seed=1, host="0.0.0.0") as site:
        port = site.base_url.rsplit(":", 1)[1]
        assert fetch(f"http://{address}:{port}/__sim__/stats").status == 403
        assert site.stats()["requests_total"] == 0, "loopback clients may"
        page = fetch(f"http://{address}:{port}{site.truth()[0]['url']}")
        assert page.status == 200
        assert f'href="http://{address}:{port}/csa_product/' in page.text, (
            "on a wildcard address, links follow the Host header"
        )
