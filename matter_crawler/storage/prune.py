"""What ``scrapy prune`` deletes: the history nobody needs any more, never the state.

Rows older than a cutoff, in three tables:

- ``product_changes`` and ``dcl_changes``: the change rows of runs that ended before
  the cutoff (``finished_at``; a run killed without closing its record counts by its
  ``started_at``, unless a crawl may be running), and change rows without a run (or
  whose run record is gone) changed before it.
- ``dead_letters``: letters resolved before the cutoff. Pending letters stay,
  however old.

Never ``products`` (the latest state), ``crawl_runs`` (the runs' history: ``scrapy
runs`` lists it and ``scrapy changes`` names the run it compares with), the DCL
records, the cross-checks, or anything of a running run.

Rows go in windows of primary keys (:data:`WINDOW_IDS`), one short transaction
each, so a large prune never builds one huge transaction. The caller holds the
database's writer lock meanwhile (the command does): on SQLite a crawl's
read-then-write transaction fails if another connection commits in between.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Engine, Table, and_, delete, func, or_, select

from .models import CrawlLock, CrawlRun, DclChange, DeadLetter, ProductChange

runs = CrawlRun.__table__
locks = CrawlLock.__table__
letters = DeadLetter.__table__
#: The tables a prune deletes from, in the order it reports them.
TABLES = ("product_changes", "dcl_changes", "dead_letters")
#: Primary keys a transaction covers.
WINDOW_IDS = 5000

_CHANGES: dict[str, Table] = {
    "product_changes": ProductChange.__table__,  # type: ignore[dict-item]
    "dcl_changes": DclChange.__table__,  # type: ignore[dict-item]
}


def old_runs(cutoff: datetime, *, crawl_may_run: bool) -> ColumnElement[bool]:
    """The runs that ended before ``cutoff``.

    A run without ``finished_at`` is running, or was killed: it counts by its start,
    but only when no crawl may be running (the caller holds the writer lock, or
    nobody does), since a running run's rows are never touched.
    """
    ended = runs.c.finished_at < cutoff
    if crawl_may_run:
        return ended
    return or_(ended, and_(runs.c.finished_at.is_(None), runs.c.started_at < cutoff))


def condition(name: str, cutoff: datetime, *, crawl_may_run: bool) -> ColumnElement[bool]:
    """The rows of table ``name`` that a prune with this cutoff deletes."""
    if name == "dead_letters":
        return and_(letters.c.resolved_at.is_not(None), letters.c.resolved_at < cutoff)
    changes = _CHANGES[name]
    of_old_run = changes.c.run_id.in_(
        select(runs.c.id).where(old_runs(cutoff, crawl_may_run=crawl_may_run))
    )
    runless = and_(
        changes.c.changed_at < cutoff,
        or_(changes.c.run_id.is_(None), changes.c.run_id.not_in(select(runs.c.id))),
    )
    return or_(of_old_run, runless)


def _table(name: str) -> Table:
    return letters if name == "dead_letters" else _CHANGES[name]  # type: ignore[return-value]


def crawl_lock_held(engine: Engine) -> bool:
    """Whether a writer's lock row is in ``crawl_locks`` (for a dry run, which takes none)."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(locks)).scalar_one() > 0


def count(engine: Engine, cutoff: datetime, *, crawl_may_run: bool) -> dict[str, int]:
    """How many rows of each table a prune would delete now."""
    with engine.connect() as conn:
        return {
            name: conn.execute(
                select(func.count())
                .select_from(_table(name))
                .where(condition(name, cutoff, crawl_may_run=crawl_may_run))
            ).scalar_one()
            for name in TABLES
        }


def prune(engine: Engine, cutoff: datetime, *, crawl_may_run: bool = False) -> dict[str, int]:
    """Delete the rows :func:`count` counts, a window of ids per transaction."""
    deleted = {}
    for name in TABLES:
        table = _table(name)
        wanted = condition(name, cutoff, crawl_may_run=crawl_may_run)
        with engine.connect() as conn:
            low, high = conn.execute(select(func.min(table.c.id), func.max(table.c.id))).one()
        total = 0
        if low is not None:
            for start in range(low, high + 1, WINDOW_IDS):
                window = and_(table.c.id >= start, table.c.id < start + WINDOW_IDS, wanted)
                with engine.begin() as conn:
                    total += conn.execute(delete(table).where(window)).rowcount or 0
        deleted[name] = total
    return deleted
