"""Push a crawl's final metrics to a Prometheus Pushgateway.

For short jobs Prometheus may never scrape. The metrics are collected on the
reactor thread (collectors read the engine, which is not thread-safe), then
sent from a worker thread with ``push_to_gateway`` (HTTP PUT: the group's
previous metrics are replaced). The group is keyed by ``job`` and ``spider``,
the same values the metrics carry as labels.

The Pushgateway (:func:`pushgateway_from`) is ``PROMETHEUS_PUSHGATEWAY_URL``,
else ``$MATTER_PUSHGATEWAY_URL``. A Pushgateway behind basic auth takes its
user and password from the URL (``http://user:password@host:9091``) or from
``$MATTER_PUSHGATEWAY_USERNAME`` and ``$MATTER_PUSHGATEWAY_PASSWORD``; they are
sent as an ``Authorization`` header, never shown (the URL is logged without them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, push_to_gateway
from prometheus_client.core import Metric
from prometheus_client.exposition import basic_auth_handler, default_handler
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet.threads import deferToThread

logger = logging.getLogger(__name__)

URL_VARIABLE = "MATTER_PUSHGATEWAY_URL"
USERNAME_VARIABLE = "MATTER_PUSHGATEWAY_USERNAME"
PASSWORD_VARIABLE = "MATTER_PUSHGATEWAY_PASSWORD"


@dataclass(frozen=True)
class Pushgateway:
    """Where to push, and the basic-auth credentials if any (never in ``repr``)."""

    url: str  # without credentials: safe to show
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def handler(self) -> Any:
        """prometheus-client's request handler: basic auth when there are credentials."""
        if self.username is None and self.password is None:
            return default_handler

        def authenticated(url: str, method: str, timeout: float | None, headers: Any, data: bytes):
            return basic_auth_handler(
                url, method, timeout, headers, data, self.username, self.password
            )

        return authenticated


def pushgateway_from(
    setting: str | None, environ: Mapping[str, str] | None = None
) -> Pushgateway | None:
    """The Pushgateway of ``PROMETHEUS_PUSHGATEWAY_URL`` (else the environment's), or None."""
    environ = os.environ if environ is None else environ
    url = (setting or environ.get(URL_VARIABLE, "")).strip()
    if not url:
        return None
    parts = urlsplit(url)
    username = environ.get(USERNAME_VARIABLE) or None
    password = environ.get(PASSWORD_VARIABLE) or None
    if parts.username is not None or parts.password is not None:
        username = unquote(parts.username or "") or username
        password = unquote(parts.password or "") or password
        host = parts.netloc.rpartition("@")[2]
        url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return Pushgateway(url, username, password)


class _Collected:
    """Metrics already collected, in the shape ``generate_latest`` reads."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> list[Metric]:
        return self.families


async def push_metrics(
    gateway: Pushgateway,
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
                gateway.url,
                job=labels["job"],
                registry=collected,  # type: ignore[arg-type]
                grouping_key=grouping,
                timeout=timeout,
                handler=gateway.handler(),
            )
        )
    except Exception as error:
        logger.warning("Pushing metrics to the Pushgateway %s failed: %s", gateway.url, error)
        return False
    logger.info("Pushed the final metrics to the Pushgateway %s", gateway.url)
    return True
