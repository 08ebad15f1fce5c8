"""The SQLAlchemy engine of a database URL, with the settings SQLite needs for a crawl.

Apart from :mod:`matter_crawler.storage.database` because the schema's migrations
open a second engine on the same URL, and the database module imports the schema's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

_WAL_CHECKPOINT_PAGES = 10_000
_PAGE_CACHE_KIB = 16 * 1024


def create_database_engine(
    url: str, *, busy_timeout: float | None = None, **options: Any
) -> Engine:
    """An engine for ``url``; for SQLite: the file's folder created, WAL, a busy timeout.

    ``busy_timeout``: seconds SQLite waits for another connection's lock before
    it refuses a statement (None: the driver's default, 5 s). ``options`` go to
    :func:`sqlalchemy.create_engine` (a pool class, for instance).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **options)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"timeout": busy_timeout} if busy_timeout is not None else {}
    engine = create_engine(url, connect_args=connect_args, **options)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers (exports, `scrapy runs`) work while a crawl writes;
        # NORMAL sync is durable in WAL mode except for the last commits on power loss.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # A checkpoint (two fsyncs) every 10,000 WAL pages (40 MB) instead of
        # SQLite's 1,000: a third of a batch's commit time went to them.
        cursor.execute(f"PRAGMA wal_autocheckpoint={_WAL_CHECKPOINT_PAGES}")
        # A page cache (16 MiB, SQLite's default is 2) that holds what a batch of
        # products dirties, so no page is spilled and written twice in a transaction.
        cursor.execute(f"PRAGMA cache_size=-{_PAGE_CACHE_KIB}")
        cursor.close()

    return engine
