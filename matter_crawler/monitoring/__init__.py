"""Monitoring of a running crawl: Prometheus metrics, progress with an ETA, a live page.

The parts, one concern per module, wired into Scrapy by two extensions
(:mod:`matter_crawler.extensions.prometheus`, :mod:`matter_crawler.extensions.progress`):

- :mod:`.crawlstate`: reads the engine's live state (in flight, queued, slots, breakers, memory).
- :mod:`.eta`: smoothed rates and the ETA with its uncertainty band (pure arithmetic).
- :mod:`.progress`: the in-memory aggregator: per-stage counts, rates, ETA, CPU, bytes/s,
  queues, snapshots.
- :mod:`.bottleneck`: where the crawl is held back, a verdict from plain numbers (pure).
- :mod:`.usage`: CPU time, the reactor thread's CPU demand, rates over a window.
- :mod:`.tasks`: task ids from the downloader on, and exactly one end for each task.
- :mod:`.events`: the event hub: recent tasks, the JSON-lines events file, live subscribers.
- :mod:`.metrics`: the per-crawl Prometheus registry and its metrics.
- :mod:`.discovery`: the Prometheus file-based service-discovery file shared by jobs.
- :mod:`.push`: the push to a Pushgateway at close.
- :mod:`.server`: the crawl's one local HTTP server (``/metrics``, ``/status``, ``/events``, ``/``),
  made of :mod:`.resources` (plain answers, security headers), :mod:`.stream` (``/events``),
  :mod:`.connections` (connection limits) and :mod:`.hosts` (the Host-header check).
- :mod:`.terminal`: the progress log line and the terminal progress bar.

Everything per request is O(1) and allocation-light: gauges are read when
Prometheus scrapes, progress is computed once a second, and events are encoded
only while someone (an events file, a browser) listens.
"""
