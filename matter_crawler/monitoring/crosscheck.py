"""The latest cross-check's numbers as Prometheus gauges.

A cross-check (``scrapy crosscheck``) is a short command, not a crawl, so its numbers
reach Prometheus two ways, both from the newest stored check (a ``crosscheck_runs``
row, :func:`matter_crawler.dcl.checks.latest_check`):

- every crawl's ``/metrics`` carries them (read when the spider opens, by the
  Prometheus exporter), with the crawl's ``spider`` and ``job`` labels;
- ``scrapy crosscheck`` pushes them to the Pushgateway after storing a check, when
  ``PROMETHEUS_PUSHGATEWAY_URL`` (or ``$MATTER_PUSHGATEWAY_URL``) is set, as the
  group ``job="crosscheck"``, ``spider="crosscheck"`` (each push replaces the last).

Several copies of one database's numbers may then be in Prometheus (a crawl's, the
push's), some older than others: ``matter_crawler_crosscheck_time_seconds`` tells the
newest, and the dashboard's panels keep only the series of the newest check.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import push_to_gateway
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .metrics import PREFIX, CrawlRegistry
from .push import Pushgateway

#: The labels of the command's push (its Pushgateway group).
PUSH_LABELS = {"spider": "crosscheck", "job": "crosscheck"}


class CrosscheckCollector(Collector):
    """Gauges of one stored check (``check``: a ``crosscheck_runs`` row; None: no samples)."""

    def __init__(self, labels: Mapping[str, str], check: Mapping[str, Any] | None = None) -> None:
        self.names = list(labels)
        self.values = list(labels.values())
        self.check = check

    def _gauge(self, name: str, documentation: str, extra: tuple[str, ...] = ()) -> Any:
        return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=[*self.names, *extra])

    def describe(self) -> list[Metric]:
        return list(self._families(None))

    def collect(self) -> Iterator[Metric]:
        if self.check is not None:
            yield from self._families(self.check)

    def _families(self, check: Mapping[str, Any] | None) -> Iterator[Metric]:
        findings = self._gauge(
            "crosscheck_findings",
            "The latest cross-check's findings, by class.",
            ("class",),
        )
        fields = self._gauge(
            "crosscheck_field_mismatches",
            "The latest cross-check's field_mismatch findings, by field.",
            ("field",),
        )
        products = self._gauge(
            "crosscheck_products", "Catalogue products the latest cross-check compared."
        )
        consistent = self._gauge(
            "crosscheck_consistent", "Products the latest cross-check found no disagreement on."
        )
        checked = self._gauge(
            "crosscheck_time_seconds", "When the latest cross-check ran, in Unix time."
        )
        if check is not None:
            values = self.values
            counts = check.get("counts") or {}
            for name, count in (counts.get("counts") or {}).items():
                findings.add_metric([*values, name], count)
            for name, count in (counts.get("field_counts") or {}).items():
                fields.add_metric([*values, name], count)
            products.add_metric(values, check["products"])
            consistent.add_metric(values, check["consistent"])
            checked_at = check["checked_at"]
            if isinstance(checked_at, datetime):
                checked.add_metric(values, checked_at.timestamp())
        yield from (findings, fields, products, consistent, checked)


def push_check(gateway: Pushgateway, check: Mapping[str, Any], timeout: float = 10.0) -> str | None:
    """Push a stored check's gauges (replacing the group's last push); the error, or None."""
    registry = CrawlRegistry()
    registry.register(CrosscheckCollector(PUSH_LABELS, check))
    try:
        push_to_gateway(
            gateway.url,
            job=PUSH_LABELS["job"],
            registry=registry,
            grouping_key={"spider": PUSH_LABELS["spider"]},
            timeout=timeout,
            handler=gateway.handler(),
        )
    except Exception as error:  # a push never fails the check: it is stored already
        return str(error) or type(error).__name__
    return None
