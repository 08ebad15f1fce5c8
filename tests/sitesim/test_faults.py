"""Faults: each one observable from a client, reproducible, and targetable."""

from __future__ import annotations

import http.client
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime

import pytest
from parsel import Selector

from sitesim.config import Settings
from sitesim.faults import (
    OVERLOAD_WINDOW,
    Decision,
    RefusalWindow,
    decide,
    latency,
)
from sitesim.process import SimulatedSite

from .webclient import Reply, fetch

CONNECTION_ERRORS = (http.client.HTTPException, ConnectionError)


def _decide(settings: Settings, kind: str = "detail", count: int = 0, **kw: object) -> Decision:
    arguments = {
        "seed": 1, "kind": kind, "path": "/csa_product/x/", "count": count,
        "page_key": "detail:x", "outage_window": None, "now": 100.0, "admitted_open": 0,
    }  # fmt: skip
    arguments.update(kw)
    return decide(settings, **arguments)  # type: ignore[arg-type]


# --- decisions (in process) -------------------------------------------------------


def test_decisions_are_reproducible_and_depend_on_path_and_count() -> None:
    settings = Settings(error_rate=0.5, throttle_rate=0.2, latency_ms=10, latency_dist="uniform")
    first = [_decide(settings, count=n) for n in range(200)]
    assert first == [_decide(settings, count=n) for n in range(200)]
    other_path = [_decide(settings, count=n, path="/csa_product/y/") for n in range(200)]
    assert first != other_path
    errors = sum(d.fault == "error" for d in first)
    assert 50 < errors < 120, "about error_rate of what throttling leaves"
    assert {d.status for d in first if d.fault == "error"} == {500, 502, 503, 504}


def test_priority_and_scope() -> None:
    everything = Settings(
        timeout_rate=1, reset_rate=1, throttle_rate=1, error_rate=1, truncate_rate=1, capacity=1
    )
    assert _decide(everything, outage_window=(0.0, 200.0)).fault == "outage"
    assert _decide(everything, admitted_open=1).fault == "capacity"
    assert _decide(everything).fault == "timeout"
    assert _decide(Settings(reset_rate=1, throttle_rate=1)).fault == "reset"
    assert _decide(Settings(throttle_rate=1, error_rate=1)).fault == "throttle"
    assert _decide(Settings(error_rate=1, truncate_rate=1)).fault == "error"
    assert _decide(Settings(truncate_rate=1)).fault == "truncate"
    assert _decide(everything, kind="other").fault is None
    assert _decide(everything, kind="other", outage_window=(0.0, 200.0)).fault == "outage"
    only_list = Settings(error_rate=1, only="list")
    assert _decide(only_list, kind="detail").fault is None
    assert _decide(only_list, kind="list").fault == "error"


def test_js_only_is_decided_per_page_not_per_request() -> None:
    settings = Settings(js_only_rate=0.5)
    for key in ("detail:a", "detail:b", "list:3", "list:4"):
        decisions = {_decide(settings, page_key=key, count=n).js_only for n in range(20)}
        assert len(decisions) == 1
    shells = sum(_decide(settings, page_key=f"detail:{i}").js_only for i in range(400))
    assert 150 < shells < 250


def test_refusals_slow_the_accepted_requests_in_proportion() -> None:
    settings = Settings(capacity=4, latency_ms=200, overload_latency_ms=50, overload_slowdown_ms=30)
    calm = _decide(settings, admitted_open=3)
    assert calm.fault is None
    assert calm.delay == pytest.approx(0.2)
    for refusals in (1, 5, 20):
        accepted = _decide(settings, admitted_open=3, recent_refusals=refusals)
        assert accepted.fault is None
        assert accepted.delay == pytest.approx(0.2 + 0.03 * refusals)
    refused = _decide(settings, admitted_open=4, recent_refusals=20)
    assert refused.fault == "capacity"
    assert refused.delay == pytest.approx(0.05), "a refusal itself is not slowed"
    # without latency or other faults the slowdown still applies; without a capacity, nothing
    bare = Settings(capacity=4, overload_slowdown_ms=30)
    assert _decide(bare, recent_refusals=2).delay == pytest.approx(0.06)
    assert _decide(Settings(latency_ms=200, overload_slowdown_ms=30), recent_refusals=9).delay == (
        pytest.approx(0.2)
    )
    assert _decide(Settings(capacity=4, overload_slowdown_ms=0), recent_refusals=9) == Decision()


def test_the_refusal_window_forgets_after_a_second() -> None:
    window = RefusalWindow()
    for at in (10.0, 10.2, 10.2, 10.7):
        window.add(at)
    assert window.count(10.7) == 4
    assert window.count(10.0 + OVERLOAD_WINDOW) == 3  # (now - 1 s, now]
    assert window.count(11.5) == 1
    assert window.count(11.7) == 0
    window.add(12.0)
    window.clear()
    assert window.count(12.0) == 0


def test_latency_distributions() -> None:
    assert latency(Settings(latency_ms=200), 0.9) == pytest.approx(0.2)
    assert latency(Settings(latency_ms=200, latency_dist="uniform"), 0.25) == pytest.approx(0.1)
    exponential = Settings(latency_ms=200, latency_dist="exponential")
    draws = [latency(exponential, n / 1000) for n in range(1000)]
    assert sum(draws) / len(draws) == pytest.approx(0.2, rel=0.05)


# --- observed from a client -------------------------------------------------------


def _detail(site: SimulatedSite, index: int = 0) -> str:
    return site.url(site.truth()[index]["url"])


def test_error_statuses(fault_site: SimulatedSite) -> None:
    fault_site.set_faults(error_rate=1)
    statuses = {fetch(_detail(fault_site, i)).status for i in range(30)}
    assert statuses == {500, 502, 503, 504}
    fault_site.set_faults(error_statuses="502")
    reply = fetch(_detail(fault_site))
    assert reply.status == 502
    assert b"502 Bad Gateway" in reply.body
    assert len(reply.body) < 1000
    assert fault_site.stats()["faults"]["error"] == 31


def test_throttle_retry_after_in_both_forms(fault_site: SimulatedSite) -> None:
    fault_site.set_faults(throttle_rate=1, retry_after=3)
    url = _detail(fault_site)
    first, second = fetch(url), fetch(url)
    assert first.status == second.status == 429
    assert first.headers["retry-after"] == "3"
    promised = parsedate_to_datetime(second.headers["retry-after"]).timestamp()
    assert promised - time.time() >= 3 - 1
    assert promised - time.time() <= 3 + 2
    log = fault_site.requests_log()
    assert [e["retry_after"] for e in log] == [
        first.headers["retry-after"],
        second.headers["retry-after"],
    ]
    assert [e["fault"] for e in log] == ["throttle", "throttle"]


def test_timeout_hangs_longer_than_a_client_timeout(fault_site: SimulatedSite) -> None:
    fault_site.set_faults(timeout_rate=1, hang_ms=1500)
    with pytest.raises(TimeoutError):
        fetch(_detail(fault_site), timeout=0.3)
    fault_site.set_faults(hang_ms=300)
    reply = fetch(_detail(fault_site), timeout=5)
    assert reply.status == 200
    assert reply.elapsed >= 0.29
    deadline = time.monotonic() + 5
    while fault_site.stats()["open_requests"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e["fault"] for e in fault_site.requests_log()] == ["timeout", "timeout"]


def test_reset_breaks_the_connection_mid_body(fault_site: SimulatedSite) -> None:
    fault_site.set_faults(reset_rate=1)
    url = _detail(fault_site)
    connection = http.client.HTTPConnection(fault_site.host, int(url.split(":")[2].split("/")[0]))
    connection.request("GET", url.split(fault_site.base_url)[1])
    response = connection.getresponse()
    assert response.status == 200, "the status line and headers were sent"
    with pytest.raises(CONNECTION_ERRORS):
        response.read()
    connection.close()
    assert fault_site.stats()["faults"]["reset"] == 1


def test_truncated_body_is_valid_http_but_incomplete_html(fault_site: SimulatedSite) -> None:
    fault_site.set_faults(truncate_rate=1)
    for index in range(5):
        reply = fetch(_detail(fault_site, index))
        assert reply.status == 200
        assert int(reply.headers["content-length"]) == len(reply.body)
        assert b"</html>" not in reply.body
    listing = fetch(fault_site.listing_url(2))
    assert listing.status == 200
    assert b"</html>" not in listing.body


def _main_content(html: str) -> str:
    match = re.search(
        r'<main id="main" class="site-main"><div class="container">\n(.*)\n</div></main>',
        html,
        re.S,
    )
    assert match
    return match.group(1)


@pytest.mark.parametrize("kind", ["detail", "list"])
def test_js_only_shell_embeds_exactly_the_normal_markup(
    fault_site: SimulatedSite, kind: str
) -> None:
    url = _detail(fault_site) if kind == "detail" else fault_site.listing_url(3)
    normal = fetch(url).text
    fault_site.set_faults(js_only_rate=1)
    shell = fetch(url)
    assert shell.status == 200
    page = Selector(text=shell.text)
    assert page.css("title::text").get() == Selector(text=normal).css("title::text").get()
    assert page.css("div#product-root")
    for selector in ("li.item", "h1.entry-title", "article.product", "a.page-numbers", "table"):
        assert not page.css(selector), selector
    script = page.css("script#product-root-loader::text").get()
    assert "setTimeout" in script
    markup = json.loads(re.search(r"var markup = (\".*\");", script).group(1))
    assert markup == _main_content(normal)
    assert fault_site.stats()["faults"]["js_only"] == 1


def test_latency_is_added_without_blocking(fault_site: SimulatedSite) -> None:
    fault_site.set_faults(latency_ms=300)
    url = _detail(fault_site)
    with ThreadPoolExecutor(8) as pool:
        started = time.monotonic()
        replies = list(pool.map(lambda _: fetch(url), range(8)))
        elapsed = time.monotonic() - started
    assert all(r.status == 200 and r.elapsed >= 0.29 for r in replies)
    assert elapsed < 1.5, "eight delayed requests overlap: the server never sleeps"
    assert fetch(fault_site.url("/robots.txt")).elapsed < 0.25, "only pages are delayed"


def test_outage_window(fault_site: SimulatedSite) -> None:
    url = _detail(fault_site)
    config = fault_site.set_faults(outage="0,1")
    assert config["outage"] == "0,1"
    assert config["outage_window"]["end"] - config["outage_window"]["start"] == pytest.approx(1)
    assert fetch(url).status == 503
    assert fetch(fault_site.url("/robots.txt")).status == 503, "everything is down"
    time.sleep(1.05)
    assert fetch(url).status == 200
    fault_site.set_faults(outage="0,1", outage_mode="reset")
    with pytest.raises(CONNECTION_ERRORS):
        fetch(url)
    later = fault_site.set_faults(outage="30,5")
    assert later["outage_window"]["start"] > time.time() + 25
    assert fetch(url).status == 200
    assert fault_site.stats()["faults"]["outage"] == 3


def _concurrently(urls: list[str]) -> list[Reply]:
    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(fetch, urls))


@pytest.mark.parametrize("status", [503, 429])
def test_capacity_limit(fault_site: SimulatedSite, status: int) -> None:
    fault_site.set_faults(
        capacity=2, latency_ms=500, capacity_status=status, overload_latency_ms=100
    )
    replies = _concurrently([_detail(fault_site, i) for i in range(6)])
    served = [r for r in replies if r.status == 200]
    refused = [r for r in replies if r.status == status]
    assert len(served) == 2
    assert len(refused) == 4
    assert all(0.09 <= r.elapsed < 0.45 for r in refused), "answered after the overload delay"
    if status == 429:
        assert all(r.headers["retry-after"] == "1" for r in refused)
    assert fault_site.stats()["faults"]["capacity"] == 4


def test_overload_slows_down_accepted_requests_for_a_second(fault_site: SimulatedSite) -> None:
    fault_site.set_faults(
        capacity=2, latency_ms=200, overload_latency_ms=50, overload_slowdown_ms=200
    )
    replies = _concurrently([_detail(fault_site, i) for i in range(6)])
    assert sorted(r.status for r in replies) == [200, 200, 503, 503, 503, 503]
    served_first = [r for r in replies if r.status == 200]
    assert all(r.elapsed < 0.9 for r in served_first), "admitted before any refusal"
    # accepted while 4 refusals are less than a second old: 200 ms + 4 x 200 ms
    slowed = fetch(_detail(fault_site, 6))
    assert slowed.status == 200
    assert slowed.elapsed >= 0.99
    refused_at = max(e["t"] for e in fault_site.requests_log() if e["fault"] == "capacity")
    time.sleep(max(0.0, refused_at + 1.05 - time.time()))
    calm = fetch(_detail(fault_site, 7))
    assert calm.status == 200
    assert calm.elapsed < 0.9, "the refusals are over a second old: normal latency"
    durations = [e["duration_ms"] for e in fault_site.requests_log() if e["status"] == 200]
    assert durations[-2] >= 999
    assert fault_site.faults()["overload_slowdown_ms"] == 200


@pytest.mark.parametrize("only", ["list", "detail"])
def test_only_targets_one_kind_of_page(fault_site: SimulatedSite, only: str) -> None:
    fault_site.set_faults(error_rate=1, only=only)
    listing, detail = fetch(fault_site.listing_url(2)), fetch(_detail(fault_site))
    assert (listing.status >= 500) == (only == "list")
    assert (detail.status >= 500) == (only == "detail")


def test_same_request_sequence_gets_the_same_faults(fault_site: SimulatedSite) -> None:
    fault_site.set_faults(error_rate=0.3, throttle_rate=0.2, truncate_rate=0.2)
    urls = [_detail(fault_site, i % 7) for i in range(40)] + [fault_site.listing_url(2)] * 5

    def run() -> list[tuple[int, int]]:
        fault_site.reset_stats()
        return [(r.status, len(r.body)) for r in map(fetch, urls)]

    first = run()
    assert first == run()
    assert len({status for status, _ in first}) >= 3


def test_fault_config_api(fault_site: SimulatedSite) -> None:
    config = fault_site.faults()
    assert config == {**Settings().as_json(), "outage_window": None}
    with pytest.raises(ValueError, match="error_rate"):
        fault_site.set_faults(error_rate=1.5)
    with pytest.raises(ValueError, match="unknown option"):
        fault_site.set_faults(eror_rate=0.5)
    with pytest.raises(ValueError, match="only"):
        fault_site.set_faults(only="sometimes")
    assert fault_site.faults() == config, "a rejected change changes nothing"
