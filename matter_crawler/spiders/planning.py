"""The spider's plan: its arguments, the plan a run starts with, and how far it got.

The decisions themselves are :mod:`matter_crawler.planner`'s; here they meet the
spider's arguments, the database's evidence and the stats.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..planner import CrawlPlan, choose_mode, plausible_page_count, refresh_quota
from ..storage.products import KnownProduct, oldest_fetched, refresh_counts

if TYPE_CHECKING:
    from scrapy.statscollectors import StatsCollector

    from .matter_products import MatterProductsSpider

logger = logging.getLogger(__name__)


def positive_int(name: str, value: Any) -> int | None:
    """A whole-number spider argument (None when not given)."""
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"spider argument {name} must be a whole number, not {value!r}") from None
    if number < 1:
        raise ValueError(f"spider argument {name} must be at least 1, not {number}")
    return number


def flag(value: Any) -> bool:
    """A yes/no spider argument (``1``, ``true``, ``yes``, ``on``)."""
    return str(value).strip().lower() in {"1", "true", "yes", "on"} if value is not None else False


def stored_before(known: Mapping[str, KnownProduct], run_id: int | None) -> int:
    """Listed products stored before this run (not by it before a hard kill: a first
    run's partial rows say nothing of the catalogue's size)."""
    return sum(
        1
        for product in known.values()
        if not product.delisted and (run_id is None or product.first_seen_run_id != run_id)
    )


def new_plan(
    spider: MatterProductsSpider, run: dict[str, Any], previous_pages: int | None
) -> CrawlPlan:
    """The plan of a run that starts (``run``: what the run set out to do, if restarted)."""
    # after a hard kill, the run keeps its mode: "auto" would now see a
    # partly filled database and walk it incrementally, missing the rest
    mode = run.get("mode") or choose_mode(spider.mode_requested, len(spider.known))
    spider.refresh_all = run.get("refresh_all", spider.refresh_all)
    last_wanted = spider.end_page
    if spider.max_pages is not None:
        by_count = spider.start_page + spider.max_pages - 1
        last_wanted = by_count if last_wanted is None else min(last_wanted, by_count)
    # evidence of the page count: products stored before this run
    stored = stored_before(spider.known, spider.session.run_id)
    ceiling = spider.listing_max_pages
    logger.info(
        "Planning a %s crawl of %s (%d products known, refresh=%s)",
        mode,
        spider.base_url,
        len(spider.known),
        "all" if spider.refresh_all else "changed",
    )
    return CrawlPlan(
        mode=mode,
        refresh_all=spider.refresh_all,
        first_page=spider.start_page,
        last_page_wanted=last_wanted,
        limited=last_wanted is not None or spider.start_page > 1 or bool(spider.max_products),
        page_bound=plausible_page_count(previous_pages, stored, ceiling),
        page_ceiling=ceiling,
        page_bound_evidence=(
            f"previous run: {previous_pages or 'none'} pages; {stored:,} stored products; "
            f"LISTING_MAX_PAGES {ceiling:,}"
        ),
    )


async def plan_refresh(
    spider: MatterProductsSpider, previous_started: datetime | None
) -> list[str]:
    """The product pages stored longest ago, fetched again (``REFRESH_MAX_AGE_DAYS``)."""
    plan = spider.current_plan()
    period = spider.refresh_max_age_days
    if plan.refresh_all or plan.limited or period <= 0 or not spider.known:
        return []
    now = datetime.now(UTC)
    days = None
    if previous_started is not None:
        days = max(0.0, (now - previous_started).total_seconds() / 86400)
    # pages older than this pass the age limit before a next run at the same pace
    older_than = now - timedelta(days=max(0.0, period - (days or 0.0)))
    database = spider.database
    stored, due = await database.run(refresh_counts, older_than)
    quota = refresh_quota(stored, due, days, period)
    urls = await database.run(oldest_fetched, quota, spider.session.run_id) if quota else []
    stats = spider.crawler.stats
    stats.set_value("refresh/quota", quota)
    stats.set_value("refresh/due", due)
    plan.refresh_scheduled = len(urls)
    spider.refreshing.update(urls)
    if urls:
        logger.info(
            "Fetching again the %d product pages stored longest ago (%d of %d stored pages "
            "are due; every page is read at least once in %g days)",
            len(urls),
            due,
            stored,
            period,
        )
    return urls


def stage(plan: CrawlPlan | None) -> str:
    """The stage a crawl with this plan is in: planning, list, detail, delist."""
    if plan is None:
        return "planning"
    if plan.mode == "replay":
        return "detail"
    if plan.finish_phase in ("rewalk", "locate", "confirm"):
        return "delist"
    if plan.site_last_page is None:
        return "planning"
    return "detail" if plan.list_stage_finished() else "list"


def progress(plan: CrawlPlan | None, stats: StatsCollector) -> dict[str, Any]:
    """Counts for progress reporting: listing pages and product pages, planned and done."""
    detail_done = stats.get_value("matter/detail/pages", 0)
    detail_failed = stats.get_value("matter/detail/failed", 0)
    if plan is None:
        return {"stage": "planning", "list_total": None, "list_done": 0, "list_failed": 0,
                "detail_total": 0, "detail_done": 0, "detail_failed": 0}  # fmt: skip
    list_total = plan.target_last_page()
    if plan.mode == "incremental" and not plan.walk_finished:
        list_total = max(len(plan.pages_scheduled), len(plan.pages_done))
    counts = {
        "stage": stage(plan),
        "mode": plan.mode,
        "list_total": list_total,
        "list_done": len(plan.pages_done),
        "list_failed": len(plan.pages_failed),
        # product pages known to be wanted so far; grows while listing pages are read
        "detail_total": plan.details_scheduled + plan.refresh_scheduled,
        "detail_done": detail_done,
        "detail_failed": detail_failed,
    }
    if plan.finish_phase != "listing":
        # the end of a full run: listing pages read again, then each candidate's answer
        counts["delist_total"] = (
            plan.rewalk_scheduled + plan.locate_scheduled + len(plan.delist_unseen)
        )
        counts["delist_done"] = (
            plan.rewalk_done
            + plan.locate_done
            + len(plan.delist_found)
            + plan.confirmations_answered()
            - plan.delist_unknown
        )
        counts["delist_failed"] = plan.delist_unknown
    return counts
