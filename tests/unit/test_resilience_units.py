"""Classified retry and circuit breaker logic on scripted outcomes (no network)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from time import time

import pytest
from playwright.async_api import Error as PlaywrightError
from scrapy import Request
from scrapy.http import HtmlResponse, Response
from scrapy.settings import Settings
from scrapy.utils.test import get_crawler
from twisted.internet.error import ConnectionRefusedError, TimeoutError

from matter_crawler.core.scheduler import NOT_BEFORE
from matter_crawler.exceptions import DeadLettered
from matter_crawler.middlewares.breaker import (
    Breaker,
    BreakerPolicy,
    CircuitBreakerMiddleware,
    CircuitHeld,
    CircuitState,
)
from matter_crawler.middlewares.classify import FailureClass, classify_exception, classify_status
from matter_crawler.middlewares.retry import (
    ClassifiedRetryMiddleware,
    RetryPolicy,
    build_policies,
    parse_retry_after,
    warn_replaced_stock_settings,
)
from matter_crawler.signals import circuit_state_changed, request_dead_lettered, request_retrying

from ..helpers import project_crawler

URL = "https://csa-iot.org/csa_product/plug-1/"
GOOD_PAGE = b"<html><body><h1 class='entry-title'>P</h1><div class='entry-product-details'></div></body></html>"


def response(status: int = 200, body: bytes = GOOD_PAGE, headers=None, request=None) -> Response:
    request = request or Request(URL, meta={"stage": "detail"})
    return HtmlResponse(URL, status=status, body=body, headers=headers, request=request)


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)


@pytest.fixture
def crawler():
    return project_crawler(
        settings={
            "RETRY_JITTER_SEED": 1,
            "RETRY_CONTENT_CHECK": "matter_crawler.parsing.content.content_problem",
        }
    )


@pytest.fixture
def retry(crawler):
    crawler.stats.open_spider()
    return ClassifiedRetryMiddleware.from_crawler(crawler)


class TestClassification:
    @pytest.mark.parametrize(
        ("status", "headers", "expected"),
        [
            (200, None, None),
            (429, None, FailureClass.THROTTLED),
            (503, {"Retry-After": "3"}, FailureClass.THROTTLED),
            (503, None, FailureClass.SERVER),
            (500, None, FailureClass.SERVER),
            (522, None, FailureClass.SERVER),
            (408, None, FailureClass.TRANSIENT),
            (404, None, FailureClass.PERMANENT),
            (410, None, FailureClass.PERMANENT),
            (403, None, FailureClass.PERMANENT),
            (302, None, FailureClass.PERMANENT),
        ],
    )
    def test_statuses(self, status, headers, expected):
        assert classify_status(response(status, headers=headers)) == expected

    def test_exceptions(self):
        assert classify_exception(TimeoutError()) is FailureClass.TRANSIENT
        assert classify_exception(ConnectionRefusedError()) is FailureClass.TRANSIENT
        assert (
            classify_exception(ValueError("Missing scheme in request url")) is FailureClass.CONFIG
        )
        assert classify_exception(RuntimeError("unknown")) is FailureClass.TRANSIENT


class TestPolicies:
    def test_full_jitter_stays_under_the_exponential_ceiling(self):
        policy = RetryPolicy(attempts=5, base=2.0, cap=10.0)
        assert [policy.ceiling(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 10.0]
        rng = random.Random(0)
        delays = [policy.backoff(3, rng) for _ in range(1000)]
        assert 0 <= min(delays) < 1
        assert 7 < max(delays) <= 8

    def test_overrides_are_checked(self):
        assert build_policies({"server": {"attempts": 2}})[FailureClass.SERVER].attempts == 2
        with pytest.raises(ValueError, match="unknown failure class 'flaky'"):
            build_policies({"flaky": {"attempts": 2}})
        with pytest.raises(ValueError, match="unknown keys"):
            build_policies({"server": {"tries": 2}})

    def test_retry_after_both_forms(self):
        now = time()
        assert parse_retry_after(b"7", now) == 7.0
        when = datetime.fromtimestamp(now, UTC) + timedelta(seconds=30)
        assert 29 <= parse_retry_after(format_datetime(when, usegmt=True), now) <= 30
        assert parse_retry_after(b"soon", now) is None
        assert parse_retry_after(None, now) is None


class TestRetryMiddleware:
    def test_server_error_is_retried_later_not_now(self, retry, crawler):
        retrying = Recorder()
        crawler.signals.connect(retrying, signal=request_retrying)
        request = Request(URL, meta={"stage": "detail"})
        before = time()
        retried = retry.process_response(request, response(503, request=request))
        assert isinstance(retried, Request)
        assert retried.dont_filter
        assert retried.meta["retry_failures"] == {"server": 1}
        assert before <= retried.meta[NOT_BEFORE] <= time() + 2.0  # base 2 s, first retry
        assert retried.priority == request.priority - 1
        assert retrying.calls[0]["failure_class"] == "server"
        assert crawler.stats.get_value("retry/class/server") == 1

    def test_retry_after_is_honoured_up_to_the_ceiling(self, retry):
        request = Request(URL, meta={"stage": "detail"})
        retried = retry.process_response(
            request, response(429, headers={"Retry-After": "40"}, request=request)
        )
        assert retried.meta[NOT_BEFORE] >= time() + 39
        retry.retry_after_max = 5
        retried = retry.process_response(
            request, response(429, headers={"Retry-After": "40"}, request=request)
        )
        assert retried.meta[NOT_BEFORE] <= time() + 5 + 0.1

    def test_exhausted_attempts_go_to_the_dead_letters(self, retry, crawler):
        letters = Recorder()
        crawler.signals.connect(letters, signal=request_dead_lettered)
        request = Request(URL, meta={"stage": "detail"})
        for _ in range(4):  # server policy: 5 attempts
            request = retry.process_response(request, response(500, request=request))
            assert isinstance(request, Request)
        with pytest.raises(DeadLettered, match="server: HTTP 500"):
            retry.process_response(request, response(500, request=request))
        (letter,) = letters.calls
        assert letter["failure_class"] == "server"
        assert letter["attempts"] == 5
        assert letter["stage"] == "detail"

    def test_permanent_failures_are_not_retried(self, retry, crawler):
        letters = Recorder()
        crawler.signals.connect(letters, signal=request_dead_lettered)
        request = Request(URL, meta={"stage": "detail"})
        with pytest.raises(DeadLettered):
            retry.process_response(request, response(404, request=request))
        assert letters.calls[0]["reason"] == "HTTP 404: the product left the catalogue"

    def test_statuses_the_callback_handles_pass_through(self, retry):
        request = Request(URL, meta={"stage": "list", "handle_httpstatus_list": [404]})
        answer = response(404, request=request)
        assert retry.process_response(request, answer) is answer

    def test_content_failures_and_truncation(self, retry):
        request = Request(URL, meta={"stage": "detail"})
        retried = retry.process_response(
            request, response(200, body=GOOD_PAGE[:40], request=request)
        )
        assert retried.meta["retry_failures"] == {"content": 1}
        assert "truncated" in retried.meta["last_failure"]

    def test_meta_overrides(self, retry):
        request = Request(URL, meta={"stage": "detail", "dont_retry": True})
        answer = response(500, request=request)
        assert retry.process_response(request, answer) is answer
        request = Request(URL, meta={"stage": "detail", "max_retry_times": 0})
        with pytest.raises(DeadLettered):
            retry.process_response(request, response(500, request=request))
        request = Request(
            URL, meta={"stage": "detail", "retry_policies": {"server": {"attempts": 1}}}
        )
        with pytest.raises(DeadLettered):
            retry.process_response(request, response(500, request=request))

    def test_total_attempts_are_bounded_across_classes(self, retry):
        retry.max_total_attempts = 3
        request = Request(URL, meta={"stage": "detail"})
        request = retry.process_exception(request, TimeoutError())
        request = retry.process_response(request, response(500, request=request))
        with pytest.raises(DeadLettered, match="after 3 attempts"):
            retry.process_exception(request, ConnectionRefusedError())


class TestBreaker:
    policy = BreakerPolicy(
        failure_threshold=3,
        failure_ratio=0.5,
        window=10,
        cooldown=10,
        cooldown_max=30,
        half_open_probes=1,
        close_after=2,
    )

    def test_opens_after_consecutive_failures_and_holds(self):
        breaker = Breaker(self.policy)
        for _ in range(2):
            assert breaker.record(True, probe=False, now=0) is None
        assert breaker.record(True, probe=False, now=0) == "3 failures in a row"
        assert breaker.state is CircuitState.OPEN
        assert breaker.admit(5) == (False, None)

    def test_opens_on_failure_share(self):
        breaker = Breaker(self.policy)
        outcomes = [True, False] * 4 + [True, True]  # 6 of 10 failed, never 3 in a row
        changes = [breaker.record(failed, probe=False, now=0) for failed in outcomes]
        assert changes[-1] == "60% of the last 10 requests failed"

    def test_half_open_probes_then_close_or_reopen_longer(self):
        breaker = Breaker(self.policy)
        for _ in range(3):
            breaker.record(True, probe=False, now=0)
        allowed, change = breaker.admit(10)
        assert allowed
        assert change == "cool-down of 10s over, probing"
        assert breaker.state is CircuitState.HALF_OPEN
        assert breaker.admit(10) == (False, None)  # one probe at a time
        assert breaker.record(True, probe=True, now=11) == "a probe failed"
        assert breaker.state is CircuitState.OPEN
        assert breaker.cooldown == 20  # doubled
        assert breaker.admit(30)[0] is False
        assert breaker.admit(31)[0] is True
        assert breaker.record(False, probe=True, now=31) is None
        assert breaker.admit(31)[0] is True
        assert breaker.record(False, probe=True, now=31) == "2 probes succeeded"
        assert breaker.state is CircuitState.CLOSED
        assert breaker.cooldown == 10

    def test_state_survives_a_restart(self):
        breaker = Breaker(self.policy)
        for _ in range(3):
            breaker.record(True, probe=False, now=100)
        restored = Breaker.from_state(self.policy, breaker.to_state())
        assert restored.state is CircuitState.OPEN
        assert restored.reopens_at() == 110

    def test_middleware_holds_requests_and_ignores_permanent_failures(self, crawler):
        crawler.stats.open_spider()
        changes = Recorder()
        crawler.signals.connect(changes, signal=circuit_state_changed)
        middleware = CircuitBreakerMiddleware(crawler, self.policy)
        request = Request(URL)
        for _ in range(5):
            middleware.process_response(request, response(404, request=request))
        assert middleware.states()["csa-iot.org"] is CircuitState.CLOSED
        for _ in range(3):
            assert middleware.process_request(request) is None
            middleware.process_exception(request, TimeoutError())
        assert middleware.states()["csa-iot.org"] is CircuitState.OPEN
        held = middleware.process_request(Request(URL))
        assert isinstance(held, Request)
        assert held.dont_filter
        assert held.meta[NOT_BEFORE] >= time() + 9
        assert changes.calls[0]["new"] == "open"
        assert crawler.stats.get_value("circuit/csa-iot.org/closed_to_open") == 1
        assert crawler.stats.get_value("circuit/csa-iot.org/held_requests") == 1

    def test_a_request_admitted_before_the_opening_is_held_as_its_slot_sends_it(self, crawler):
        crawler.stats.open_spider()
        no_cooldown = BreakerPolicy(failure_threshold=3, cooldown=0, half_open_probes=1)
        middleware = CircuitBreakerMiddleware(crawler, self.policy)
        waiting = Request(URL)
        assert middleware.process_request(waiting) is None  # closed: into the slot's queue
        assert middleware.send_gate(waiting) is None  # still closed as the slot sends it
        for _ in range(3):
            failed = Request(URL)
            middleware.process_request(failed)
            middleware.process_exception(failed, TimeoutError())
        refusal = middleware.send_gate(waiting)  # opened while it waited
        assert isinstance(refusal, CircuitHeld)
        held = middleware.process_exception(waiting, refusal)
        assert isinstance(held, Request)
        assert held.meta[NOT_BEFORE] >= time() + 9
        assert crawler.stats.get_value("circuit/csa-iot.org/held_requests") == 1
        assert middleware.states()["csa-iot.org"] is CircuitState.OPEN  # not counted a failure
        # half-open: the probe admitted by process_request passes the gate; another request
        # is held while that probe is out
        probing = CircuitBreakerMiddleware(crawler, no_cooldown)
        for _ in range(3):
            failed = Request(URL)
            probing.process_request(failed)
            probing.process_exception(failed, TimeoutError())
        probe, waiting = Request(URL), Request(URL)
        assert probing.process_request(probe) is None
        assert probing.send_gate(probe) is None
        assert isinstance(probing.send_gate(waiting), CircuitHeld)

    def test_stats_count_each_transition(self, crawler):
        crawler.stats.open_spider()
        no_cooldown = BreakerPolicy(failure_threshold=2, cooldown=0, half_open_probes=1)
        middleware = CircuitBreakerMiddleware(crawler, no_cooldown)

        def outcome(status: int) -> None:
            request = Request(URL)
            assert middleware.process_request(request) is None
            middleware.process_response(request, response(status, request=request))

        for status in (503, 503, 503, 200, 200):  # open, probe fails, probe, probe: closed
            outcome(status)
        assert middleware.states()["csa-iot.org"] is CircuitState.CLOSED
        stats = crawler.stats.get_stats()
        assert {key: value for key, value in stats.items() if key.startswith("circuit/")} == {
            "circuit/csa-iot.org/closed_to_open": 1,
            "circuit/csa-iot.org/open_to_half_open": 2,
            "circuit/csa-iot.org/half_open_to_open": 1,
            "circuit/csa-iot.org/half_open_to_closed": 1,
            "circuit/csa-iot.org/state": "closed",
        }

    def test_browser_failures_do_not_open_the_breaker(self, crawler):
        crawler.stats.open_spider()
        middleware = CircuitBreakerMiddleware(crawler, self.policy)
        rendered = Request(URL, meta={"playwright": True})
        for _ in range(5):  # the browser will not launch, or Playwright gives up
            assert middleware.process_request(rendered) is None
            middleware.process_exception(rendered, PlaywrightError("Browser closed"))
            middleware.process_exception(rendered, TimeoutError())
        assert middleware.states()["csa-iot.org"] is CircuitState.CLOSED
        assert crawler.stats.get_value("circuit/csa-iot.org/closed_to_open") is None
        # the same exceptions without the browser are the site's: they open it
        for _ in range(3):
            plain = Request(URL)
            assert middleware.process_request(plain) is None
            middleware.process_exception(plain, TimeoutError())
        assert middleware.states()["csa-iot.org"] is CircuitState.OPEN

    def test_a_rendered_probe_that_fails_in_the_browser_frees_its_slot(self, crawler):
        crawler.stats.open_spider()
        no_cooldown = BreakerPolicy(failure_threshold=1, cooldown=0, half_open_probes=1)
        middleware = CircuitBreakerMiddleware(crawler, no_cooldown)
        request = Request(URL)
        middleware.process_request(request)
        middleware.process_exception(request, TimeoutError())
        probe = Request(URL, meta={"playwright": True})
        assert middleware.process_request(probe) is None  # half-open: the one probe
        assert isinstance(middleware.process_request(Request(URL)), Request)  # held
        middleware.process_exception(probe, PlaywrightError("Target page closed"))
        assert middleware.states()["csa-iot.org"] is CircuitState.HALF_OPEN
        assert middleware.process_request(Request(URL)) is None  # the slot is free again

    def test_rendered_pages_server_errors_still_count(self, crawler):
        crawler.stats.open_spider()
        middleware = CircuitBreakerMiddleware(crawler, self.policy)
        for _ in range(3):
            rendered = Request(URL, meta={"playwright": True})
            middleware.process_request(rendered)
            middleware.process_response(rendered, response(503, request=rendered))
        assert middleware.states()["csa-iot.org"] is CircuitState.OPEN

    def test_content_failures_are_not_the_sites_trouble(self, crawler):
        crawler.stats.open_spider()
        middleware = CircuitBreakerMiddleware(crawler, self.policy)
        # a truncated page between server errors: the site answered, the run of failures ends
        for status, body in [(500, GOOD_PAGE), (500, GOOD_PAGE), (200, GOOD_PAGE[:40])] * 3:
            request = Request(URL)
            middleware.process_request(request)
            middleware.process_response(request, response(status, body=body, request=request))
        assert middleware.states()["csa-iot.org"] is CircuitState.CLOSED


class TestStockRetryConventions:
    """Scrapy's stock retry stats keys and settings: dashboards and users of the stock
    RetryMiddleware find what they know, or are told what replaces it."""

    def test_the_stock_stats_keys_as_get_retry_request_names_them(self, retry, crawler):
        stats = crawler.stats
        request = Request(
            URL, meta={"stage": "detail", "retry_policies": {"server": {"attempts": 2}}}
        )
        request = retry.process_response(request, response(503, request=request))
        request = retry.process_exception(request, ConnectionRefusedError())
        request = retry.process_response(request, response(200, body=b"", request=request))
        assert stats.get_value("retry/count") == 3
        assert stats.get_value("retry/reason_count/503 Service Unavailable") == 1
        assert (
            stats.get_value("retry/reason_count/twisted.internet.error.ConnectionRefusedError") == 1
        )
        (content_key,) = [
            k
            for k in stats.get_stats()
            if k.startswith("retry/reason_count/") and "Service" not in k and "twisted" not in k
        ]
        assert content_key == "retry/reason_count/empty body"  # the content problem's label
        assert stats.get_value("retry/max_reached") is None
        with pytest.raises(DeadLettered):  # the server class's 2 attempts are spent
            retry.process_response(request, response(503, request=request))
        assert stats.get_value("retry/max_reached") == 1
        assert stats.get_value("retry/count") == 3  # a give-up is not a retry

    def test_a_class_never_retried_does_not_reach_the_maximum(self, retry, crawler):
        request = Request(URL, meta={"stage": "detail"})
        with pytest.raises(DeadLettered):
            retry.process_response(request, response(404, request=request))
        assert crawler.stats.get_value("retry/max_reached") is None  # stock ignores 404 too
        capped = Request(URL, meta={"stage": "detail", "max_retry_times": 0})
        with pytest.raises(DeadLettered):  # a retried class, capped at no retry: as stock
            retry.process_response(capped, response(500, request=capped))
        assert crawler.stats.get_value("retry/max_reached") == 1

    def test_a_stock_setting_given_explicitly_is_named_with_its_replacement(self, caplog):
        crawler = get_crawler(settings_dict={"RETRY_TIMES": 5, "RETRY_HTTP_CODES": [500]})
        with caplog.at_level("WARNING", logger="matter_crawler.middlewares.retry"):
            ClassifiedRetryMiddleware.from_crawler(crawler)
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert warnings == [
            "RETRY_TIMES=5 is ignored: ClassifiedRetryMiddleware replaces Scrapy's "
            'RetryMiddleware; use RETRY_POLICIES (attempts per failure class, e.g. {"server": '
            '{"attempts": 3}}) and RETRY_MAX_TOTAL_ATTEMPTS',
            "RETRY_HTTP_CODES=[500] is ignored: ClassifiedRetryMiddleware replaces Scrapy's "
            "RetryMiddleware; use RETRY_POLICIES: statuses are classified "
            "(matter_crawler.middlewares.classify), and each class has its attempts and backoff",
        ]

    def test_the_project_settings_alone_warn_about_nothing(self):
        settings = Settings()  # Scrapy's defaults, at their priority, as a crawl has them
        settings.setmodule("matter_crawler.settings", priority="project")
        assert warn_replaced_stock_settings(settings) == []
        # Scrapy's default value, given explicitly, still warns: it is ignored all the same
        settings.set("RETRY_TIMES", 2, priority="cmdline")
        assert warn_replaced_stock_settings(settings) == ["RETRY_TIMES"]
