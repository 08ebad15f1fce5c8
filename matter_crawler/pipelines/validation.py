"""Validate product items and DCL records before they are stored.

An invalid item is never silently dropped: it is counted
(``validation/invalid`` and ``validation/invalid/<field>``), sent to the
dead-letter queue with its reasons (failure class ``invalid``), then dropped
(Scrapy logs the drop with the reasons). Checks: the required fields
(``VALIDATION_REQUIRED_FIELDS``), values the normaliser could not read, the
certificate id's shape (``VALIDATION_CERTIFICATE_PATTERN``, whose default bounds
its length too), and an upper bound on every field's length
(``VALIDATION_MAX_LENGTHS_BASE`` merged with ``VALIDATION_MAX_LENGTHS``, in
characters; for a list or a mapping, the length of its JSON text). A value over
its bound makes the item invalid: it is never cut to fit. At start the bounds are
checked against the ``products`` columns that have a size, so that every value
that passes fits its column on any database.

A DCL record (:class:`~matter_crawler.dcl.records.DclRecord`) is refused the same way
(the same stats, a letter of class ``invalid`` under its ``url`` at stage ``dcl``) when
its ``problems`` are not empty, its kind is unknown, a column of its kind is missing
(or None), or a value is not of its column's kind (:data:`VALUE_CHECKS`): a whole
number in the range of ``int32``, ``uint32`` or ``uint64`` (up to 2**63 - 1, what a
``BIGINT`` holds), a string, a bool, a list of objects for ``history``. Its lengths
are left to the store, which knows its columns' sizes
(:func:`~matter_crawler.storage.bounds.problems`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, Self
from urllib.parse import urlparse

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from sqlalchemy import String

from ..dcl.records import KINDS, DclRecord
from ..items import PRODUCT_FIELDS, ProductItem
from ..safe_text import quoted, shortened, terminal_safe
from ..signals import item_invalid, send_invalid_product
from ..storage.models import Product


def column_sizes() -> dict[str, int]:
    """The size of every ``products`` column that has one (``String(n)``)."""
    return {
        column.name: column.type.length
        for column in Product.__table__.columns
        if isinstance(column.type, String) and column.type.length
    }


def checked_max_lengths(bounds: Mapping[str, Any]) -> dict[str, int]:
    """The per-field bounds, checked: known fields, positive whole numbers (None: no
    bound), none larger than its column's size. ValueError says what is wrong."""
    sizes = column_sizes()
    checked: dict[str, int] = {}
    for name, bound in bounds.items():
        if name not in PRODUCT_FIELDS:
            raise ValueError(f"VALIDATION_MAX_LENGTHS: {name!r} is not a product field")
        if bound is None:
            continue
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
            raise ValueError(f"VALIDATION_MAX_LENGTHS[{name!r}] must be a whole number >= 1")
        if name in sizes and bound > sizes[name]:
            raise ValueError(
                f"VALIDATION_MAX_LENGTHS[{name!r}] = {bound} is larger than the "
                f"products.{name} column ({sizes[name]} characters)"
            )
        checked[name] = bound
    unbounded = sorted(name for name in sizes if name not in checked)
    if unbounded:
        raise ValueError(f"VALIDATION_MAX_LENGTHS must bound the sized columns {unbounded}")
    return checked


def value_length(value: Any) -> int:
    """A value's length for its bound: characters of text, JSON text of a list or mapping."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | dict):
        return len(json.dumps(value, ensure_ascii=False))
    return len(str(value))


def _surely_within(value: Any, bound: int) -> bool:
    """Whether a list or mapping of strings is within ``bound`` without writing its JSON:
    each character takes at most 6 in JSON (``\u001b``), each string 2 quotes and a
    separator, so a value whose ceiling fits needs no ``json.dumps`` (most of them)."""
    if isinstance(value, dict):
        texts = [*value.keys(), *(v for v in value.values() if v is not None)]
        count = 2 * len(value)
    else:
        texts, count = value, len(value)
    if not all(isinstance(text, str) for text in texts):
        return False
    return 2 + 6 * sum(map(len, texts)) + 8 * count <= bound


def _whole_number(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: type(value) is int and low <= value <= high


#: A DCL value kind (:mod:`matter_crawler.dcl.records`): what it must be, and the check.
VALUE_CHECKS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "int32": ("a whole number from -2**31 to 2**31 - 1", _whole_number(-(2**31), 2**31 - 1)),
    "uint32": ("a whole number from 0 to 2**32 - 1", _whole_number(0, 2**32 - 1)),
    # the column is a signed BIGINT: a larger uint64 would be refused by the database
    "uint64": ("a whole number from 0 to 2**63 - 1", _whole_number(0, 2**63 - 1)),
    "string": ("a string", lambda value: type(value) is str),
    "bool": ("a bool", lambda value: type(value) is bool),
    "list": ("a string", lambda value: type(value) is str),  # the status list's name
    "history": (
        "a list of objects",
        lambda value: type(value) is list and all(type(entry) is dict for entry in value),
    ),
}


def dcl_problems(record: DclRecord) -> list[str]:
    """Every reason a DCL record cannot be stored as it is (empty: it can)."""
    reasons = list(record.problems)
    if not record.url:
        reasons.append("url is missing")
    kind = KINDS.get(record.kind)
    if kind is None:
        reasons.append(f"kind {quoted(str(record.kind))} is not a DCL record kind")
        return reasons
    for _, column, value_kind in kind.fields:
        value = record.values.get(column)
        if value is None:
            reasons.append(f"{column} is missing")
            continue
        what, check = VALUE_CHECKS[value_kind]
        if not check(value):
            shown = quoted(value) if isinstance(value, str) else shortened(repr(value))
            reasons.append(f"{column} {shown} is not {what} ({value_kind})")
    return reasons


class ValidationPipeline:
    def __init__(
        self,
        crawler: Crawler,
        required: tuple[str, ...],
        certificate_pattern: str | None,
        max_lengths: Mapping[str, int] | None = None,
    ) -> None:
        self.crawler = crawler
        self.required = required
        self.certificate_pattern = re.compile(certificate_pattern) if certificate_pattern else None
        self.max_lengths = dict(max_lengths or {})

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        required = tuple(settings.getlist("VALIDATION_REQUIRED_FIELDS"))
        pattern = settings.get("VALIDATION_CERTIFICATE_PATTERN")
        bounds = settings.getwithbase("VALIDATION_MAX_LENGTHS")
        # without any bounds configured (a bare crawler), lengths are not checked
        max_lengths = checked_max_lengths(dict(bounds)) if bounds else {}
        return cls(crawler, required, pattern, max_lengths)

    def problems(self, item: Any) -> list[str]:
        """Every reason the product cannot be stored as it is (any item type
        :class:`~itemadapter.ItemAdapter` reads, with the product's fields)."""
        adapter = ItemAdapter(item)
        reasons = list(adapter.get("problems") or ())
        for name in self.required:
            if adapter.get(name) in (None, ""):
                reasons.append(f"{name} is missing")
        for name, bound in self.max_lengths.items():
            value = adapter.get(name)
            if value is None or (isinstance(value, list | dict) and _surely_within(value, bound)):
                continue
            if (length := value_length(value)) > bound:
                reasons.append(
                    f"{name} is {length:,} characters long, over its bound of {bound} "
                    "(VALIDATION_MAX_LENGTHS)"
                )
        url = adapter.get("url") or ""
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or "/csa_product/" not in parsed.path:
            reasons.append(f"url {quoted(url)} is not a product page URL")
        certificate = adapter.get("certificate_id")
        if (
            certificate
            and self.certificate_pattern
            and not self.certificate_pattern.match(certificate)
        ):
            reasons.append(
                f"certificate_id {quoted(certificate)} does not look like a CSA certificate id"
            )
        return reasons

    def process_item(self, item: Any) -> Any:
        if not isinstance(item, ProductItem):
            if isinstance(item, DclRecord) and (found := dcl_problems(item)):
                self.refuse(item, item.url, found, stage="dcl", what="DCL record")
            return item
        reasons = self.problems(item)
        if not reasons:
            return item
        self.refuse(item, ItemAdapter(item).get("url"), reasons, stage="detail", what="product")

    def refuse(
        self, item: Any, url: str | None, reasons: list[str], *, stage: str, what: str
    ) -> NoReturn:
        """Count an invalid item, dead-letter it with its reasons, and drop it."""
        stats = self.crawler.stats
        stats.inc_value("validation/invalid")
        for reason in reasons:
            stats.inc_value(f"validation/invalid/{reason.split(' ', 1)[0].rstrip(':')}")
        message = "; ".join(reasons)
        self.crawler.signals.send_catch_log(signal=item_invalid, item=item, reasons=reasons)
        send_invalid_product(self.crawler, url, message, stage=stage)
        raise DropItem(f"invalid {what} {url}: {terminal_safe(message)}")
