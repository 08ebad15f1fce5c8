"""The rendering browser against hostile JavaScript (issue 15, "Servers we run").

The simulated site serves every product page as a JavaScript-only shell whose
script first tries to reach three local services in every way a page can
(``--hostile-script``, simulated-site/sitesim/hostile_script.py): fetch, XHR,
forms, popups, frames, navigations, images, scripts, WebSockets, beacons, event
sources, redirects through the site itself, a service worker and WebRTC. The
services are real listeners on 127.0.0.1 (TCP and UDP on one port each, standing
in for scrapyd, a Pushgateway and the crawl's monitoring server) that record
whatever reaches them. The crawl renders those pages in the real Chromium; the
"browser" it is pointed at is a wrapper that records its environment and
arguments and then runs Chromium.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from scrapy.settings import Settings

from matter_crawler.rendering.browser import (
    browser_environment,
    find_browser,
    proxy_args,
    sandbox_wanted,
)
from matter_crawler.rendering.confine import origin_of, rendering_origins

from ..conftest import IN_CI
from ..helpers import crawl_runs, database_differences, query, run_crawl

SECRET = "s3cr3t-scrapyd-password"


class Listener:
    """A TCP and a UDP socket on one loopback port that record everything that reaches them."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        recorder = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(2)
                try:
                    first = self.request.recv(300)
                except OSError:
                    first = b""
                recorder.hits.append("tcp " + first.split(b"\r\n", 1)[0].decode("latin-1"))
                with contextlib.suppress(OSError):
                    self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.tcp.daemon_threads = True
        self.port = self.tcp.server_address[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads = [
            threading.Thread(target=self.tcp.serve_forever, daemon=True),
            threading.Thread(target=self._receive_udp, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _receive_udp(self) -> None:
        while True:
            try:
                data, _ = self.udp.recvfrom(2048)
            except OSError:
                return
            self.hits.append(f"udp {data[:4].hex()}")

    def stop(self) -> None:
        self.tcp.shutdown()
        self.tcp.server_close()
        self.udp.close()


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    started = [Listener() for _ in range(3)]
    try:
        yield started
    finally:
        for listener in started:
            listener.stop()


@pytest.fixture
def chromium() -> str:
    settings = Settings()
    settings.setmodule("matter_crawler.settings")
    browser = find_browser(settings)
    if browser is None:
        message = "no browser found (chromium renders the hostile pages): `make setup` installs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return browser


def recording_browser(tmp_path: Path, chromium: str) -> tuple[Path, Path, Path]:
    """A "browser" that records its environment and arguments, then runs Chromium."""
    environment, arguments = tmp_path / "browser.env", tmp_path / "browser.args"
    wrapper = tmp_path / "chromium"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"env > {shlex.quote(str(environment))}\n"
        f'printf "%s\\n" "$@" > {shlex.quote(str(arguments))}\n'
        f'exec {shlex.quote(chromium)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper, environment, arguments


def reach(listener: Listener) -> None:
    """Prove the listener records what reaches it (so that "nothing reached it" means something)."""
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as client:
        client.sendall(b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
        client.recv(100)
    assert listener.hits == ["tcp GET /probe HTTP/1.1"]
    listener.hits.clear()


@pytest.mark.slow
@pytest.mark.system
def test_a_hostile_page_reaches_no_local_service_and_sees_no_secret(
    chromium, simulated_site, database_url, listeners, tmp_path, monkeypatch
):
    for listener in listeners:
        reach(listener)
    monkeypatch.setenv("SCRAPYD_PASSWORD", SECRET)
    monkeypatch.setenv("MATTER_TEST_TOKEN", SECRET)
    browser, environment, arguments = recording_browser(tmp_path, chromium)
    # some product pages are shells whose script attacks the three listeners first
    site = simulated_site(
        products=12,
        seed=1,
        js_only_rate=0.3,
        only="detail",
        hostile_script=[listener.url for listener in listeners],
    )

    result = run_crawl(
        site.base_url, database_url, settings={"PLAYWRIGHT_BROWSER_PATH": str(browser)}
    ).check()

    # the crawl is whole: every product stored, nothing dead-lettered
    assert database_differences(database_url, site.truth()) == []
    assert query(database_url, "select count(*) from dead_letters") == [(0,)]
    shells = len({entry["path"] for entry in site.requests_log() if entry["fault"] == "js_only"})
    assert shells >= 2
    stats = crawl_runs(database_url)[-1]["stats"]
    assert stats["render/requested"] == shells
    # nothing reached any listener: no HTTP request, no connection, no datagram
    assert [listener.hits for listener in listeners] == [[], [], []]
    # what the routes saw, they blocked and counted (the rest met the refusing proxy)
    for kind in ("fetch", "xhr", "document", "image", "script", "stylesheet", "ping"):
        assert stats.get(f"render/blocked/{kind}", 0) >= 3 * shells, kind
    assert stats["render/blocked/websocket"] >= 3 * shells
    assert stats["render/blocked/eventsource"] >= 3 * shells
    assert "Blocked " in result.output
    assert "requests of the rendered page" in result.output
    # the browser's environment holds only the allowed variables, no secret
    seen = dict(line.split("=", 1) for line in environment.read_text().splitlines() if "=" in line)
    assert SECRET not in environment.read_text()
    assert "SCRAPYD_PASSWORD" not in seen
    shell_own = {"PWD", "SHLVL", "_"}  # what the wrapper's /bin/sh adds
    assert set(seen) - shell_own == set(browser_environment(_allowed_env(), seen))
    assert "PATH" in seen
    # the browser's arguments: the refusing proxy for all but the site, WebRTC kept off UDP
    args = arguments.read_text().splitlines()
    site_origin = origin_of(site.base_url)
    assert site_origin is not None
    assert f"--proxy-bypass-list=<-loopback>;{site_origin.split('://')[1]}" in args
    assert any(arg.startswith("--proxy-server=http://127.0.0.1:") for arg in args)
    assert "--webrtc-ip-handling-policy=disable_non_proxied_udp" in args
    # the sandbox: on for a normal user; as root Chromium cannot run it, and the log says so
    if os.geteuid() == 0:
        assert "--no-sandbox" in args
        assert "running as root, where Chromium cannot run it" in result.output
    else:
        assert "--no-sandbox" not in args


def _allowed_env() -> list[str]:
    settings = Settings()
    settings.setmodule("matter_crawler.settings")
    return settings.getlist("RENDERING_BROWSER_ENV")


@pytest.mark.system
@pytest.mark.skipif(os.geteuid() != 0, reason="Chromium's sandbox works for a normal user")
def test_as_root_a_forced_sandbox_is_a_config_failure_that_says_why(
    chromium, simulated_site, database_url
):
    site = simulated_site(products=12, seed=1, js_only_rate=1.0, only="detail")
    result = run_crawl(site.base_url, database_url, settings={"RENDERING_SANDBOX": True}).check()
    letters = query(database_url, "select failure_class, attempts, last_error from dead_letters")
    assert len(letters) == 12
    for failure_class, attempts, error in letters:
        assert (failure_class, attempts) == ("config", 1)
        assert "Running as root without --no-sandbox is not supported" in error
        assert error.endswith(
            "run the crawl as a normal user, or set RENDERING_SANDBOX=auto (off as root)"
        )
    assert "sandbox off" not in result.output


# -- units ------------------------------------------------------------------------------------


def test_the_sandbox_is_on_except_as_root_unless_told():
    assert sandbox_wanted("auto", euid=1000)
    assert not sandbox_wanted("auto", euid=0)
    assert sandbox_wanted(True, euid=0)  # Chromium then refuses to start: a config failure
    assert sandbox_wanted("true", euid=0)
    assert not sandbox_wanted(False, euid=1000)


def test_the_browser_gets_only_the_allowed_environment():
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/crawler",
        "LC_ALL": "C.UTF-8",
        "XDG_RUNTIME_DIR": "/run/user/1000",
        "SCRAPYD_PASSWORD": SECRET,
        "DATABASE_URL": "postgresql://crawler:pw@db/matter",
        "MATTER_DATABASE_URL": "postgresql://crawler:pw@db/matter",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "PATHOLOGICAL": "x",  # a name that starts like an allowed one
    }
    assert browser_environment(_allowed_env(), environ) == {
        "PATH": "/usr/bin",
        "HOME": "/home/crawler",
        "LC_ALL": "C.UTF-8",
        "XDG_RUNTIME_DIR": "/run/user/1000",
    }


def test_origins_and_the_proxy_bypass():
    assert origin_of("http://127.0.0.1:8800/csa_product/x/") == "http://127.0.0.1:8800"
    assert origin_of("HTTPS://CSA-IOT.org/x") == "https://csa-iot.org:443"
    assert origin_of("ws://127.0.0.1:8800/socket") == "http://127.0.0.1:8800"
    assert origin_of("http://[::1]:6800/") == "http://[::1]:6800"
    assert origin_of("data:text/html,x") is None
    assert origin_of("file:///etc/passwd") is None
    assert origin_of("http://127.0.0.1:notaport/") is None
    settings = Settings(
        {
            "CSA_BASE_URL": "http://127.0.0.1:8800",
            "RENDERING_ALLOWED_ORIGINS": ["https://cdn.example.org"],
        }
    )
    origins = rendering_origins(settings)
    assert origins == ["http://127.0.0.1:8800", "https://cdn.example.org:443"]
    server, bypass = proxy_args(origins)
    assert server.startswith("--proxy-server=http://127.0.0.1:")
    assert bypass == "--proxy-bypass-list=<-loopback>;127.0.0.1:8800;cdn.example.org:443"
    # the proxy port refuses connections
    port = int(server.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    with pytest.raises(ValueError, match="not an http"):
        rendering_origins(Settings({"RENDERING_ALLOWED_ORIGINS": ["ftp://x"]}))
