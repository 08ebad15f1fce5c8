"""``scrapy feed``, the feed extension (``FEED_ATOM_PATH``) and ``scrapy report`` on a real crawl.

One database for the module: the simulated site is crawled (run 1, full, the
extension writing the feed), mutated (4 added, 3 removed, 5 changed) and crawled
again with a full refresh (run 2, the extension's feed now with changed and delisted
products). The feed is read back with feedparser (what feed readers use) and with
lxml for the Atom schema's rules, and compared with the database; the report is
opened in the real Chromium (Playwright, in a child process as in the live-page
test) and its charts and tables compared with SQL counts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import lxml.html
import pytest
from lxml import etree
from sqlalchemy import create_engine, insert

from matter_crawler.reporting.feed import tag_uri
from matter_crawler.storage.models import CrosscheckRun
from sitesim.process import SimulatedSite

from ..conftest import require_executable
from ..helpers import (
    BACKENDS,
    PROJECT_ROOT,
    monitoring_address,
    new_database,
    query,
    run_crawl,
    sqlite_url,
    start_crawl,
    stop_process,
)
from .test_monitoring_live_page import _kill_tree, _playwright_or_skip

pytestmark = pytest.mark.xdist_group(__name__)

ATOM = "{http://www.w3.org/2005/Atom}"
# RFC 3339 date-time (section 5.6), as Atom requires (RFC 4287 section 3.3)
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
PRODUCTS = 240


@dataclass
class Crawled:
    site: SimulatedSite
    url: str
    directory: Path
    first_feed: bytes  # what the extension wrote at the end of run 1
    feed_path: Path  # what it wrote at the end of run 2
    report_path: Path  # what the report extension wrote at the end of run 2
    log: str


def crawl_twice(request: pytest.FixtureRequest, backend: str, directory: Path) -> Iterator[Crawled]:
    url = new_database(request, backend, directory)
    feed_path = directory / "served" / "matter.atom"
    feed_path.parent.mkdir()
    report_path = feed_path.parent / "report.html"
    site = SimulatedSite(products=PRODUCTS, seed=2)  # seed 2 has names holding markup
    site.start()
    try:
        run_crawl(site.base_url, url, settings={"FEED_ATOM_PATH": str(feed_path)}).check()
        first_feed = feed_path.read_bytes()
        site.mutate(add=4, remove=3, change=5)
        result = run_crawl(
            site.base_url,
            url,
            settings={
                "FEED_ATOM_PATH": str(feed_path),
                "FEED_ATOM_INCLUDE": "changed,delisted",
                "FEED_ATOM_LIMIT": 1000,
                "REPORT_HTML_PATH": str(report_path),
            },
            args={"mode": "full", "refresh": "all"},
        ).check()
        yield Crawled(site, url, directory, first_feed, feed_path, report_path, result.output)
    finally:
        site.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def crawled(request, tmp_path_factory) -> Iterator[Crawled]:
    """The feed's database, on SQLite and on PostgreSQL."""
    yield from crawl_twice(request, request.param, tmp_path_factory.mktemp("feed"))


@pytest.fixture(scope="module")
def crawled_file(request, tmp_path_factory) -> Iterator[Crawled]:
    """The report's database: a SQLite file (its tests copy it and add a cross-check)."""
    yield from crawl_twice(request, "sqlite", tmp_path_factory.mktemp("report"))


def scrapy(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "scrapy", *args, "-s", f"DATABASE_URL={database_url}"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, f"{completed.stdout}\n{completed.stderr}"
    assert "Traceback" not in completed.stderr, completed.stderr
    return completed


def utc(value: str | datetime) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def expected_entries(url: str, since: datetime, include: tuple[str, ...]) -> dict[str, Any]:
    """{product url: (kind, updated)}: the feed's rule, in SQL."""
    found: dict[str, tuple[str, datetime]] = {}

    def keep(rows: list[tuple], kind: str) -> None:
        for product_url, at in rows:
            moment = utc(at)
            if product_url not in found or moment > found[product_url][1]:
                found[product_url] = (kind, moment)

    cut = since.replace(tzinfo=None).isoformat(sep=" ")
    keep(
        query(
            url,
            "SELECT url, first_seen_at FROM products "
            f"WHERE first_seen_at >= '{cut}' AND delisted_at IS NULL",
        ),
        "new",
    )
    if "changed" in include:
        keep(
            query(
                url,
                "SELECT product_url, max(changed_at) FROM product_changes "
                f"WHERE changed_at >= '{cut}' GROUP BY product_url",
            ),
            "changed",
        )
    if "delisted" in include:
        keep(
            query(
                url,
                f"SELECT url, delisted_at FROM products WHERE delisted_at >= '{cut}'",
            ),
            "delisted",
        )
    return found


def check_atom_schema(document: bytes) -> etree._Element:
    """RFC 4287's rules a validator checks: required elements, unique ids, RFC 3339 dates."""
    root = etree.fromstring(document)
    assert root.tag == f"{ATOM}feed"

    def one(parent: etree._Element, name: str) -> etree._Element:
        found = parent.findall(f"{ATOM}{name}")
        assert len(found) == 1, f"{parent.tag} needs exactly one {name}, has {len(found)}"
        return found[0]

    for name in ("id", "title", "updated"):
        assert (one(root, name).text or "").strip()
    assert RFC3339.fullmatch(one(root, "updated").text)
    feed_author = root.find(f"{ATOM}author")
    assert feed_author is None or feed_author.find(f"{ATOM}name").text
    ids = [one(root, "id").text]
    for entry in root.findall(f"{ATOM}entry"):
        for name in ("id", "title", "updated"):
            assert (one(entry, name).text or "").strip()
        assert RFC3339.fullmatch(one(entry, "updated").text)
        published = entry.find(f"{ATOM}published")
        assert published is None or RFC3339.fullmatch(published.text)
        # an entry without content needs an alternate link; ours has both
        alternates = [
            link
            for link in entry.findall(f"{ATOM}link")
            if link.get("rel", "alternate") == "alternate"
        ]
        assert len(alternates) == 1
        assert alternates[0].get("href")
        assert one(entry, "content").get("type") == "html"
        assert feed_author is not None or entry.find(f"{ATOM}author") is not None
        entry_id = one(entry, "id").text
        assert entry_id.startswith("tag:")
        ids.append(entry_id)
    assert len(ids) == len(set(ids)), "ids must be unique"
    return root


# -- the feed --------------------------------------------------------------------------------


def test_the_extension_writes_the_feed_at_the_end_of_each_crawl(crawled):
    assert "Wrote the Atom feed" in crawled.log
    first = feedparser.parse(crawled.first_feed)
    assert not first.bozo, first.get("bozo_exception")
    # run 1: every product is new; the default limit (FEED_ATOM_LIMIT) cuts the feed
    assert len(first.entries) == 200
    assert {entry.category for entry in first.entries} == {"new"}
    latest = feedparser.parse(crawled.feed_path.read_bytes())
    assert not latest.bozo
    kinds = Counter(entry.category for entry in latest.entries)
    assert kinds["delisted"] == 3
    assert kinds["changed"] >= 5
    # nothing left behind by the atomic replacements (the feed's and the report's)
    assert sorted(path.name for path in crawled.feed_path.parent.iterdir()) == [
        "matter.atom",
        "report.html",
    ]
    check_atom_schema(crawled.feed_path.read_bytes())
    assert latest.feed.title == "Matter certified products: new, changed and delisted"


def test_the_feed_command_writes_the_database_s_entries(crawled):
    output = crawled.directory / "command.atom"
    since = datetime.now(UTC) - timedelta(days=30)
    scrapy(
        crawled.url, "feed", "-o", str(output), "--force",
        "--include", "changed,delisted", "--limit", "1000",
    )  # fmt: skip
    parsed = feedparser.parse(output.read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    expected = expected_entries(crawled.url, since, ("changed", "delisted"))
    assert {entry.link for entry in parsed.entries} == set(expected)
    rows = {
        row[0]: row
        for row in query(
            crawled.url,
            "SELECT url, manufacturer, model, certificate_id, vid, pid, device_type, "
            "specification_version, first_seen_at FROM products",
        )
    }
    updated = [utc(entry.updated) for entry in parsed.entries]
    assert updated == sorted(updated, reverse=True), "newest first"
    for entry in parsed.entries:
        kind, moment = expected[entry.link]
        url, manufacturer, model, certificate, vid, pid, _type, spec, first_seen = rows[entry.link]
        assert entry.id == tag_uri(url)
        assert entry.category == kind
        assert abs(utc(entry.updated) - moment) < timedelta(milliseconds=1)
        assert abs(utc(entry.published) - utc(first_seen)) < timedelta(milliseconds=1)
        assert entry.title == f"{manufacturer} {model}"
        content = entry.content[0].value  # the HTML, unescaped once by the parser
        for value in (certificate, vid, pid, spec):
            assert value in content
    # product text holding markup is text in the XML: escaped, never an element
    assert b"<script" not in output.read_bytes()
    assert any("<script>" in entry.title for entry in parsed.entries)
    check_atom_schema(output.read_bytes())


def test_feed_since_limit_and_ids_are_stable(crawled):
    limited = crawled.directory / "limited.atom"
    scrapy(crawled.url, "feed", "-o", str(limited), "--force", "--limit", "5")
    entries = feedparser.parse(limited.read_bytes()).entries
    newest = query(
        crawled.url,
        "SELECT url FROM products WHERE delisted_at IS NULL "
        "ORDER BY first_seen_at DESC, certification_date DESC NULLS LAST, id DESC LIMIT 5",
    )
    assert [entry.link for entry in entries] == [row[0] for row in newest]
    empty = crawled.directory / "empty.atom"
    scrapy(crawled.url, "feed", "-o", str(empty), "--force", "--since", "2999-01-01")
    assert feedparser.parse(empty.read_bytes()).entries == []
    check_atom_schema(empty.read_bytes())
    # the same product has the same id in every feed, whatever port the site was on
    assert tag_uri("http://127.0.0.1:8800/csa_product/a-b/") == tag_uri(
        "https://127.0.0.1/csa_product/a-b/"
    )
    assert (
        tag_uri("https://csa-iot.org/csa_product/a-b/") == "tag:csa-iot.org,2022:/csa_product/a-b/"
    )


# -- the report ------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["command", "extension"])
def test_the_report_reads_either_backend(crawled, tmp_path, writer):
    if writer == "command":
        report = tmp_path / "report.html"
        scrapy(crawled.url, "report", "-o", str(report))
    else:  # REPORT_HTML_PATH: written by the crawl as it ended
        assert "Wrote the HTML report" in crawled.log
        report = crawled.report_path
    document = lxml.html.fromstring(report.read_bytes())
    listed = query(crawled.url, "SELECT count(*) FROM products WHERE delisted_at IS NULL")[0][0]
    (shown,) = document.xpath("//dd[@data-key='listed']/text()")
    assert int(shown.replace(",", "")) == listed
    dated = query(
        crawled.url,
        "SELECT count(*) FROM products WHERE delisted_at IS NULL "
        "AND certification_date IS NOT NULL",
    )[0][0]
    (total,) = document.xpath("//table[@id='table-per-month']/tfoot/tr/td[last()]/text()")
    assert int(total.replace(",", "")) == dated
    runs = document.xpath("//table[@id='table-runs']/tbody/tr")
    assert len(runs) == 2
    assert len(document.xpath("//svg[@role='img']")) == 5


BROWSE = r"""
import json, sys
from playwright.sync_api import sync_playwright

url, chromium, screenshot = sys.argv[1:4]
result = {"dialogs": 0, "errors": [], "requests": []}


def dialog(d):
    result["dialogs"] += 1
    d.dismiss()


READ = '''() => {
  const charts = [...document.querySelectorAll("svg.chart")].map((svg) => ({
    id: svg.id,
    height: svg.getBoundingClientRect().height,
    label: svg.getAttribute("aria-labelledby"),
    marks: [...svg.querySelectorAll("[data-value]")].map((e) => ({
      series: e.dataset.series, category: e.dataset.category, value: Number(e.dataset.value),
      area: e.getBBox().width * e.getBBox().height,
    })),
  }));
  const rows = (t, part) => [...t.querySelectorAll(part + " tr")].map(
    (r) => [...r.cells].map((c) => c.textContent));
  const tables = {};
  for (const t of document.querySelectorAll("table[id]")) {
    tables[t.id] = {head: rows(t, "thead"), body: rows(t, "tbody"), foot: rows(t, "tfoot")};
  }
  const totals = Object.fromEntries(
    [...document.querySelectorAll("#totals dd")].map((d) => [d.dataset.key, d.textContent]));
  return {charts, tables, totals, scripts: document.querySelectorAll("script").length,
          links: [...document.querySelectorAll("#table-newest a")].map((a) => a.href)};
}'''

with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path=chromium,
        headless=True,
        args=["--disable-background-networking", "--no-first-run", "--disable-gpu"],
    )
    page = browser.new_page(viewport={"width": 1120, "height": 900})
    page.on("dialog", dialog)
    page.on("pageerror", lambda error: result["errors"].append(str(error)))
    page.on("console", lambda m: m.type in ("error", "warning") and result["errors"].append(m.text))
    page.on("request", lambda r: result["requests"].append(r.url))
    page.goto(url)
    page.wait_for_load_state("load")
    result.update(page.evaluate(READ))
    page.screenshot(path=screenshot, full_page=True)
    browser.close()
print(json.dumps(result), flush=True)
"""


def browse(path: Path, screenshot: Path) -> dict[str, Any]:
    chromium = require_executable("chromium", "the report test opens it in headless Chromium")
    _playwright_or_skip()
    browser = subprocess.Popen(
        [sys.executable, "-c", BROWSE, path.as_uri(), chromium, str(screenshot)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        output, errors = browser.communicate(timeout=120)
    finally:
        _kill_tree(browser)
    assert output, errors
    return json.loads(output)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def quarter(day: str) -> str:
    return f"{day[:4]} Q{(int(day[5:7]) - 1) // 3 + 1}"


@pytest.mark.slow
@pytest.mark.system
def test_the_report_in_chromium_shows_the_database_s_numbers(crawled_file, tmp_path):
    # a copy with a stored cross-check, so that its section is shown too
    database = tmp_path / "report.sqlite3"
    database.write_bytes((crawled_file.directory / "matter.sqlite3").read_bytes())
    url = sqlite_url(database)
    engine = create_engine(url)
    counts = {"counts": {"missing_on_dcl": 2, "field_mismatch": 5}, "field_counts": {"pid": 5}}
    with engine.begin() as conn:
        conn.execute(
            insert(CrosscheckRun.__table__).values(
                checked_at=datetime(2026, 11, 1, tzinfo=UTC),
                products=240, consistent=233, findings=7, counts=counts,
            )
        )  # fmt: skip
    engine.dispose()
    report = tmp_path / "report.html"
    scrapy(url, "report", "-o", str(report))
    seen = browse(report, tmp_path / "report.png")

    assert seen["errors"] == []
    assert seen["dialogs"] == 0
    assert seen["scripts"] == 0  # no script at all, and the names holding <script> are text
    assert seen["requests"] == [report.as_uri()]  # nothing else loaded: self-contained

    # every chart rendered, with data
    charts = {chart["id"]: chart for chart in seen["charts"]}
    assert set(charts) == {
        "chart-per-month", "chart-vendors-all", "chart-vendors-recent",
        "chart-transports", "chart-specs",
    }  # fmt: skip
    for chart in charts.values():
        assert chart["height"] > 100
        assert chart["label"]
        assert any(mark["value"] > 0 and mark["area"] > 0 for mark in chart["marks"]), chart["id"]

    listed = "FROM products WHERE delisted_at IS NULL"
    dated = f"{listed} AND certification_date IS NOT NULL"
    assert number(seen["totals"]["listed"]) == query(url, f"SELECT count(*) {listed}")[0][0]
    assert number(seen["totals"]["delisted"]) == 3

    # certifications per month: the table's totals, the chart's stacks and SQL agree
    per_month = dict(
        query(url, f"SELECT substr(certification_date, 1, 7), count(*) {dated} GROUP BY 1")
    )
    table = seen["tables"]["table-per-month"]
    shown = {row[0]: number(row[-1]) for row in table["body"] if number(row[-1])}
    assert shown == per_month
    assert number(table["foot"][0][-1]) == sum(per_month.values())
    stacks = Counter()
    for mark in charts["chart-per-month"]["marks"]:
        stacks[mark["category"]] += mark["value"]
    assert dict(stacks) == per_month

    # top manufacturers
    vendors = query(
        url,
        f"SELECT manufacturer, count(*) {listed} AND manufacturer IS NOT NULL "
        "GROUP BY manufacturer ORDER BY count(*) DESC, manufacturer LIMIT 15",
    )
    body = seen["tables"]["table-vendors-all"]["body"]
    assert [(name, number(n)) for name, n in body] == [tuple(row) for row in vendors]
    assert [(m["category"], m["value"]) for m in charts["chart-vendors-all"]["marks"]] == [
        tuple(row) for row in vendors
    ]

    year_before = (datetime.now(UTC).date() - timedelta(days=365)).isoformat()
    recent = query(
        url,
        f"SELECT manufacturer, count(*) {listed} AND manufacturer IS NOT NULL "
        f"AND certification_date >= '{year_before}' "
        "GROUP BY manufacturer ORDER BY count(*) DESC, manufacturer LIMIT 15",
    )
    body = seen["tables"]["table-vendors-recent"]["body"]
    assert [(name, number(n)) for name, n in body] == [tuple(row) for row in recent]

    # transports and specification versions: products per quarter as SQL counts them
    per_quarter = Counter()
    for day, n in query(url, f"SELECT certification_date, count(*) {dated} GROUP BY 1"):
        per_quarter[quarter(day)] += n
    for name in ("table-transports", "table-specs"):
        rows = seen["tables"][name]["body"]
        assert {row[0]: number(row[1]) for row in rows if number(row[1])} == dict(per_quarter)
    specs = Counter()
    for day, version, n in query(
        url, f"SELECT certification_date, specification_version, count(*) {dated} GROUP BY 1, 2"
    ):
        specs[(quarter(day), version)] += n
    head = seen["tables"]["table-specs"]["head"][0]
    for row in seen["tables"]["table-specs"]["body"]:
        for version, cell in zip(head[2:], row[2:], strict=True):
            assert number(cell) == specs.get((row[0], version), 0)
    thread = Counter()
    for day, transports, n in query(
        url, f"SELECT certification_date, transport_interface, count(*) {dated} GROUP BY 1, 2"
    ):
        if "Thread" in json.loads(transports):
            thread[quarter(day)] += n
    head = seen["tables"]["table-transports"]["head"][0]
    column = head.index("Thread")
    shown = {row[0]: number(row[column]) for row in seen["tables"]["table-transports"]["body"]}
    assert {key: value for key, value in shown.items() if value} == dict(thread)

    # the newest certifications, linked to their pages
    newest = query(
        url,
        f"SELECT certificate_id, url {dated} ORDER BY certification_date DESC, id DESC LIMIT 25",
    )
    assert [row[4] for row in seen["tables"]["table-newest"]["body"]] == [r[0] for r in newest]
    assert seen["links"] == [r[1] for r in newest]

    # the crawl history, run by run
    runs = query(
        url,
        "SELECT id, products_new, products_changed, products_delisted, dead_letters "
        "FROM crawl_runs ORDER BY id DESC",
    )
    body = seen["tables"]["table-runs"]["body"]
    assert [
        (number(r[0]), number(r[8]), number(r[9]), number(r[10]), number(r[11])) for r in body
    ] == [tuple(row) for row in runs]
    foot = seen["tables"]["table-runs"]["foot"][0]
    assert foot[0] == f"{len(runs)} runs"
    assert number(foot[8]) == sum(row[1] for row in runs)

    # the DCL cross-check
    assert seen["tables"]["table-checks"]["body"] == [["1", "2026-11-01 00:00", "240", "233", "7"]]
    assert seen["tables"]["table-check-classes"]["body"] == [
        ["field_mismatch", "5"],
        ["missing_on_dcl", "2"],
    ]


def test_report_period_filters_products_and_runs(crawled_file, tmp_path):
    report = tmp_path / "period.html"
    scrapy(
        crawled_file.url,
        "report",
        "-o",
        str(report),
        "--since",
        "2024-01-01",
        "--until",
        "2024-12-31",
    )
    text = report.read_text()
    count = query(
        crawled_file.url,
        "SELECT count(*) FROM products WHERE delisted_at IS NULL "
        "AND certification_date BETWEEN '2024-01-01' AND '2024-12-31'",
    )[0][0]
    assert f'data-key="listed">{count:,}<' in text
    assert "certified from 2024-01-01 to 2024-12-31" in text
    assert "0 runs." in text  # the crawls ran in 2026
    assert "<script" not in text.replace("&lt;script", "")


# -- the live page's link --------------------------------------------------------------------

LIVE = r"""
import json, sys
from playwright.sync_api import sync_playwright

url, chromium = sys.argv[1:3]
errors = []
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=chromium, headless=True)
    page = browser.new_page()
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto(url)
    page.wait_for_selector("#links:not([hidden])", timeout=30000)
    links = {}
    for name in ("feed", "report"):
        link = page.locator(f"#{name}-link")
        links[name] = {"href": link.get_attribute("href"), "text": link.text_content(),
                       "visible": link.is_visible()}
    # the report opened from the live page, under the server's policy for it: its
    # inline style applies (maximum width) and nothing is refused (console errors)
    page.locator("#report-link").click()
    page.wait_for_load_state("load")
    report = page.evaluate('''() => ({
      charts: document.querySelectorAll("svg.chart").length,
      maxWidth: getComputedStyle(document.body).maxWidth,
    })''')
    print(json.dumps({"links": links, "report": report, "errors": errors}), flush=True)
    browser.close()
"""


@pytest.mark.slow
@pytest.mark.system
def test_the_live_page_links_the_feed_and_the_report(crawled_file, simulated_site, tmp_path):
    chromium = require_executable("chromium", "the live page is checked in headless Chromium")
    _playwright_or_skip()
    feed = tmp_path / "served.atom"
    feed.write_bytes(crawled_file.feed_path.read_bytes())  # the previous crawl's feed
    report = tmp_path / "served.html"
    report.write_bytes(crawled_file.report_path.read_bytes())  # and its report
    site = simulated_site(products=240, seed=2, latency_ms=100)
    log_path = tmp_path / "crawl.log"
    crawl = start_crawl(
        site.base_url,
        sqlite_url(tmp_path / "live.sqlite3"),
        settings={
            "MONITORING_PORT": 0,
            "CONCURRENT_REQUESTS": 2,
            "ADAPTIVE_CONCURRENCY_ENABLED": False,
            "FEED_ATOM_PATH": str(feed),
            "REPORT_HTML_PATH": str(report),
        },
        log_path=log_path,
    )
    browser = None
    try:
        url, _port = monitoring_address(log_path)
        with urllib.request.urlopen(url + "links", timeout=10) as answer:
            assert json.load(answer) == {"feed": "feed.atom", "report": "report.html"}
        with urllib.request.urlopen(url + "feed.atom", timeout=10) as answer:
            assert answer.headers["Content-Type"].startswith("application/atom+xml")
            assert answer.read() == crawled_file.feed_path.read_bytes()
        with urllib.request.urlopen(url + "report.html", timeout=10) as answer:
            assert answer.headers["Content-Type"].startswith("text/html")
            # the report's own policy (its inline style by hash), not the live page's
            assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'")
            assert answer.read() == crawled_file.report_path.read_bytes()
        browser = subprocess.Popen(
            [sys.executable, "-c", LIVE, url, chromium],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        output, errors = browser.communicate(timeout=120)
        assert output, errors
        seen = json.loads(output)
        assert seen == {
            "links": {
                "feed": {"href": "feed.atom", "text": "Atom feed of new products", "visible": True},
                "report": {"href": "report.html", "text": "Report with charts", "visible": True},
            },
            "report": {"charts": 5, "maxWidth": "1080px"},
            "errors": [],
        }
        assert crawl.wait(timeout=180) == 0
    finally:
        if browser is not None:
            _kill_tree(browser)
        stop_process(crawl)
    # at its end the crawl wrote the feed of its own database over the served file
    assert feedparser.parse(feed.read_bytes()).entries
    assert feed.read_bytes() != crawled_file.feed_path.read_bytes()
    assert report.read_bytes() != crawled_file.report_path.read_bytes()
