"""The ``crawl_runs`` record: inserted when a run starts, updated when it stops.

Text that does not fit its column (a long scrapyd job id, a long finish reason) is
cut to the column's length with a warning, on every backend alike: PostgreSQL would
refuse it, and a shortened record beats none.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, distinct, func, insert, or_, select, update

from .bounds import shortened
from .models import CrawlRun, DeadLetter, Product, ProductChange

logger = logging.getLogger(__name__)

runs = CrawlRun.__table__
letters = DeadLetter.__table__
products = Product.__table__
changes = ProductChange.__table__


def start_run(
    engine: Engine,
    *,
    spider: str,
    job_id: str | None,
    mode: str | None,
    settings: dict[str, Any],
    now: datetime,
) -> int:
    """Insert a new run (status ``running``) and return its id."""
    values = fitted(
        {
            "spider": spider,
            "job_id": job_id,
            "mode": mode,
            "status": "running",
            "stage": "planning",
            "started_at": now,
            "sessions": 1,
            "settings": settings,
            "stats": {},
        }
    )
    with engine.begin() as conn:
        result = conn.execute(insert(runs).values(values))
        return int(result.inserted_primary_key[0])


def fitted(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with text cut to its column's length (see the module's docstring)."""
    values, notes = shortened(runs, values)
    for note in notes:
        logger.warning("Run record: %s", note)
    return values


def resume_run(engine: Engine, run_id: int) -> bool:
    """Mark a run as running again (a JOBDIR resume). False if the run is unknown."""
    with engine.begin() as conn:
        sessions = conn.execute(select(runs.c.sessions).where(runs.c.id == run_id)).scalar()
        if sessions is None:
            return False
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(status="running", finished_at=None, sessions=sessions + 1)
        )
        return True


def update_run(engine: Engine, run_id: int, values: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(fitted(values)))


def finish_run(
    engine: Engine, run_id: int, values: dict[str, Any], *, count_products: bool = False
) -> None:
    """Write the run's final record; dead letters are counted from their table.

    With ``count_products``, so are the product counts (:func:`product_counts`).
    Counting in the same writer-thread task as the update sees every batch and
    letter submitted before it.
    """
    with engine.begin() as conn:
        pending = (
            select(func.count())
            .select_from(letters)
            .where(letters.c.run_id == run_id, letters.c.resolved_at.is_(None))
        )
        resolved = (
            select(func.count()).select_from(letters).where(letters.c.resolved_run_id == run_id)
        )
        counted = product_counts(conn, run_id) if count_products else {}
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(
                {
                    **fitted(values),
                    **counted,
                    "dead_letters": conn.execute(pending).scalar() or 0,
                    "dead_letters_resolved": conn.execute(resolved).scalar() or 0,
                }
            )
        )


def product_counts(conn: Connection, run_id: int) -> dict[str, int]:
    """What the database knows a run did to the products, whatever processes it took.

    New: first stored by the run. Fetched: whose page the run stored last.
    Changed: with a change row of the run. Delisted: marked delisted since the
    run started and not seen by it (delisting records no run id; a run on the
    same database at the same time would be counted too).
    """

    def count(statement: Any) -> int:
        return conn.execute(statement).scalar() or 0

    started = select(runs.c.started_at).where(runs.c.id == run_id).scalar_subquery()
    number = select(func.count()).select_from(products)
    return {
        "products_new": count(number.where(products.c.first_seen_run_id == run_id)),
        "products_fetched": count(number.where(products.c.last_fetched_run_id == run_id)),
        "products_changed": count(
            select(func.count(distinct(changes.c.product_url))).where(changes.c.run_id == run_id)
        ),
        "products_delisted": count(
            number.where(
                products.c.delisted_at >= started,
                or_(products.c.last_seen_run_id.is_(None), products.c.last_seen_run_id != run_id),
            )
        ),
    }


def recent_runs(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(runs).order_by(runs.c.id.desc()).limit(limit))
        return [row._asdict() for row in rows]


def previous_run_id(engine: Engine, before: int | None = None) -> int | None:
    """The newest run (before ``before`` when given)."""
    statement = select(runs.c.id).order_by(runs.c.id.desc()).limit(1)
    if before is not None:
        statement = statement.where(runs.c.id < before)
    with engine.connect() as conn:
        return conn.execute(statement).scalar()


def previous_run_facts(
    engine: Engine, run_id: int | None, spider: str | None = None
) -> tuple[datetime | None, int | None]:
    """When the run before ``run_id`` started, and the page count the last finished run saw.

    ``spider``: only that spider's runs count (the ``dcl`` spider's runs say nothing of
    the catalogue's listing).

    The planner's evidence: the time since the previous run sets the refresh quota
    (``REFRESH_MAX_AGE_DAYS``), the last page count bounds what a pagination may claim.
    """
    earlier = runs.c.id < run_id if run_id is not None else runs.c.id.is_not(None)
    if spider is not None:
        earlier = earlier & (runs.c.spider == spider)
    with engine.connect() as conn:
        started = conn.execute(
            select(runs.c.started_at).where(earlier).order_by(runs.c.id.desc()).limit(1)
        ).scalar()
        pages = conn.execute(
            select(runs.c.pages_planned)
            .where(earlier, runs.c.status == "finished", runs.c.pages_planned.is_not(None))
            .order_by(runs.c.id.desc())
            .limit(1)
        ).scalar()
    return started, pages


def started_at(engine: Engine, run_id: int) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(select(runs.c.started_at).where(runs.c.id == run_id)).scalar()
