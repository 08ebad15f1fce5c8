"""Validate product items before they are stored.

An invalid item is never silently dropped: it is counted
(``validation/invalid`` and ``validation/invalid/<field>``), sent to the
dead-letter queue with its reasons (failure class ``invalid``), then dropped
(Scrapy logs the drop with the reasons). Checks: the required fields
(``VALIDATION_REQUIRED_FIELDS``), values the normaliser could not read, and the
certificate id's shape (``VALIDATION_CERTIFICATE_PATTERN``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import urlparse

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from ..items import ProductItem
from ..signals import item_invalid, request_dead_lettered

DEFAULT_REQUIRED_FIELDS = ("url", "manufacturer", "model", "certificate_id")
DEFAULT_CERTIFICATE_PATTERN = r"^CSA[0-9A-Z]{5,}-[0-9]{2}$"


class ValidationPipeline:
    def __init__(
        self, crawler: Crawler, required: tuple[str, ...], certificate_pattern: str | None
    ) -> None:
        self.crawler = crawler
        self.required = required
        self.certificate_pattern = re.compile(certificate_pattern) if certificate_pattern else None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        required = tuple(settings.getlist("VALIDATION_REQUIRED_FIELDS", DEFAULT_REQUIRED_FIELDS))
        pattern = settings.get("VALIDATION_CERTIFICATE_PATTERN", DEFAULT_CERTIFICATE_PATTERN)
        return cls(crawler, required, pattern)

    def problems(self, item: ProductItem) -> list[str]:
        """Every reason the item cannot be stored as it is."""
        reasons = list(item.problems)
        for name in self.required:
            if getattr(item, name, None) in (None, ""):
                reasons.append(f"{name} is missing")
        parsed = urlparse(item.url)
        if parsed.scheme not in ("http", "https") or "/csa_product/" not in parsed.path:
            reasons.append(f"url {item.url!r} is not a product page URL")
        certificate = item.certificate_id
        if (
            certificate
            and self.certificate_pattern
            and not self.certificate_pattern.match(certificate)
        ):
            reasons.append(
                f"certificate_id {certificate!r} does not look like a CSA certificate id"
            )
        return reasons

    def process_item(self, item: Any) -> Any:
        if not isinstance(item, ProductItem):
            return item
        reasons = self.problems(item)
        if not reasons:
            return item
        stats = self.crawler.stats
        stats.inc_value("validation/invalid")
        for reason in reasons:
            stats.inc_value(f"validation/invalid/{reason.split(' ', 1)[0].rstrip(':')}")
        message = "; ".join(reasons)
        signals = self.crawler.signals
        signals.send_catch_log(signal=item_invalid, item=item, reasons=reasons)
        signals.send_catch_log(
            signal=request_dead_lettered,
            request=None,
            url=item.url,
            stage="detail",
            failure_class="invalid",
            reason=message,
            attempts=1,
            first_failed_at=datetime.now(UTC),
        )
        raise DropItem(f"invalid product {item.url}: {message}")
