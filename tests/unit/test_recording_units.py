"""Unit tests of the recording package (``matter_crawler.recording``), module by module.

The end-to-end recordings (the recorder against the simulated site, replay,
redaction of a live recording) are ``tests/crawl/test_recordings.py``; pages built to
exhaust the recorder's memory are ``tests/crawl/test_security_record_site.py``.
Cassettes here are real files read by betamax; the answers the recorder
retries come from a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from matter_crawler.parsing.urls import LISTING_PATH, is_product_path, listing_url, url_path
from matter_crawler.recording import RecordingError
from matter_crawler.recording.cassettes import recorded_pages
from matter_crawler.recording.limits import MAX_STORED_PAGE_BYTES, PageTooLarge
from matter_crawler.recording.recorder import RecordOptions, SiteRecorder
from matter_crawler.recording.redaction import redact_text, redact_url, sanitize_interaction
from matter_crawler.recording.sampling import ranges, sample
from sitesim.process import LISTING_QUERY

from ..helpers import PROJECT_ROOT
from ..loopback import LoopbackServer, QuietHandler


def python_output(script: str, *args: str) -> str:
    """What ``python -c script args`` prints, in a fresh interpreter (it must succeed)."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- sampling ---------------------------------------------------------------------------


def test_sample_counts_recorded_items_first_and_keeps_the_order() -> None:
    candidates = list(range(2, 30))
    assert sample(candidates, set(), None, random.Random(1)) == candidates
    chosen = sample(candidates, {7, 9}, 5, random.Random(1))
    assert len(chosen) == 5
    assert {7, 9} <= set(chosen)
    assert chosen == sorted(chosen)  # the candidates' order
    # seeded: the same pick again; a larger sample adds to it, never drops a recorded item
    assert sample(candidates, {7, 9}, 5, random.Random(1)) == chosen
    assert set(chosen) <= set(sample(candidates, set(chosen), 8, random.Random(2)))
    # more recorded than asked for: the first ones, nothing fetched
    assert sample(candidates, {3, 4, 5}, 2, random.Random(1)) == [3, 4]
    assert sample(candidates, set(), 0, random.Random(1)) == []
    assert sample([1, 2], set(), 10, random.Random(1)) == [1, 2]


def test_ranges() -> None:
    assert ranges([]) == ""
    assert ranges([9, 1, 2, 3, 7, 10]) == "1-3, 7, 9-10"
    assert ranges([4]) == "4"


# -- the crawler's URL helpers the recorder uses --------------------------------------------


def test_listing_url_is_the_spiders() -> None:
    base = "https://csa-iot.org"
    assert listing_url(base, 1) == f"{base}{LISTING_PATH}"
    assert listing_url(base, 3, "p_keywords=&type=1") == (
        f"{base}{LISTING_PATH}page/3/?p_keywords=&type=1"
    )
    assert url_path(f"{base}/csa_product/a/?x=1") == "/csa_product/a/?x=1"
    assert url_path(None) is None
    assert is_product_path("/csa_product/plug-1/")
    assert not is_product_path("/csa_product/")
    assert not is_product_path("/csa_product/../")
    assert not is_product_path("/csa_product/a/b/")


# -- the redaction rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://csa-iot.org/csa_product/x/", "https://csa-iot.org/csa_product/x/"),
        (
            f"https://csa-iot.org/csa-iot_products/?{LISTING_QUERY}",
            f"https://csa-iot.org/csa-iot_products/?{LISTING_QUERY}",
        ),
        ("https://h/p?a=1&_wpnonce=abc123&b=2", "https://h/p?a=1&_wpnonce=REDACTED&b=2"),
        (
            "https://h/p?access_token=x&api_key=y",
            "https://h/p?access_token=REDACTED&api_key=REDACTED",
        ),
        ("https://h/p?PHPSESSID=1234", "https://h/p?PHPSESSID=REDACTED"),
        ("https://user:pw@h/p", "https://REDACTED@h/p"),
        ("https://h/p?x=eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl", "https://h/p?x=REDACTED"),
        ("https://h/p?ref=" + "a1" * 20, "https://h/p?ref=REDACTED"),
        ("https://h/p?p_keywords=smart+plug", "https://h/p?p_keywords=smart+plug"),
        ("https://h/cb#access_token=abc&state=1", "https://h/cb#access_token=REDACTED&state=1"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_in_pages() -> None:
    page = (
        '<a href="/wp-admin/admin-ajax.php?action=x&amp;_wpnonce=9f8e7d">x</a>'
        '<script>var s = {"ajaxUrl": "/a", "nonce": "5f1c0a2b9e", "restNonce":"aa11"};'
        "var t = {'apiKey': 'AIzaSyA'};</script>"
        '<a href="/csa-iot_products/?p_keywords=&amp;p_type%5B0%5D=14">list</a>'
    )
    redacted = redact_text(page)
    for secret in ("9f8e7d", "5f1c0a2b9e", "aa11", "AIzaSyA"):
        assert secret not in redacted
    assert '"ajaxUrl": "/a"' in redacted
    assert "p_keywords=&amp;p_type%5B0%5D=14" in redacted


# -- interactions: made safe before betamax records them, read back through its Cassette ----


def interaction(
    uri: str,
    body: dict[str, Any],
    *,
    method: str = "GET",
    status: int = 200,
    headers: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    return {
        "recorded_at": "2026-01-01T00:00:00",
        "request": {
            "body": {"encoding": "utf-8", "string": ""},
            "headers": {},
            "method": method,
            "uri": uri,
        },
        "response": {
            "body": body,
            "headers": {"Content-Type": ["text/html; charset=UTF-8"], **(headers or {})},
            "status": {"code": status, "message": "OK"},
            "url": uri,
        },
    }


def write_cassette(path: Path, interactions: list[dict[str, Any]]) -> None:
    cassette = {"http_interactions": interactions, "recorded_with": "betamax/0.9.0"}
    path.write_text(json.dumps(cassette), encoding="utf-8")


def test_sanitize_interaction_keeps_nothing_secret_and_stores_text() -> None:
    page = '<a href="/x?_wpnonce=9f8e7d">x</a>'
    data = interaction(
        "https://user:pw@h/csa_product/a/?access_token=SECRETTOKEN",
        {
            "encoding": "utf-8",
            "base64_string": base64.b64encode(gzip.compress(page.encode())).decode(),
        },
        headers={
            "Content-Encoding": ["gzip"],
            "Content-Length": ["999"],
            "Set-Cookie": ["sid=SECRETCOOKIE"],
            "Location": ["https://h/next?token=SECRETLOCATION"],
            "X-Private": ["SECRETPRIVATE"],
        },
    )
    data["request"]["headers"] = {
        "Cookie": ["sid=SECRETCOOKIE"],
        "X-Private": ["SECRETPRIVATE"],
        "User-Agent": ["matter-crawler tests"],
    }
    sanitize_interaction(data, private_headers=["x-private"], max_page_bytes=1000)
    text = json.dumps(data)
    for secret in ("SECRET", "9f8e7d", "user:pw"):
        assert secret not in text
    assert data["request"]["headers"] == {"User-Agent": ["matter-crawler tests"]}
    assert data["request"]["uri"] == "https://REDACTED@h/csa_product/a/?access_token=REDACTED"
    response = data["response"]
    # decoded from gzip, so that a cassette is reviewed and diffed as text
    assert response["body"] == {
        "encoding": "utf-8",
        "string": '<a href="/x?_wpnonce=REDACTED">x</a>',
    }
    assert response["headers"]["Content-Length"] == [str(len(response["body"]["string"]))]
    assert "Content-Encoding" not in response["headers"]
    assert response["headers"]["Location"] == ["https://h/next?token=REDACTED"]


def test_sanitize_interaction_keeps_a_binary_body_as_it_came() -> None:
    image = bytes(range(256)) * 4
    data = interaction(
        "https://h/logo.png",
        {"encoding": "utf-8", "base64_string": base64.b64encode(image).decode()},
    )
    sanitize_interaction(data)
    body = data["response"]["body"]
    assert base64.b64decode(body["base64_string"]) == image
    assert data["response"]["headers"]["Content-Length"] == [str(len(image))]


def test_sanitize_interaction_refuses_a_page_over_the_limit() -> None:
    data = interaction(
        "https://h/csa_product/big/",
        {
            "encoding": "utf-8",
            "base64_string": base64.b64encode(gzip.compress(b"x" * 5000)).decode(),
        },
        headers={"Content-Encoding": ["gzip"]},
    )
    with pytest.raises(PageTooLarge, match="over 4,000 bytes decompressed"):
        sanitize_interaction(data, max_page_bytes=4000)


def test_recorded_pages_are_read_through_betamax(tmp_path: Path) -> None:
    page = "<html><body>Gerät</body></html>"
    gzipped = base64.b64encode(gzip.compress(page.encode("utf-8"))).decode()
    write_cassette(
        tmp_path / "detail.json",
        [
            interaction("https://h/csa_product/a/", {"encoding": "utf-8", "string": page}),
            interaction(
                "https://h/csa_product/a/", {"encoding": "utf-8", "string": "form"}, method="POST"
            ),
            interaction(
                "https://h/csa_product/b/",
                {"encoding": "utf-8", "base64_string": gzipped},
                headers={"Content-Encoding": ["gzip"]},
            ),
            interaction(
                "https://h/csa-iot_products/page/9/", {"encoding": None, "string": ""}, status=404
            ),
        ],
    )
    before = (tmp_path / "detail.json").read_bytes()
    pages = {p.uri: p for p in recorded_pages(tmp_path)}
    assert sorted(pages) == [
        "https://h/csa-iot_products/page/9/",
        "https://h/csa_product/a/",
        "https://h/csa_product/b/",
    ]
    a, b = pages["https://h/csa_product/a/"], pages["https://h/csa_product/b/"]
    assert a.body == b.body == page.encode("utf-8")  # the GET, not the POST; b gunzipped
    assert (a.kind, a.status, a.encoding, a.path) == ("detail", 200, "utf-8", "/csa_product/a/")
    missing = pages["https://h/csa-iot_products/page/9/"]
    assert (missing.kind, missing.status, missing.encoding) == ("listing", 404, "utf-8")
    assert (tmp_path / "detail.json").read_bytes() == before  # reading writes nothing


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"http_interactions": [{"request": {"uri": "https://h/"}}]}),
        json.dumps({"http_interactions": [{"request": {}, "response": {"body": {}}}]}),
    ],
)
def test_a_damaged_cassette_is_an_error_the_user_reads(tmp_path: Path, content: str) -> None:
    """Not JSON, or JSON that is not a cassette: one line naming the file, not a traceback."""
    (tmp_path / "listing.json").write_text(content, encoding="utf-8")
    with pytest.raises(RecordingError, match=r"listing\.json is not a readable cassette"):
        recorded_pages(tmp_path)


def test_a_gzip_bomb_in_a_cassette_is_refused(tmp_path: Path) -> None:
    bomb = gzip.compress(b"\0" * (MAX_STORED_PAGE_BYTES + 1), compresslevel=9)
    write_cassette(
        tmp_path / "detail.json",
        [
            interaction(
                "https://h/csa_product/bomb/",
                {"encoding": "utf-8", "base64_string": base64.b64encode(bomb).decode()},
                headers={"Content-Encoding": ["gzip"]},
            )
        ],
    )
    with pytest.raises(RecordingError, match="bytes decompressed"):
        recorded_pages(tmp_path)


def test_the_serializer_is_registered_before_reading(tmp_path: Path) -> None:
    """A fresh process reads a recording without having recorded anything first."""
    write_cassette(
        tmp_path / "robots.json",
        [interaction("https://h/robots.txt", {"encoding": "utf-8", "string": "User-agent: *\n"})],
    )
    script = (
        "import sys; from pathlib import Path; "
        "from matter_crawler.recording.cassettes import recorded_pages; "
        "print(recorded_pages(Path(sys.argv[1]))[0].body.decode())"
    )
    output = python_output(script, str(tmp_path))
    assert output == "User-agent: *\n\n"


# -- the recorder retries what the crawl retries ---------------------------------------------


class FlakySite(LoopbackServer):
    """Each path answers its list of statuses in turn, then 200."""

    def __init__(self, answers: dict[str, list[int]]) -> None:
        self.hits: dict[str, int] = {}
        site = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                hit = site.hits.get(self.path, 0)
                site.hits[self.path] = hit + 1
                statuses = answers.get(self.path, [])
                status = statuses[hit] if hit < len(statuses) else 200
                body = f"<html><body>{self.path} {status}</body></html>".encode()
                self.answer(status, body, {"Retry-After": "0"})  # no waiting in a test

        super().__init__(Handler)


@pytest.fixture
def flaky_site() -> Iterator[FlakySite]:
    site = FlakySite(
        {
            # the crawl retries these (classify.status_class): so does the recorder
            "/csa_product/throttled/": [429],
            "/csa_product/timeout/": [408],
            "/csa_product/unimplemented/": [501],
            "/csa_product/unknown-5xx/": [599, 599],
            # permanent: asked once, never recorded
            "/csa_product/forbidden/": [403, 403, 403],
            "/csa_product/bad/": [400, 400, 400],
        }
    )
    try:
        yield site
    finally:
        site.stop()


def test_the_recorder_retries_the_statuses_the_crawl_retries(
    flaky_site: FlakySite, tmp_path: Path
) -> None:
    options = RecordOptions(
        directory=tmp_path,
        base_url=flaky_site.url,
        listing_query="",
        user_agent="matter-crawler tests",
        listing_sample=0,
        detail_sample=0,
        max_page_bytes=1024 * 1024,
        delay=0.0,
        timeout=10.0,
        retry_after_max=300.0,
        attempts=3,
        seed=1,
    )
    recorder = SiteRecorder(options, log=lambda message: None)
    session = recorder._session()
    paths = ["throttled", "timeout", "unimplemented", "unknown-5xx", "forbidden", "bad"]
    try:
        with recorder.phase("detail", session) as phase:
            for name in paths:
                recorder.fetch(phase, f"{flaky_site.url}/csa_product/{name}/")
    finally:
        session.close()
    hits = {name: flaky_site.hits[f"/csa_product/{name}/"] for name in paths}
    assert hits == {
        "throttled": 2,
        "timeout": 2,
        "unimplemented": 2,
        "unknown-5xx": 3,
        "forbidden": 1,
        "bad": 1,
    }
    recorded = {page.path: page.status for page in recorded_pages(tmp_path)}
    assert recorded == {f"/csa_product/{name}/": 200 for name in paths[:4]}
    assert sorted(recorder.report.failed) == [
        f"{flaky_site.url}/csa_product/bad/ (HTTP 400)",
        f"{flaky_site.url}/csa_product/forbidden/ (HTTP 403)",
    ]


# -- the command ------------------------------------------------------------------------------


def test_the_command_module_loads_no_recorder_until_it_runs() -> None:
    """Every ``scrapy`` command imports every command module: record-site's must stay light."""
    script = (
        "import importlib, sys; importlib.import_module('matter_crawler.commands.record-site'); "
        "print(sorted(m for m in ('betamax', 'matter_crawler.recording.recorder') "
        "if m in sys.modules))"
    )
    output = python_output(script)
    assert output.strip() == "[]"
