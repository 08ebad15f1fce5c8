"""Recordings (issue 9): `scrapy record-site`, replay with `sitesim --cassettes`, recorded pages.

The real site cannot be reached here, so the recorder is pointed at the
simulated site, which is then stopped: its cassettes are served by the
simulated site's replay mode and crawled, and that crawl must store exactly
what a crawl of the live site stored. Every recorded page (the recordings
these tests make, and the committed ones under tests/fixtures/recordings/) goes
through the parsers: listing pages must yield their expected cards, product
pages must lose no label and equal the reviewed expectations file.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lxml import html as lxml_html
from sqlalchemy import create_engine

from matter_crawler.parsing import label_key, parse_detail, parse_listing
from matter_crawler.parsing.normalize import LABEL_FIELDS
from matter_crawler.parsing.urls import url_path
from matter_crawler.recording.cassettes import RecordedPage, recorded_pages
from matter_crawler.recording.expectations import (
    EXPECTATIONS_FILE,
    expectations_of,
    merge_expectations,
    parsed_product,
    product_expectation,
    read_expectations,
)
from matter_crawler.settings import USER_AGENT as PROJECT_USER_AGENT
from matter_crawler.verify import diff_records, stored_records
from sitesim.process import LISTING_QUERY, SimulatedSite

from ..helpers import (
    PROJECT_ROOT,
    crawl_runs,
    query,
    retry_after_violations,
    run_crawl,
    sqlite_url,
)

# its module-scoped fixtures crawl: run the module on one pytest-xdist worker, once
pytestmark = pytest.mark.xdist_group(__name__)

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "recordings"
#: credentials the test hands the recorder; none may reach a recording
SECRETS = ("SECRETQUERY", "SECRETCOOKIE", "SECRETTOKEN")
SECRET_HEADER_NAMES = {"cookie", "set-cookie", "authorization"}
#: the simulated site's WordPress nonce (in an inline script): token-like, so redacted
SIM_NONCE = "5f1c0a2b9e"


def run_record_site(
    base_url: str, directory: Path, *args: str, query: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``scrapy record-site -o DIR ...`` against ``base_url``, as a user runs it."""
    command = [
        sys.executable, "-m", "scrapy", "record-site", "-o", str(directory),
        "--delay", "0", *args, "-s", f"CSA_BASE_URL={base_url}",
    ]  # fmt: skip
    if query is not None:
        command += ["-s", f"CSA_LISTING_QUERY={query}"]
    return subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=180, check=False
    )


def checked(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"record-site exited {result.returncode}:\n{result.stderr}"
    return result


def cassette_interactions(directory: Path) -> list[dict[str, Any]]:
    interactions = []
    for path in sorted(directory.glob("*.json")):
        interactions += json.loads(path.read_text(encoding="utf-8"))["http_interactions"]
    return interactions


def requested(log: list[dict[str, Any]]) -> list[str]:
    return [entry["path"] for entry in log]


def stored(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        return stored_records(engine)
    finally:
        engine.dispose()


def product_expectations(directory: Path) -> list[dict[str, Any]]:
    lines = read_expectations(directory / EXPECTATIONS_FILE)
    return [
        {k: v for k, v in line.items() if k != "kind"}
        for line in lines
        if line["kind"] == "product"
    ]


# -- checking one recorded page ---------------------------------------------------------


def page_labels(page: Any) -> list[str]:
    """Every field label a product page shows, found without the project's parser.

    ``li.item`` rows: the text of their element of class ``label`` (any tag),
    else the text before the first colon; rows of the legacy
    ``table.product-certificates-table``: the first cell.
    """
    doc = lxml_html.document_fromstring(
        page.body, parser=lxml_html.HTMLParser(encoding=page.encoding)
    )
    labels = []
    for item in doc.xpath("//li[contains(concat(' ', normalize-space(@class), ' '), ' item ')]"):
        marked = item.xpath(".//*[contains(concat(' ', normalize-space(@class), ' '), ' label ')]")
        text = marked[0].text_content() if marked else item.text_content().partition(":")[0]
        labels.append(text)
    for row in doc.xpath(
        "//table[contains(concat(' ', normalize-space(@class), ' '),"
        " ' product-certificates-table ')]//tr"
    ):
        cells = row.xpath("./td|./th")
        if cells:
            labels.append(cells[0].text_content())
    return [shown for label in labels if (shown := " ".join(label.split()).rstrip(":").strip())]


def lost_labels(page: Any) -> list[str]:
    """Labels on the page the parser did not read, or read into no field and not extra_fields."""
    parsed = parse_detail(page.body, page.uri, page.encoding)
    item = parsed_product(page)
    read = {label for label, _value in parsed.fields}
    return [
        label
        for label in page_labels(page)
        if label not in read
        or (label_key(label) not in LABEL_FIELDS and label not in item.extra_fields)
    ]


def page_failures(page: Any, expectations: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """What is wrong with one recorded page, each naming the page (empty: nothing)."""
    where = f"{page.cassette.parent.name}:{page.path}"
    if page.kind == "listing":
        expected = expectations.get(("listing", page.path))
        if expected is None:
            return [f"{where}: no listing line in expectations.jsonl"]
        if page.status != expected["status"]:
            return [f"{where}: status {page.status}, expected {expected['status']}"]
        if page.status != 200:
            return []
        listing = parse_listing(page.body, page.uri, page.encoding)
        failures = []
        if len(listing.cards) != expected["cards"]:
            failures.append(f"{where}: {len(listing.cards)} cards, expected {expected['cards']}")
        paths = [url_path(card.url) for card in listing.cards]
        if paths != expected["products"]:
            failures.append(f"{where}: cards {paths}, expected {expected['products']}")
        if listing.last_page != expected["last_page"]:
            failures.append(
                f"{where}: last page {listing.last_page}, expected {expected['last_page']}"
            )
        return failures
    if page.kind == "detail":
        expected = expectations.get(("product", page.path))
        if page.status != 200:
            return [f"{where}: answered {page.status} but has a product line"] if expected else []
        failures = []
        lost = lost_labels(page)
        if lost:
            failures.append(
                f"{where}: labels lost (not read, or in no field and not in extra_fields): {lost}"
            )
        item = parsed_product(page)
        if item.problems:
            failures.append(f"{where}: the parser could not read: {item.problems}")
        actual = product_expectation(page)
        if expected is None:
            failures.append(f"{where}: no product line in expectations.jsonl")
        elif actual != expected:
            differing = [name for name in expected if expected.get(name) != actual.get(name)]
            failures.append(
                f"{where}: differs from expectations.jsonl in {differing}: "
                + "; ".join(f"{n}: {expected.get(n)!r} -> {actual.get(n)!r}" for n in differing)
            )
        return failures
    return []


def expectations_index(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    lines = read_expectations(directory / EXPECTATIONS_FILE)
    return {(line["kind"], line["url"]): line for line in lines}


def committed_pages() -> list[Any]:
    """(directory, page) of every page recorded under tests/fixtures/recordings/."""
    found = []
    for directory in sorted(path for path in FIXTURES.iterdir() if path.is_dir()):
        for page in recorded_pages(directory):
            if page.kind in ("listing", "detail"):
                found.append(pytest.param(directory, page, id=f"{directory.name}:{page.path}"))
    return found


# -- the recordings these tests make ----------------------------------------------------


@dataclass
class LiveRecording:
    directory: Path
    output: str
    requests: list[dict[str, Any]]
    truth: list[dict[str, Any]]
    live_database_url: str
    live_pid: int
    cookies_set: list[str]


@pytest.fixture(scope="module")
def live_recording(tmp_path_factory: pytest.TempPathFactory) -> LiveRecording:
    """A complete recording of a small live site (cookies on), and a crawl of the live site.

    The site is stopped before the fixture returns: everything after runs offline.
    """
    directory = tmp_path_factory.mktemp("live") / "recording"
    live_database = sqlite_url(directory.parent / "live.sqlite3")
    with SimulatedSite(products=30, seed=5, variant_rate=0.5, set_cookies=True) as site:
        with urllib.request.urlopen(site.listing_url(1), timeout=30) as answer:
            cookies_set = answer.headers.get_all("Set-Cookie") or []
        site.reset_stats()
        result = checked(
            run_record_site(
                site.base_url, directory,
                "--listing-sample", "all", "--detail-sample", "all",
                "--header", "Cookie: cf_clearance=SECRETCOOKIE",
                "--header", "Authorization: Bearer SECRETTOKEN",
                query=f"{LISTING_QUERY}&access_token=SECRETQUERY",
            )
        )  # fmt: skip
        log = site.requests_log()
        truth = site.truth()
        run_crawl(site.base_url, live_database, timeout=120).check()
        pid = site.pid
    return LiveRecording(directory, result.stdout, log, truth, live_database, pid, cookies_set)


@dataclass
class GrownRecording:
    directory: Path
    first: list[str]
    second: list[str]
    third: list[str]
    interactions_after: list[list[dict[str, Any]]]
    outputs: list[str]


@pytest.fixture(scope="module")
def grown_recording(tmp_path_factory: pytest.TempPathFactory) -> GrownRecording:
    """One site recorded three times: a small sample, a larger one, the larger one again."""
    directory = tmp_path_factory.mktemp("grown") / "recording"
    runs: list[list[str]] = []
    interactions: list[list[dict[str, Any]]] = []
    outputs: list[str] = []
    with SimulatedSite(products=60, seed=11, variant_rate=0.3) as site:
        for listing_sample, detail_sample in (("1", "3"), ("2", "7"), ("2", "7")):
            site.reset_stats()
            result = checked(
                run_record_site(
                    site.base_url, directory,
                    "--listing-sample", listing_sample, "--detail-sample", detail_sample,
                )
            )  # fmt: skip
            runs.append(requested(site.requests_log()))
            interactions.append(cassette_interactions(directory))
            outputs.append(result.stdout)
    return GrownRecording(directory, *runs, interactions, outputs)


# -- 1. record, stop, replay, crawl -------------------------------------------------------


def test_recording_holds_no_cookies_or_credentials(live_recording: LiveRecording) -> None:
    # the credentials were really in play: the site set cookies, the recorder sent the token
    assert any(cookie.startswith("wp_sim_session=") for cookie in live_recording.cookies_set)
    assert any("SECRETQUERY" in path for path in requested(live_recording.requests))

    files = sorted(live_recording.directory.iterdir())
    assert {path.name for path in files} == {
        "robots.json", "listing.json", "detail.json", "expectations.jsonl",
    }  # fmt: skip
    for path in files:
        text = path.read_text(encoding="utf-8")
        for secret in (*SECRETS, "wp_sim_session", SIM_NONCE):
            assert secret not in text, f"{secret} recorded in {path.name}"
    interactions = cassette_interactions(live_recording.directory)
    for interaction in interactions:
        for side in ("request", "response"):
            names = {name.lower() for name in interaction[side]["headers"]}
            assert not names & SECRET_HEADER_NAMES, (interaction["request"]["uri"], side, names)
    listing_uris = [
        i["request"]["uri"] for i in interactions if "csa-iot_products" in i["request"]["uri"]
    ]
    assert listing_uris
    assert all("access_token=REDACTED" in uri for uri in listing_uris)
    # the nonce is redacted where the page had it; the page is otherwise intact
    detail = next(i for i in interactions if "/csa_product/" in i["request"]["uri"])
    assert '"nonce":"REDACTED"' in detail["response"]["body"]["string"]


def test_replayed_recording_crawls_into_the_live_crawls_database(
    live_recording: LiveRecording, tmp_path: Path
) -> None:
    # the live site is gone: the replay is all there is
    with pytest.raises(ProcessLookupError):
        os.kill(live_recording.live_pid, 0)
    assert len(live_recording.truth) == 30
    # every page was sampled: 3 listing pages, the page past them, 30 products
    assert "listing pages: 4 fetched" in live_recording.output
    assert "product pages: 30 fetched" in live_recording.output

    replay_database = sqlite_url(tmp_path / "replay.sqlite3")
    with SimulatedSite(cassettes=live_recording.directory) as replay:
        expectations = replay.truth()
        run_crawl(replay.base_url, replay_database, timeout=120).check()
        served = replay.requests_log()

    live_rows = stored(live_recording.live_database_url)
    replay_rows = stored(replay_database)
    assert len(live_rows) == 30
    assert diff_records(live_rows, replay_rows, limit=0) == []
    # the expectations the parser derived are the live site's own (independent) truth
    assert diff_records(live_recording.truth, expectations, limit=0) == []
    assert diff_records(expectations, replay_rows, limit=0) == []
    # the crawl met nothing unrecorded: every answer was a recorded page (404 = past the end)
    statuses = {(entry["kind"], entry["status"]) for entry in served}
    assert statuses <= {("other", 200), ("list", 200), ("list", 404), ("detail", 200)}
    assert [entry["path"] for entry in served if entry["status"] == 404] == [
        f"/csa-iot_products/page/4/?{LISTING_QUERY}"
    ]
    # and the two crawls went the same way: the same pages, the same new products, no failure
    (live_run,) = crawl_runs(live_recording.live_database_url)
    (replay_run,) = crawl_runs(replay_database)
    for run in (live_run, replay_run):
        assert (run["status"], run["dead_letters"]) == ("finished", 0), run
    assert (replay_run["pages_crawled"], replay_run["products_new"]) == (
        live_run["pages_crawled"],
        live_run["products_new"],
    )
    assert (replay_run["pages_crawled"], replay_run["products_new"]) == (3, 30)
    assert query(replay_database, "select count(*) from dead_letters") == [(0,)]


def test_replay_rewrites_links_answers_404_and_keeps_faults(
    live_recording: LiveRecording,
) -> None:
    recorded_origin = json.loads((live_recording.directory / "robots.json").read_text())[
        "http_interactions"
    ][0]["request"]["uri"].removesuffix("/robots.txt")
    with SimulatedSite(cassettes=live_recording.directory) as replay:
        # a listing page by its number, whatever the query (the recorded one had a token)
        with urllib.request.urlopen(replay.listing_url(2), timeout=30) as answer:
            body = answer.read().decode("utf-8")
            assert answer.headers.get("Set-Cookie") is None
        assert recorded_origin not in body
        listing = parse_listing(body, replay.listing_url(2))
        assert len(listing.cards) == 12
        assert all(card.url.startswith(f"{replay.base_url}/csa_product/") for card in listing.cards)
        # unrecorded pages: the recorded WordPress 404 page, links rewritten too
        for path in ("/csa_product/never-recorded/", "/csa-iot_products/page/9/", "/about/"):
            with pytest.raises(urllib.error.HTTPError) as raised:
                urllib.request.urlopen(replay.url(path), timeout=30)
            assert raised.value.code == 404
            page = raised.value.read().decode("utf-8")
            assert "error404" in page
            assert recorded_origin not in page
        # the truth is the expectations file's products; a recording cannot be mutated
        assert replay.truth() == product_expectations(live_recording.directory)
        with pytest.raises(ValueError, match="400"):
            replay.mutate(add=1)
        # faults apply to recorded pages as to generated ones
        product = replay.url(replay.truth()[0]["url"])
        replay.set_faults(error_rate=1.0, error_statuses=[503])
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(product, timeout=30)
        assert raised.value.code == 503
        replay.set_faults(error_rate=0.0, js_only_rate=1.0)
        with urllib.request.urlopen(product, timeout=30) as answer:
            shell = answer.read().decode("utf-8")
        assert 'id="product-root-loader"' in shell
        assert parse_detail(shell, product).fields == ()  # no data without JavaScript
        assert "entry-product-details" in shell or "product-certificates-table" in shell
        faults = {kind: count for kind, count in replay.stats()["faults"].items() if count}
        assert faults == {"error": 1, "js_only": 1}


def test_replay_command_line_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, message in (
        (["--cassettes", str(tmp_path / "missing")], "--cassettes: no directory"),
        (["--cassettes", str(empty)], "--cassettes: no betamax cassettes"),
        (["--cassettes", str(FIXTURES / "simulated"), "--hostile"], "--hostile does not apply"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "sitesim", *args, "--dump-truth", os.devnull],
            capture_output=True, text=True, timeout=60, check=False, cwd=PROJECT_ROOT,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert message in result.stderr


# -- politeness -----------------------------------------------------------------------------


def test_recorder_obeys_robots_txt_waits_and_sends_the_project_user_agent(tmp_path: Path) -> None:
    """Record a replay whose robots.txt forbids product pages and asks for a Crawl-delay."""
    source = tmp_path / "strict-site"
    shutil.copytree(FIXTURES / "simulated", source)
    robots = json.loads((source / "robots.json").read_text(encoding="utf-8"))
    robots["http_interactions"][0]["response"]["body"]["string"] = (
        "User-agent: *\nDisallow: /csa_product/\nCrawl-delay: 0.3\n"
    )
    (source / "robots.json").write_text(json.dumps(robots), encoding="utf-8")
    out = tmp_path / "recording"
    with SimulatedSite(cassettes=source) as site:
        result = checked(
            run_record_site(site.base_url, out, "--listing-sample", "0", "--detail-sample", "all")
        )
        log = site.requests_log()
    # robots.txt, page 1, page 4 (the last), page 5 (past it); no product page
    assert [entry["kind"] for entry in log] == ["other", "list", "list", "list"]
    assert "disallowed by robots.txt: 16" in result.stdout  # 12 cards on page 1, 4 on page 4
    arrivals = [entry["t"] for entry in log]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.3 - 0.02, gaps  # Crawl-delay beat --delay 0
    for interaction in cassette_interactions(out):
        assert interaction["request"]["headers"]["User-Agent"] == [PROJECT_USER_AGENT]


def test_recorder_retries_politely_and_records_no_failed_answer(tmp_path: Path) -> None:
    out = tmp_path / "recording"
    with SimulatedSite(
        products=30, seed=4, throttle_rate=0.3, error_rate=0.2, retry_after=1
    ) as site:
        result = checked(
            run_record_site(
                site.base_url, out, "--listing-sample", "0", "--detail-sample", "3",
                "--attempts", "6",
            )
        )  # fmt: skip
        log = site.requests_log()
        faults = site.stats()["faults"]
    assert faults["throttle"] + faults["error"] > 0, "the site should have failed some requests"
    assert retry_after_violations(log) == []
    statuses = {i["response"]["status"]["code"] for i in cassette_interactions(out)}
    assert statuses <= {200, 404}
    assert "could not be recorded" not in result.stdout
    lines = read_expectations(out / "expectations.jsonl")
    assert sum(line["kind"] == "product" for line in lines) == 3


# -- 2. re-running adds episodes, fetching only what is new -------------------------------


def test_rerun_adds_new_episodes_without_refetching(grown_recording: GrownRecording) -> None:
    first, second, third = grown_recording.first, grown_recording.second, grown_recording.third
    # first run: robots.txt, pages 1, one middle page, 5 (the last), 6 (past it), 3 products
    assert len(first) == 1 + 4 + 3
    # second run: only the middle page and the 4 products it adds reach the server
    assert not set(first) & set(second), "recorded pages were fetched again"
    assert sorted(path.startswith("/csa_product/") for path in second) == [False] + [True] * 4
    # third run, same sizes: nothing at all
    assert third == []
    assert "listing pages: 0 fetched, 5 already recorded" in grown_recording.outputs[2]
    assert "product pages: 0 fetched, 7 already recorded" in grown_recording.outputs[2]

    after_first, after_second, after_third = grown_recording.interactions_after
    assert len(after_first) == len(first)
    assert len(after_second) == len(first) + len(second)
    assert after_third == after_second
    # episodes recorded first are kept as they were (recorded_at included)
    by_uri = {i["request"]["uri"]: i for i in after_second}
    for interaction in after_first:
        assert by_uri[interaction["request"]["uri"]] == interaction
    lines = read_expectations(grown_recording.directory / "expectations.jsonl")
    assert sum(line["kind"] == "listing" for line in lines) == 5
    assert sum(line["kind"] == "product" for line in lines) == 7


def test_reviewed_expectations_are_kept_and_disagreements_reported(tmp_path: Path) -> None:
    source = FIXTURES / "simulated"
    reviewed = [
        json.loads(line) for line in (source / "expectations.jsonl").read_text().splitlines()
    ]
    edited = [dict(line) for line in reviewed]
    product = next(line for line in edited if line["kind"] == "product")
    product["model"] = "Edited by a reviewer"
    fresh = expectations_of(recorded_pages(source))
    merged, disagreements = merge_expectations(edited, fresh, rewrite=False)
    assert merged == edited
    assert disagreements == [product["url"]]
    rewritten, _ = merge_expectations(edited, fresh, rewrite=True)
    assert rewritten == reviewed


# -- 3. every recorded page through the parsers --------------------------------------------


@pytest.mark.parametrize(("directory", "page"), committed_pages())
def test_committed_recorded_page(directory: Path, page: Any) -> None:
    assert page_failures(page, expectations_index(directory)) == []


def test_every_page_of_the_recordings_made_here(
    live_recording: LiveRecording, grown_recording: GrownRecording
) -> None:
    checked_pages = 0
    failures = []
    for directory in (live_recording.directory, grown_recording.directory):
        expectations = expectations_index(directory)
        for page in recorded_pages(directory):
            failures += page_failures(page, expectations)
            checked_pages += page.kind in ("listing", "detail")
    assert failures == []
    assert checked_pages == (4 + 30) + (5 + 7)


def test_committed_recordings_exist_and_cover_the_markup_variants() -> None:
    pages = recorded_pages(FIXTURES / "simulated")
    kinds = sorted(page.kind for page in pages)
    assert kinds.count("listing") >= 3
    assert kinds.count("detail") >= 5
    layouts = {
        parse_detail(page.body, page.uri, page.encoding).layout
        for page in pages
        if page.kind == "detail"
    }
    assert layouts == {"items", "table"}
    unknown = {
        label
        for page in pages
        if page.kind == "detail"
        for label in parsed_product(page).extra_fields
    }
    assert unknown, "the committed sample should show a label the parser does not know"


def test_a_lost_label_is_reported_by_name() -> None:
    """The label check can fail: labels in markup the parser does not read are named."""
    label_span = re.compile(rb'<li class="item"><span class="label">([^<:]+)</span>')
    page = next(
        page
        for page in recorded_pages(FIXTURES / "simulated")
        if page.kind == "detail" and label_span.search(page.body)
    )
    match = label_span.search(page.body)
    assert match is not None
    label = match.group(1)
    # the label in a <strong> (the parser reads span.label only), and a row without classes
    spoiled = page.body.replace(
        match.group(0),
        b'<li class="item"><b>Matter Pairing Hint:</b> <i>hold 5 s</i></li>'
        b'<li class="item"><strong class="label">' + label + b"</strong>",
        1,
    )
    broken = RecordedPage(page.cassette, page.uri, page.status, spoiled, page.encoding)
    failures = page_failures(broken, expectations_index(FIXTURES / "simulated"))
    lost = next(failure for failure in failures if "labels lost" in failure)
    assert repr(label.decode()) in lost
    assert "'Matter Pairing Hint'" in lost
    assert page_failures(page, expectations_index(FIXTURES / "simulated")) == []
