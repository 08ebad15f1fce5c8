"""The Atom 1.0 feed of the catalogue's recent changes (``scrapy feed``, ``FEED_ATOM_PATH``).

One entry per product, newest first, at most ``limit``:

- ``new``: a listed product first stored since ``since``; ``updated`` is when the
  crawler first saw it (``first_seen_at``);
- ``changed`` (with ``include``): a product with ``product_changes`` rows since
  ``since``; ``updated`` is its latest change, the content names the changed fields;
- ``delisted`` (with ``include``): a product delisted since ``since``; ``updated`` is
  ``delisted_at``.

A product with several of these is one entry, of its latest event (new, then
changed, then delisted, in time): an Atom entry is a product, and a feed reader that
saw it as new shows it updated. Its id is a tag URI (RFC 4151) made from the
canonical product URL, ``tag:csa-iot.org,2022:/csa_product/<slug>/``: the same in
every feed the crawler writes, whatever the port or scheme, so readers never show a
product twice. ``published`` is always the first sighting.

The XML is written by feedgen (through lxml, which escapes every value); catalogue
text first loses the characters XML cannot hold (:func:`~.text.xml_text`).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from feedgen.feed import FeedGenerator
from sqlalchemy import Connection, Engine, func, select

from ..storage.models import Product, ProductChange
from .text import xml_text

KINDS = ("new", "changed", "delisted")
#: The optional kinds of ``--include`` (new products are always in).
OPTIONAL_KINDS = ("changed", "delisted")
#: The date in every tag URI: the first Matter certifications (any fixed date would do;
#: it must never change, or every id would).
TAG_DATE = "2022"
FEED_TITLE = "Matter certified products: new certifications"
FEED_TITLES = {
    ("changed",): "Matter certified products: new and changed",
    ("delisted",): "Matter certified products: new and delisted",
    ("changed", "delisted"): "Matter certified products: new, changed and delisted",
}
GENERATOR = "matter-crawler"

products = Product.__table__
changes = ProductChange.__table__


@dataclass
class FeedEntry:
    """A product as one feed entry (plain values: what the renderer needs)."""

    kind: str
    id: int  # the product's row: the last tie-break of the order
    url: str
    updated: datetime
    published: datetime
    manufacturer: str | None
    model: str | None
    certificate_id: str | None
    vid: str | None
    pid: str | None
    device_type: str | None
    transport: list[str]
    specification_version: str | None
    certification_date: str | None
    changed_fields: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return " ".join(part for part in (self.manufacturer, self.model) if part) or self.url


def tag_uri(url: str, date: str = TAG_DATE) -> str:
    """``tag:host,date:path``: a stable id of the product at canonical URL ``url``."""
    parts = urlsplit(url)
    host = (parts.hostname or "localhost").lower()
    specific = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"tag:{host},{date}:{specific}"


def parse_include(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"changed,delisted"`` (or a list) -> the optional kinds; ValueError for another word."""
    if text is None:
        return ()
    words = text.split(",") if isinstance(text, str) else list(text)
    kinds = [word.strip().lower() for word in words if word.strip()]
    unknown = [kind for kind in kinds if kind not in OPTIONAL_KINDS]
    if unknown:
        raise ValueError(f"unknown kind {unknown[0]!r} in --include: use changed, delisted or both")
    return tuple(kind for kind in OPTIONAL_KINDS if kind in kinds)


_COLUMNS = (
    products.c.id,
    products.c.url,
    products.c.manufacturer,
    products.c.model,
    products.c.certificate_id,
    products.c.vid,
    products.c.pid,
    products.c.device_type,
    products.c.transport_interface,
    products.c.specification_version,
    products.c.certification_date,
    products.c.first_seen_at,
)


def _entry(kind: str, row: Any, updated: datetime, fields: Sequence[str] = ()) -> FeedEntry:
    date = row.certification_date
    return FeedEntry(
        kind=kind,
        id=row.id,
        url=row.url,
        updated=updated,
        published=row.first_seen_at,
        manufacturer=row.manufacturer,
        model=row.model,
        certificate_id=row.certificate_id,
        vid=row.vid,
        pid=row.pid,
        device_type=row.device_type,
        transport=list(row.transport_interface or []),
        specification_version=row.specification_version,
        certification_date=date.isoformat() if date is not None else None,
        changed_fields=list(fields),
    )


def feed_entries(
    conn: Connection, since: datetime, limit: int, include: Sequence[str] = ()
) -> list[FeedEntry]:
    """The feed's entries since ``since``, newest first, at most ``limit`` (one per product)."""
    found: dict[str, FeedEntry] = {}

    def keep(entry: FeedEntry) -> None:
        held = found.get(entry.url)
        if held is None or entry.updated > held.updated:
            found[entry.url] = entry

    new_rows = conn.execute(
        select(*_COLUMNS)
        .where(products.c.first_seen_at >= since, products.c.delisted_at.is_(None))
        # the order of the final sort, so that the limit cuts the same entries
        .order_by(
            products.c.first_seen_at.desc(),
            products.c.certification_date.desc().nulls_last(),
            products.c.id.desc(),
        )
        .limit(limit)
    )
    for row in new_rows:
        keep(_entry("new", row, row.first_seen_at))
    if "changed" in include:
        latest = (
            select(changes.c.product_url, func.max(changes.c.changed_at).label("at"))
            .where(changes.c.changed_at >= since)
            .group_by(changes.c.product_url)
            .order_by(func.max(changes.c.changed_at).desc())
            .limit(limit)
            .subquery()
        )
        rows = conn.execute(
            select(*_COLUMNS, latest.c.at).join(latest, latest.c.product_url == products.c.url)
        ).all()
        fields: dict[str, list[str]] = {}
        urls = [row.url for row in rows]
        for start in range(0, len(urls), 500):  # bounded IN lists
            for url, name in conn.execute(
                select(changes.c.product_url, changes.c.field)
                .where(changes.c.product_url.in_(urls[start : start + 500]))
                .where(changes.c.changed_at >= since)
                .order_by(changes.c.id)
            ):
                if name not in fields.setdefault(url, []):
                    fields[url].append(name)
        for row in rows:
            # changed_at comes through the subquery as a plain column: make it aware UTC
            at = row.at if isinstance(row.at, datetime) else datetime.fromisoformat(str(row.at))
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
            keep(_entry("changed", row, at, fields.get(row.url, [])))
    if "delisted" in include:
        for row in conn.execute(
            select(*_COLUMNS, products.c.delisted_at)
            .where(products.c.delisted_at >= since)
            .order_by(products.c.delisted_at.desc())
            .limit(limit)
        ):
            keep(_entry("delisted", row, row.delisted_at))
    # ties (a batch stored together): the newest certification, then the last stored
    ordered = sorted(
        found.values(),
        key=lambda entry: (entry.updated, entry.certification_date or "", entry.id),
        reverse=True,
    )
    return ordered[:limit]


def read_entries(
    engine: Engine, since: datetime, limit: int, include: Sequence[str] = ()
) -> list[FeedEntry]:
    with engine.connect() as conn:
        return feed_entries(conn, since, limit, include)


# -- rendering ------------------------------------------------------------------------------


def entry_content(entry: FeedEntry) -> str:
    """The entry's content: an HTML definition list, every value escaped."""
    kind_line = {
        "new": "New certification",
        "changed": "Changed: " + ", ".join(entry.changed_fields or ["(fields)"]),
        "delisted": "No longer listed in the catalogue",
    }[entry.kind]
    rows = [
        ("Certificate", entry.certificate_id),
        ("VID / PID", f"{entry.vid or '?'} / {entry.pid or '?'}"),
        ("Device type", entry.device_type),
        ("Transport", ", ".join(entry.transport)),
        ("Specification version", entry.specification_version),
        ("Certified on", entry.certification_date),
    ]
    items = "".join(
        f"<dt>{html.escape(label)}</dt><dd>{html.escape(xml_text(value) or '-')}</dd>"
        for label, value in rows
    )
    return f"<p>{html.escape(kind_line)}</p><dl>{items}</dl>"


def render_atom(
    entries: Sequence[FeedEntry],
    *,
    site_url: str,
    feed_url: str | None = None,
    now: datetime | None = None,
    include: Sequence[str] = (),
) -> bytes:
    """The Atom 1.0 document of ``entries`` (UTF-8 bytes).

    ``site_url`` is the catalogue's site (``CSA_BASE_URL``): the feed's id is a tag
    URI of its host, its ``alternate`` link the site. The feed's ``updated`` is its
    newest entry's, so an unchanged catalogue writes the same document; ``now``
    (default: the current time) only for an empty feed; ``include`` (the kinds beside
    new products) names the feed in its title.
    """
    generator = FeedGenerator()
    generator.id(tag_uri(site_url.rstrip("/") + "/matter-crawler/feed"))
    generator.title(FEED_TITLES.get(tuple(include), FEED_TITLE))
    generator.subtitle("Products the crawler found new in the Matter certified products catalogue")
    generator.author({"name": GENERATOR})
    generator.link(href=site_url, rel="alternate", type="text/html")
    if feed_url:
        generator.link(href=feed_url, rel="self", type="application/atom+xml")
    generator.generator(GENERATOR)
    generator.language("en")
    newest = max((entry.updated for entry in entries), default=None)
    generator.updated(newest or now or datetime.now(UTC))
    for entry in entries:
        item = generator.add_entry(order="append")
        item.id(tag_uri(entry.url))
        item.title(xml_text(entry.title))
        item.link(href=xml_text(entry.url), rel="alternate", type="text/html")
        item.updated(entry.updated)
        item.published(entry.published)
        item.category(term=entry.kind, label=entry.kind)
        if entry.manufacturer:
            item.author({"name": xml_text(entry.manufacturer)})
        item.content(entry_content(entry), type="html")
    return generator.atom_str(pretty=True, encoding="UTF-8")
