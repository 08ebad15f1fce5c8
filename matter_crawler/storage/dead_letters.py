"""The dead-letter queue: requests that failed for good, kept with their reason.

One row per URL: the URL the spider asked for, before any redirect
(:func:`matter_crawler.request_url.requested_url`), which is also the key of
the product it stands for. A URL that fails again updates its letter (and
reopens it if it had been resolved); a later success resolves it: a product
page once the batch holding its product is committed, a listing page once it
parses, whatever the run (see :mod:`matter_crawler.extensions.dead_letters`).
Pending letters are the unresolved ones, which ``-a replay_dead_letters=1``
fetches again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update

from .bounds import problems
from .models import DeadLetter

logger = logging.getLogger(__name__)

letters = DeadLetter.__table__


@dataclass(frozen=True, slots=True)
class Letter:
    """A request that failed for good."""

    url: str
    stage: str | None
    failure_class: str
    last_error: str
    attempts: int
    first_failed_at: datetime
    last_failed_at: datetime


#: One step of :func:`write_letters`: letters to add, or URLs whose letters are resolved.
LetterOperation = tuple[str, Sequence[Any]]  # ("add", [Letter...]) or ("resolve", [url...])


def add_letters(engine: Engine, batch: Sequence[Letter], run_id: int | None) -> None:
    """Store letters; a URL that already has one gets it updated and reopened."""
    if not batch:
        return
    with engine.begin() as conn:
        _add(conn, batch, run_id)


def write_letters(
    engine: Engine, operations: Sequence[LetterOperation], run_id: int | None, now: datetime
) -> int:
    """Add and resolve letters in the order they happened, in one transaction.

    The order matters for a URL that fails and succeeds in the same interval:
    the later outcome wins. Returns how many pending letters were resolved.
    """
    resolved = 0
    with engine.begin() as conn:
        for kind, values in operations:
            if kind == "add":
                _add(conn, values, run_id)
            elif kind == "resolve":
                resolved += _resolve(conn, values, run_id, now)
            else:
                raise ValueError(f"unknown dead-letter operation {kind!r}")
    return resolved


def _add(conn: Connection, batch: Sequence[Letter], run_id: int | None) -> None:
    latest: dict[str, Letter] = {}
    for given in batch:
        # a URL PostgreSQL cannot hold (over 1024 characters) is refused on SQLite too
        found = problems(letters, {"url": given.url})
        letter = shortened(given, "; ".join(found)) if found else given
        latest[letter.url] = letter
    if not latest:
        return
    existing = {
        row.url: row
        for row in conn.execute(
            select(letters.c.url, letters.c.first_failed_at).where(letters.c.url.in_(list(latest)))
        )
    }
    new = [_row(letter, run_id) for url, letter in latest.items() if url not in existing]
    known = [
        {
            **_row(letter, run_id),
            "_url": url,
            "first_failed_at": min(existing[url].first_failed_at, letter.first_failed_at),
        }
        for url, letter in latest.items()
        if url in existing
    ]
    if new:
        conn.execute(insert(letters), new)
    if known:
        names = [name for name in known[0] if name not in ("_url", "url")]
        conn.execute(
            update(letters)
            .where(letters.c.url == bindparam("_url"))
            .values({name: bindparam(f"v_{name}") for name in names}),
            [{"_url": row["_url"], **{f"v_{n}": row[n] for n in names}} for row in known],
        )


def shortened(letter: Letter, why: str) -> Letter:
    """A letter whose URL does not fit its column, kept under a shortened, unique key.

    The letter is not dropped (the page must end somewhere with its reason): its key
    is the URL's start plus a hash of the whole URL, and its error says so.
    """
    digest = hashlib.sha256(letter.url.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    key = f"{letter.url[:900]}#sha256-{digest}"
    logger.error("Dead letter kept under a shortened URL: %.200s: %s", letter.url, why)
    return replace(letter, url=key, last_error=f"URL shortened ({why}); {letter.last_error}")


def _row(letter: Letter, run_id: int | None) -> dict[str, Any]:
    return {
        "url": letter.url,
        "stage": letter.stage,
        "failure_class": letter.failure_class,
        "last_error": letter.last_error[:4000].replace("\x00", "\N{REPLACEMENT CHARACTER}"),
        "attempts": letter.attempts,
        "first_failed_at": letter.first_failed_at,
        "last_failed_at": letter.last_failed_at,
        "run_id": run_id,
        "resolved_at": None,
        "resolved_run_id": None,
    }


def resolve_letters(engine: Engine, urls: Sequence[str], run_id: int | None, now: datetime) -> int:
    """Resolve the pending letters of URLs that have now succeeded. Returns how many."""
    if not urls:
        return 0
    with engine.begin() as conn:
        return _resolve(conn, urls, run_id, now)


def _resolve(conn: Connection, urls: Sequence[str], run_id: int | None, now: datetime) -> int:
    if not urls:
        return 0
    statement = (
        update(letters)
        .where(letters.c.url == bindparam("_url"))
        .where(letters.c.resolved_at.is_(None))
        .values(resolved_at=now, resolved_run_id=run_id)
    )
    return conn.execute(statement, [{"_url": url} for url in dict.fromkeys(urls)]).rowcount or 0


def pending_letters(engine: Engine, limit: int | None = None) -> list[dict[str, Any]]:
    statement = (
        select(letters).where(letters.c.resolved_at.is_(None)).order_by(letters.c.last_failed_at)
    )
    if limit:
        statement = statement.limit(limit)
    with engine.connect() as conn:
        return [row._asdict() for row in conn.execute(statement)]


def pending_urls(engine: Engine) -> set[str]:
    """The URLs that have a pending letter."""
    with engine.connect() as conn:
        statement = select(letters.c.url).where(letters.c.resolved_at.is_(None))
        return set(conn.execute(statement).scalars())


def count_pending(engine: Engine) -> int:
    with engine.connect() as conn:
        statement = select(func.count()).select_from(letters).where(letters.c.resolved_at.is_(None))
        return int(conn.execute(statement).scalar() or 0)
