"""The Alembic environment of the crawl database: Alembic runs this file, nothing imports it.

:mod:`matter_crawler.storage.schema` configures Alembic in code (no alembic.ini) and
passes the connection to migrate in ``config.attributes["connection"]``, inside the
transaction that holds the database's write lock, so a whole upgrade commits or
rolls back as one (SQLite and PostgreSQL both run DDL in transactions).
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.types import TypeDecorator

from matter_crawler.storage.models import Base


def render_item(kind: str, item: Any, autogen_context: Any) -> str | bool:
    """Autogenerate writes a column of one of our TypeDecorators as its plain SQL type.

    A revision must not import the models: they change after it is written.
    """
    if kind == "type" and isinstance(item, TypeDecorator):
        return f"sa.{item.impl_instance!r}"
    return False


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run migrations through matter_crawler.storage.schema (or `scrapy db upgrade`), "
            "which passes the connection to migrate"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters a table by copying it: autogenerate writes batch operations,
        # which PostgreSQL runs as plain ALTER TABLE
        render_as_batch=True,
        render_item=render_item,
        # one transaction for the whole upgrade, SQLite included (Alembic assumes
        # SQLite cannot roll DDL back; it can)
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
