"""One writer per database: the crawl lock.

A crawl takes the lock before it writes anything and holds it until its
database closes; a second crawl on the same database is refused at start (or
waits, ``DATABASE_LOCK=wait``), told which crawl holds it: run id, process id,
host, when it took the lock (see :mod:`matter_crawler.extensions.database_lock`).

Each database has its backend (:func:`backend_for`); both keep a row (name
``writer``) in ``crawl_locks`` that names the holder, written in the
transaction that takes the lock, so a refused crawl can say who holds it:

- **SQLite** (:class:`SQLiteBackend`): the row *is* the lock. One transaction
  that starts with ``BEGIN IMMEDIATE`` (SQLite's write lock from the first
  statement, so two crawls cannot both read "free") reads the row; if it is
  absent, or its holder is gone, writes ours; else refuses. A holder is gone
  when it ran on this host and its process is no longer running (the process
  id and the process's start time, :mod:`matter_crawler.core.liveness`: a killed
  crawl's lock is taken over at once, even if its pid was reused), or when it
  ran on another host (a network file system) and its heartbeat, which the
  holder refreshes every ``DATABASE_LOCK_HEARTBEAT`` seconds, is older than
  ``DATABASE_LOCK_STALE_AFTER`` seconds.
- **PostgreSQL** (:class:`PostgreSQLBackend`): the lock is the server's, a
  session-level advisory lock (``pg_try_advisory_lock``, :data:`WRITER_LOCK_KEY`)
  on a connection the crawl holds open for its whole life. The server releases
  it when that session ends, a killed crawl's too, on whatever host it ran: no
  staleness rule. The row only names the holder.

Each holder has a random token: heartbeats and the release touch the row only
while it is still theirs, and a heartbeat that finds the row another holder's
(or, on PostgreSQL, the lock's session gone) tells the crawl it lost the lock.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from ..core.liveness import ProcessIdentity, is_running
from .models import CrawlLock

locks = CrawlLock.__table__

WRITER = "writer"
#: DATABASE_LOCK: what a writer (a crawl, ``scrapy prune``) does when another holds the lock.
REFUSE = "refuse"
WAIT = "wait"
MODES = (REFUSE, WAIT)
#: What a crawl's command line holds (scrapy crawl, python -m scrapy, scrapyd's runner).
CRAWL_PROGRAM = "scrapy"
#: Key of PostgreSQL's advisory lock a crawl holds (b"matter\x00\x02"); the schema
#: upgrade's is another (:data:`~matter_crawler.storage.schema.UPGRADE_LOCK_KEY`).
WRITER_LOCK_KEY = 0x6D6174746572_0002


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


#: Why a PostgreSQL crawl's lock is gone (its session ended: the server released it).
SESSION_ENDED = "its database session ended, so the server released its lock"
#: What a refusal says when the lock is held but no row names its holder
#: (PostgreSQL: a session holding the key that is not a crawl of ours, e.g. by hand).
UNNAMED_HOLDER = "a session that left no record in crawl_locks"


@dataclass(frozen=True, slots=True)
class Acquired:
    holder: LockHolder
    took_over: LockHolder | None = None  # a stale holder replaced
    why_stale: str | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    holder: LockHolder | None  # who holds it (None: nobody says)

    def describe(self) -> str:
        return self.holder.describe() if self.holder is not None else UNNAMED_HOLDER


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


def _read(conn: Connection, name: str) -> LockHolder | None:
    row = conn.execute(select(locks).where(locks.c.name == name)).first()
    return _holder(row) if row is not None else None


def _record(conn: Connection, me: LockHolder, current: LockHolder | None, name: str) -> None:
    """Write our row (in the caller's transaction), over the previous holder's if any."""
    if current is None:
        conn.execute(insert(locks).values(name=name, **_values(me)))
    else:
        conn.execute(update(locks).where(locks.c.name == name).values(**_values(me)))


def _beat(
    conn: Connection, me: LockHolder, run_id: int | None, now: datetime, name: str
) -> str | None:
    """Refresh our row; if it is not ours any more, why (who holds it now)."""
    result = conn.execute(
        update(locks)
        .where(locks.c.name == name, locks.c.token == me.token)
        .values(heartbeat_at=now, run_id=run_id)
    )
    if (result.rowcount or 0) > 0:
        return None
    current = _read(conn, name)
    return "another crawl took it over: " + (
        current.describe() if current is not None else "nobody holds it now"
    )


def _forget(conn: Connection, me: LockHolder, name: str) -> bool:
    result = conn.execute(delete(locks).where(locks.c.name == name, locks.c.token == me.token))
    return (result.rowcount or 0) > 0


class LockBackend:
    """How a database gives one crawl the lock. Every call runs on the database's thread."""

    def try_acquire(
        self, engine: Engine, me: LockHolder, stale_after: float, now: datetime, name: str = WRITER
    ) -> Acquired | Refused:
        """Take the lock if it is free or its holder is gone; else say who holds it."""
        raise NotImplementedError

    def heartbeat(
        self, engine: Engine, me: LockHolder, run_id: int | None, now: datetime, name: str = WRITER
    ) -> str | None:
        """Refresh the holder's heartbeat (and run id); why the lock is no longer ours, if not."""
        raise NotImplementedError

    def release(self, engine: Engine, me: LockHolder, name: str = WRITER) -> bool:
        """Give the lock back (if it is still ours). True if it was."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of anything the backend holds open (the lock itself is released first)."""


class SQLiteBackend(LockBackend):
    """The row is the lock, taken in a transaction that starts ``BEGIN IMMEDIATE``.

    Two crawls cannot both read a free row: the second waits for the first's
    commit (up to the busy timeout), then reads its row.
    """

    def try_acquire(
        self, engine: Engine, me: LockHolder, stale_after: float, now: datetime, name: str = WRITER
    ) -> Acquired | Refused:
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            current = _read(conn, name)
            if current is not None and current.token == me.token:
                return Acquired(me)
            stale = why_stale(current, now, stale_after) if current is not None else None
            if current is not None and stale is None:
                conn.rollback()
                return Refused(current)
            _record(conn, me, current, name)
            conn.commit()
            return Acquired(me, took_over=current, why_stale=stale)

    def heartbeat(
        self, engine: Engine, me: LockHolder, run_id: int | None, now: datetime, name: str = WRITER
    ) -> str | None:
        with engine.begin() as conn:
            return _beat(conn, me, run_id, now, name)

    def release(self, engine: Engine, me: LockHolder, name: str = WRITER) -> bool:
        with engine.begin() as conn:
            return _forget(conn, me, name)


class PostgreSQLBackend(LockBackend):
    """A session-level advisory lock on a connection held open while the crawl runs.

    Taking it and writing the row happen in one transaction on that connection,
    which first locks the ``crawl_locks`` table (``EXCLUSIVE``: plain reads go on,
    another crawl's attempt waits for the commit), so a refused crawl reads the
    row of the crawl that holds the lock, not the one before it. The release
    deletes the row and unlocks the same way. The session's end releases the lock
    whatever the crawl did, so a row left by a killed crawl is simply replaced.
    """

    def __init__(self) -> None:
        self._session: Connection | None = None  # holds the advisory lock

    def _open(self, engine: Engine) -> Connection:
        if self._session is None:
            session = engine.connect()
            # out of the pool: closing it ends the session (and whatever lock it holds)
            session.detach()
            self._session = session
        return self._session

    def _exclusive(self, session: Connection) -> None:
        session.execute(text(f"LOCK TABLE {locks.name} IN EXCLUSIVE MODE"))

    def try_acquire(
        self, engine: Engine, me: LockHolder, stale_after: float, now: datetime, name: str = WRITER
    ) -> Acquired | Refused:
        session = self._open(engine)
        try:
            with session.begin():
                self._exclusive(session)
                took = session.execute(
                    select(func.pg_try_advisory_lock(WRITER_LOCK_KEY))
                ).scalar_one()
                current = _read(session, name)
                if took:
                    _record(session, me, current, name)
        except BaseException:
            self.close()
            raise
        if not took:
            self.close()  # a waiting crawl asks again on a new session
            return Refused(current)
        if current is None:
            return Acquired(me)
        return Acquired(me, took_over=current, why_stale=SESSION_ENDED)

    def heartbeat(
        self, engine: Engine, me: LockHolder, run_id: int | None, now: datetime, name: str = WRITER
    ) -> str | None:
        """On the lock's own session: if that is gone, so is the lock."""
        session = self._session
        if session is None:
            return SESSION_ENDED
        try:
            with session.begin():
                return _beat(session, me, run_id, now, name)
        except DBAPIError as error:
            if error.connection_invalidated or session.invalidated:
                self.close()
                return SESSION_ENDED
            raise

    def release(self, engine: Engine, me: LockHolder, name: str = WRITER) -> bool:
        session = self._session
        if session is None:
            return False
        try:
            with session.begin():
                self._exclusive(session)  # no one takes the lock before the row is gone
                ours = _forget(session, me, name)
                session.execute(select(func.pg_advisory_unlock(WRITER_LOCK_KEY)))
            return ours
        except DBAPIError as error:
            if error.connection_invalidated or session.invalidated:
                return False  # the session, and the lock with it, were gone already
            raise
        finally:
            self.close()

    def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            session.close()


def backend_for(engine: Engine) -> LockBackend:
    """The lock of the engine's database (SQLite and PostgreSQL, the two the tests run)."""
    if engine.dialect.name == "sqlite":
        return SQLiteBackend()
    if engine.dialect.name == "postgresql":
        return PostgreSQLBackend()
    raise ValueError(
        f"The one-writer lock works on SQLite and PostgreSQL, not {engine.dialect.name}"
    )
