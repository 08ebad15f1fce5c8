"""The dcl spider's callbacks on saved ledger answers (tests/fixtures/dcl), without a crawl."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from scrapy import Request, signals
from scrapy.http import TextResponse
from twisted.python.failure import Failure

from matter_crawler.dcl.records import DclRecord
from matter_crawler.exceptions import DeadLettered
from matter_crawler.signals import request_dead_lettered
from matter_crawler.spiders.dcl import STATE_NAME, DclSpider
from matter_crawler.storage import Database
from matter_crawler.storage.runs import finish_run, previous_run_facts, start_run

from ..helpers import project_crawler

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dcl"
BASE = "https://dcl.example"


@pytest.fixture
def spider(tmp_path):
    crawler = project_crawler(
        DclSpider,
        {"DATABASE_URL": f"sqlite:///{tmp_path}/s.sqlite3", "DCL_BASE_URL": BASE + "/"},
    )
    crawler.stats.open_spider()
    spider = DclSpider.from_crawler(crawler)
    spider.letters = []

    def lettered(**letter):
        spider.letters.append(letter)

    spider._lettered = lettered  # held: signal handlers are weak references
    crawler.signals.connect(lettered, signal=request_dead_lettered)
    spider.first_pages = drain(spider.start())
    return spider


def drain(generator) -> list:
    """An async generator that never waits, run to its end without an event loop."""
    items = []
    while True:
        try:
            generator.__anext__().send(None)
        except StopIteration as step:
            items.append(step.value)
        except StopAsyncIteration:
            return items


def answer(request: Request, fixture: str | bytes, status: int = 200) -> TextResponse:
    body = fixture if isinstance(fixture, bytes) else (FIXTURES / fixture).read_bytes()
    return TextResponse(request.url, status=status, body=body, request=request)


def split(outputs):
    outputs = list(outputs)
    return (
        [o for o in outputs if isinstance(o, Request)],
        [o for o in outputs if isinstance(o, DclRecord)],
    )


def first_page(spider, stage: str) -> Request:
    (request,) = [r for r in spider.first_pages if r.meta["stage"] == stage]
    return request


def test_start_asks_for_the_first_page_of_each_list_with_its_count(spider):
    assert [r.url for r in spider.first_pages] == [
        f"{BASE}/dcl/{path}?pagination.limit=1000&pagination.count_total=true"
        for path in (
            "vendorinfo/vendors",
            "model/models",
            "compliance/compliance-info",
            "compliance/certified-models",
            "compliance/provisional-models",
            "compliance/revoked-models",
        )
    ]
    assert spider.stage() == "vendors"
    assert spider.crawler.stats.get_value("dcl/requests") == 6


def test_a_models_page_gives_its_records_each_models_versions_and_the_next_page(spider):
    request = first_page(spider, "models")
    requests, records = split(spider.parse_list(answer(request, "models-first.json")))
    assert [r.kind for r in records] == ["model", "model"]
    versions, (following,) = requests[:2], requests[2:]
    assert [r.url for r in versions] == [
        f"{BASE}/dcl/model/versions/4955/23512",
        f"{BASE}/dcl/model/versions/5284/3257",
    ]
    assert following.url == (
        f"{BASE}/dcl/model/models?pagination.limit=1000&pagination.key=AAAa1y8AACfOLw%3D%3D"
    )
    assert (following.meta["page"], following.meta["count_total"]) == (2, False)
    walk = spider.walk
    assert walk.stages["models"].total == 1  # 122 models at 1000 a page
    assert walk.models_listed == 122
    assert spider.progress()["stages"]["versions"]["total"] == 122

    # a version number each, then the version record
    (record_request,) = spider.parse_versions(answer(versions[0], "versions.json"))
    assert record_request.url == f"{BASE}/dcl/model/versions/4955/23512/3458666258"
    (record,) = spider.parse_version(answer(record_request, "version-record.json"))
    assert record.url == record_request.url
    assert spider.crawler.stats.get_value("dcl/records/model_version") == 1


def test_a_model_without_versions_is_counted_not_failed(spider):
    request = spider.versions_request(1, 1)
    assert list(spider.parse_versions(answer(request, "versions-not-found.json", 404))) == []
    stats = spider.crawler.stats
    assert stats.get_value("dcl/models_without_versions") == 1
    assert spider.walk.stages["versions"].done == 1
    assert spider.letters == []

    # a 404 that is not the ledger's NotFound: a wrong path, dead-lettered
    other = spider.versions_request(1, 2)
    assert list(spider.parse_versions(answer(other, b"404 page not found", 404))) == []
    (letter,) = spider.letters
    assert (letter["url"], letter["stage"], letter["failure_class"]) == (
        f"{BASE}/dcl/model/versions/1/2",
        "versions",
        "parse",
    )
    assert spider.walk.stages["versions"].failed == 1


def test_a_list_page_lost_for_good_is_followed_by_the_next_page_by_offset(spider):
    request = first_page(spider, "vendors")
    list(spider.parse_list(answer(request, "vendors-first.json")))  # 300 vendors: one page
    assert spider.walk.stages["vendors"].total == 1
    models = first_page(spider, "models")
    failure = Failure(DeadLettered("server", "HTTP 503 (after 5 attempts)"))
    failure.request = models
    (following,) = spider.page_errback(failure)
    assert following.url == (
        f"{BASE}/dcl/model/models?pagination.limit=1000&pagination.offset=1000"
        "&pagination.count_total=true"
    )
    assert spider.letters == []  # the retry middleware wrote the letter
    assert spider.crawler.stats.get_value("dcl/failed/models") == 1
    assert spider.crawler.stats.get_value("dcl/offset_pages") == 1
    # the callback middleware telling of the same page again changes nothing
    assert list(spider.page_failed(models)) == []
    assert spider.walk.stages["models"].failed == 1


def test_an_answer_the_parser_refuses_is_dead_lettered_and_the_list_goes_on(spider):
    request = first_page(spider, "compliance")
    (following,) = spider.parse_list(answer(request, b"<html>Bad Gateway</html>"))
    assert "pagination.offset=1000" in following.url
    (letter,) = spider.letters
    assert (letter["stage"], letter["failure_class"]) == ("compliance", "parse")
    assert letter["reason"].startswith("the list page is not JSON")
    # a page past a list whose length is known is not asked for
    revoked = first_page(spider, "revoked")
    list(spider.parse_list(answer(revoked, "revoked-models.json")))
    assert list(spider._continue_list(revoked.replace(meta={**revoked.meta, "page": 1}))) == []


def test_a_page_whose_callback_raised_after_counting_counts_failed_once(spider):
    request = first_page(spider, "revoked")
    list(spider.parse_list(answer(request, "revoked-models.json")))
    assert spider.walk.stages["revoked"].done == 1
    list(spider.page_failed(request))  # CallbackErrorMiddleware: the callback raised later
    count = spider.walk.stages["revoked"]
    assert (count.done, count.failed) == (0, 1)


def test_the_catalogues_planner_reads_only_the_catalogue_spiders_runs(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/runs.sqlite3")
    try:
        for spider, pages, day in (("matter_products", 40, 1), ("dcl", 12110, 2)):
            run_id = database.run_sync(
                lambda engine, spider=spider, day=day: start_run(
                    engine, spider=spider, job_id=None, mode=None, settings={},
                    now=datetime(2026, 1, day, tzinfo=UTC),
                )
            )  # fmt: skip
            values = {"status": "finished", "pages_planned": pages}
            database.run_sync(finish_run, run_id, values)
        started, pages = database.run_sync(previous_run_facts, None, "matter_products")
        assert (started.day, pages) == (1, 40)
        assert database.run_sync(previous_run_facts, None)[1] == 12110  # every spider's
    finally:
        database.close()


def test_a_resumed_walk_asks_for_the_first_pages_again_and_uncounts_those_seen(spider):
    spider.walk.planned("versions")  # the walk went on before the stop
    state = spider._saved_state()
    spider.session._restored[STATE_NAME] = state  # as a resumed job finds it
    again = drain(spider.start())
    assert [r.url for r in again] == [r.url for r in spider.first_pages]
    # the dupefilter drops five (asked for before the stop); one was not yet taken
    for request in again[:5]:
        spider.crawler.signals.send_catch_log(signal=signals.request_dropped, request=request)
    assert spider.walk.requests() == 6 + 1 + 1
    assert spider.crawler.stats.get_value("dcl/requests") == 6 + 6 - 5
