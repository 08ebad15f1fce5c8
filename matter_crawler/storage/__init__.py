"""Storage: the SQLAlchemy schema, the crawl's database handle and the writes it makes."""

from .database import (
    DEFAULT_DATABASE_URL,
    Database,
    create_database_engine,
    resolve_database_url,
)
from .models import Base, CrawlLock, CrawlRun, DeadLetter, Product, ProductChange

__all__ = [
    "DEFAULT_DATABASE_URL",
    "Base",
    "CrawlLock",
    "CrawlRun",
    "Database",
    "DeadLetter",
    "Product",
    "ProductChange",
    "create_database_engine",
    "resolve_database_url",
]
