"""The dcl spider's walk counts (pure), and what progress and the run record make of them."""

from __future__ import annotations

import pytest

from matter_crawler.dcl.walk import LIST_STAGES, MODEL_VERSIONS, STAGES, VERSIONS, Walk, pages_for
from matter_crawler.extensions.run_record import stage_reached
from matter_crawler.monitoring.progress import spider_stages


def started_walk() -> Walk:
    walk = Walk(limit=10)
    for stage in LIST_STAGES:
        walk.planned(stage)
    walk.started = True
    return walk


def finish_lists(walk: Walk, *, models: int = 25) -> None:
    """Every list one page, but models: 25 records, three pages, each model's versions
    asked for (as the spider does: a page's requests before the page counts done)."""
    for stage in LIST_STAGES:
        if stage == "models":
            walk.counted("models", models)
            for records in (10, 10, 5):
                for _ in range(records):
                    walk.planned(VERSIONS)
                if records == 10:
                    walk.planned("models")  # the next page
                walk.done("models", records)
        else:
            walk.counted(stage, 3)
            walk.done(stage, 3)


def test_pages_for():
    assert [pages_for(n, 7) for n in (0, 1, 7, 8, 14, 15)] == [1, 1, 1, 2, 2, 3]


def test_totals_come_from_the_first_answers_count_then_from_what_was_asked():
    walk = started_walk()
    assert walk.stage_total("models") == (None, 0.0)
    walk.counted("models", 25)
    for _ in range(10):
        walk.planned(VERSIONS)
    walk.planned("models")
    walk.done("models", 10)
    assert walk.stage_total("models") == (3, 0.0)
    assert walk.stage_total(VERSIONS) == (25, 0.0)  # one answer per model listed
    assert walk.stage_total(MODEL_VERSIONS) == (None, 0.0)  # no model's versions read yet
    for _ in range(4):
        walk.done(VERSIONS, 2)  # two versions each so far
    for _ in range(8):
        walk.planned(MODEL_VERSIONS)
    total, extrapolated = walk.stage_total(MODEL_VERSIONS)
    assert extrapolated == pytest.approx(2 * 21)  # 25 models, 4 answered
    assert total == pytest.approx(8 + 42)
    assert walk.stage() == "vendors"


def test_a_walk_is_complete_once_every_page_asked_for_succeeded():
    walk = started_walk()
    finish_lists(walk)
    assert walk.stage() == VERSIONS
    assert not walk.complete()
    for _ in range(25):
        walk.planned(MODEL_VERSIONS)
        walk.done(VERSIONS, 1)
    assert walk.stage() == MODEL_VERSIONS
    assert walk.stage_total(MODEL_VERSIONS) == (25, 0.0)  # every model's versions known
    for _ in range(25):
        walk.done(MODEL_VERSIONS, 1)
    assert walk.complete()
    assert walk.requests() == 6 + 2 + 25 + 25  # list pages, model versions, version records
    progress = walk.progress()["stages"]
    assert list(progress) == list(STAGES)
    assert all(p["total"] == p["done"] and p["failed"] == 0 for p in progress.values())
    assert Walk.from_state(walk.to_state()) == walk


def test_a_failed_page_leaves_the_walk_incomplete_at_its_stage():
    walk = started_walk()
    finish_lists(walk)
    for _ in range(24):
        walk.done(VERSIONS)  # no versions
    walk.failed(VERSIONS)
    assert walk.stage() == VERSIONS  # nothing outstanding; the first stage with a hole
    assert not walk.complete()
    walk.done("revoked")
    walk.undone("revoked")  # counted done, then its callback raised
    assert walk.stage() == "revoked"
    assert walk.list_over("vendors", 2)
    assert not walk.list_over("models", 3)


def test_a_walk_not_started_is_neither_complete_nor_over():
    walk = Walk(limit=10)
    assert (walk.stage(), walk.complete()) == ("start", False)


class _Spider:
    def __init__(self, stage: str, complete: bool) -> None:
        self._stage, self._complete = stage, complete

    def stage(self) -> str:
        return self._stage

    def complete(self) -> bool:
        return self._complete


@pytest.mark.parametrize(
    ("complete", "reason", "batches_lost", "stage"),
    [
        (True, "finished", 0, "done"),
        (True, "finished", 1, "model_versions"),  # a batch lost: not everything is stored
        (True, "shutdown", 0, "model_versions"),
        (False, "finished", 0, "model_versions"),
    ],
)
def test_the_run_record_asks_a_spider_that_knows_whether_it_read_everything(
    complete, reason, batches_lost, stage
):
    spider = _Spider(MODEL_VERSIONS, complete)
    assert stage_reached(spider, reason, batches_lost=batches_lost) == stage


def test_progress_takes_the_stages_a_spider_counts():
    stages = spider_stages(
        {
            "vendors": {"total": 3, "done": 3, "failed": 0, "extrapolated": 0.0},
            "versions": {"total": None, "done": 2, "failed": 1, "extrapolated": 0.0},
            "model_versions": {"total": 1, "done": 2, "failed": 0, "extrapolated": 0.5},
        }
    )
    assert list(stages) == ["vendors", "versions", "model_versions"]
    assert stages["vendors"].remaining == 0
    assert stages["versions"].remaining is None
    assert stages["model_versions"].total == 2  # never below what is finished
    assert stages["model_versions"].extrapolated == 0.5
