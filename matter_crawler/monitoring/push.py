"""Push a crawl's final metrics to a Prometheus Pushgateway.

For short jobs Prometheus may never scrape. The metrics are collected on the
reactor thread (collectors read the engine, which is not thread-safe), then
sent from a worker thread with ``push_to_gateway`` (HTTP PUT: the group's
previous metrics are replaced). The group is keyed by ``job`` and ``spider``,
the same values the metrics carry as labels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, push_to_gateway
from prometheus_client.core import Metric
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.threads import deferToThread

logger = logging.getLogger(__name__)


class _Collected:
    """Metrics already collected, in the shape ``generate_latest`` reads."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> list[Metric]:
        return self.families


async def push_metrics(
    gateway: str,
    registry: CollectorRegistry,
    labels: dict[str, str],
    timeout: float = 10.0,
) -> bool:
    """Push; True on success (a failure is logged, never raised: the crawl is done anyway)."""
    collected = _Collected(registry.collect())
    grouping = {name: value for name, value in labels.items() if name != "job"}
    try:
        await maybe_deferred_to_future(
            deferToThread(
                push_to_gateway,
                gateway,
                job=labels["job"],
                registry=collected,  # type: ignore[arg-type]
                grouping_key=grouping,
                timeout=timeout,
            )
        )
    except Exception as error:
        logger.warning("Pushing metrics to the Pushgateway %s failed: %s", gateway, error)
        return False
    logger.info("Pushed the final metrics to the Pushgateway %s", gateway)
    return True
