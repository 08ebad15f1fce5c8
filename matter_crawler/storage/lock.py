"""One writer per database: the crawl lock, a row in ``crawl_locks``.

A crawl takes the lock before it writes anything and holds it until its
database closes; a second crawl on the same database is refused at start (or
waits, ``DATABASE_LOCK=wait``), told which crawl holds it: run id, process id,
host, when it took the lock (see :mod:`matter_crawler.extensions.database_lock`).

The lock is a row (name ``writer``) holding the holder's identity, taken in one
transaction that no other crawl can interleave with: read the row; if it is
absent, or its holder is gone, write ours; else refuse. A holder is gone when

- it ran on this host and its process is no longer running (the process id
  and the process's start time, :mod:`matter_crawler.liveness`: a killed
  crawl's lock is taken over at once, even if its pid was reused), or
- it ran on another host (a network file system, a server database) and its
  heartbeat, which the holder refreshes every ``DATABASE_LOCK_HEARTBEAT``
  seconds, is older than ``DATABASE_LOCK_STALE_AFTER`` seconds.

Each holder has a random token: heartbeats and the release touch the row only
while it is still theirs, and a heartbeat that finds the row gone or another
holder's tells the crawl it lost the lock.

The backend seam is :class:`LockBackend`: how a database gives one transaction
the row exclusively. :class:`SQLiteBackend` starts the transaction with
``BEGIN IMMEDIATE`` (SQLite's write lock from the first statement, so two
crawls cannot both read "free"); :class:`RowLockBackend`, for server databases,
reads the row ``SELECT ... FOR UPDATE`` and relies on the primary key when two
crawls insert it at once. A PostgreSQL-only alternative is a session
``pg_advisory_lock`` held on a dedicated connection for the crawl's life (the
server frees it when the connection dies, so no staleness rule is needed), with
this row kept beside it only to name the holder; docs/integrity-storage.md
describes both. SQLite is what the tests cover.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..liveness import ProcessIdentity, is_running
from .models import CrawlLock

locks = CrawlLock.__table__

WRITER = "writer"
#: What a crawl's command line holds (scrapy crawl, python -m scrapy, scrapyd's runner).
CRAWL_PROGRAM = "scrapy"


@dataclass(frozen=True, slots=True)
class LockHolder:
    """A crawl holding (or asking for) the lock."""

    token: str
    process: ProcessIdentity
    run_id: int | None
    acquired_at: datetime
    heartbeat_at: datetime

    @classmethod
    def new(cls, process: ProcessIdentity, run_id: int | None, now: datetime) -> LockHolder:
        return cls(secrets.token_hex(16), process, run_id, now, now)

    def describe(self) -> str:
        run = f"crawl run {self.run_id}" if self.run_id is not None else "a crawl (no run id yet)"
        return (
            f"{run}, {self.process.describe()}, started "
            f"{self.acquired_at:%Y-%m-%d %H:%M:%S} UTC, last heartbeat "
            f"{self.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC"
        )


@dataclass(frozen=True, slots=True)
class Acquired:
    holder: LockHolder
    took_over: LockHolder | None = None  # a stale holder replaced
    why_stale: str | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    holder: LockHolder  # who holds it


def why_stale(holder: LockHolder, now: datetime, stale_after: float) -> str | None:
    """Why the holder no longer holds the lock in fact, or None if it may."""
    running = is_running(holder.process, program=CRAWL_PROGRAM)
    if running is True:
        return None
    if running is False:
        return f"its process ({holder.process.describe()}) is no longer running"
    age = (now - holder.heartbeat_at).total_seconds()
    if age > stale_after:
        return (
            f"it runs on another host and its last heartbeat is {age:.0f} s old "
            f"(DATABASE_LOCK_STALE_AFTER is {stale_after:.0f} s)"
        )
    return None


def _holder(row: object) -> LockHolder:
    return LockHolder(
        token=row.token,  # type: ignore[attr-defined]
        process=ProcessIdentity(row.pid, row.host, row.process_started),  # type: ignore[attr-defined]
        run_id=row.run_id,  # type: ignore[attr-defined]
        acquired_at=row.acquired_at,  # type: ignore[attr-defined]
        heartbeat_at=row.heartbeat_at,  # type: ignore[attr-defined]
    )


def _values(holder: LockHolder) -> dict[str, object]:
    return {
        "token": holder.token,
        "pid": holder.process.pid,
        "host": holder.process.host,
        "process_started": holder.process.started,
        "run_id": holder.run_id,
        "acquired_at": holder.acquired_at,
        "heartbeat_at": holder.heartbeat_at,
    }


class LockBackend:
    """The lock row's transactions; subclasses say how one transaction gets it exclusively."""

    def begin_exclusive(self, conn: Connection) -> None:
        """Start the transaction so that no other crawl reads or writes the row meanwhile."""
        raise NotImplementedError

    def try_acquire(
        self, engine: Engine, me: LockHolder, stale_after: float, now: datetime, name: str = WRITER
    ) -> Acquired | Refused:
        """Take the lock if it is free or its holder is gone; else say who holds it."""
        try:
            with engine.connect() as conn:
                self.begin_exclusive(conn)
                row = conn.execute(
                    select(locks).where(locks.c.name == name).with_for_update()
                ).first()
                if row is None:
                    conn.execute(insert(locks).values(name=name, **_values(me)))
                    conn.commit()
                    return Acquired(me)
                current = _holder(row)
                if current.token == me.token:
                    return Acquired(me)
                stale = why_stale(current, now, stale_after)
                if stale is None:
                    conn.rollback()
                    return Refused(current)
                conn.execute(update(locks).where(locks.c.name == name).values(**_values(me)))
                conn.commit()
                return Acquired(me, took_over=current, why_stale=stale)
        except IntegrityError:
            # another crawl inserted the row first (server databases): it holds the lock
            with engine.connect() as conn:
                row = conn.execute(select(locks).where(locks.c.name == name)).first()
            if row is None:
                raise
            return Refused(_holder(row))

    def heartbeat(
        self, engine: Engine, me: LockHolder, run_id: int | None, now: datetime, name: str = WRITER
    ) -> bool:
        """Refresh the holder's heartbeat (and run id). False if the lock is no longer ours."""
        with engine.begin() as conn:
            result = conn.execute(
                update(locks)
                .where(locks.c.name == name, locks.c.token == me.token)
                .values(heartbeat_at=now, run_id=run_id)
            )
            return (result.rowcount or 0) > 0

    def release(self, engine: Engine, me: LockHolder, name: str = WRITER) -> bool:
        """Give the lock back (if it is still ours). True if it was."""
        with engine.begin() as conn:
            result = conn.execute(
                delete(locks).where(locks.c.name == name, locks.c.token == me.token)
            )
            return (result.rowcount or 0) > 0

    def holder(self, engine: Engine, name: str = WRITER) -> LockHolder | None:
        """Who holds the lock now (a plain read)."""
        with engine.connect() as conn:
            row = conn.execute(select(locks).where(locks.c.name == name)).first()
        return _holder(row) if row is not None else None


class SQLiteBackend(LockBackend):
    """``BEGIN IMMEDIATE``: the database's write lock from the first statement on.

    Two crawls cannot both read a free row: the second waits for the first's
    commit (up to the busy timeout), then reads its row.
    """

    def begin_exclusive(self, conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class RowLockBackend(LockBackend):
    """Server databases: the row read ``FOR UPDATE``; a concurrent insert hits the key."""

    def begin_exclusive(self, conn: Connection) -> None:
        return None  # the transaction begins with the SELECT ... FOR UPDATE


def backend_for(engine: Engine) -> LockBackend:
    if engine.dialect.name == "sqlite":
        return SQLiteBackend()
    return RowLockBackend()
