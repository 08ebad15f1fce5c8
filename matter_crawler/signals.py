"""Signals matter-crawler components send, beside Scrapy's own.

Connect with ``crawler.signals.connect(handler, signal=...)`` like any Scrapy
signal; handlers receive the keyword arguments listed.
"""

#: A request is retried: ``request``, ``failure_class``, ``kind``, ``reason``, ``attempt``,
#: ``delay``, ``retry_after``. ``kind`` says what the failure was: ``response`` (an
#: answer: a status or a content problem), or for a download exception, by its type,
#: ``timeout``, ``connection`` (refused, reset, lost, DNS) or ``other``.
request_retrying = object()

#: A request failed for good and goes to the dead-letter queue: ``request`` (None
#: for an invalid item), ``url``, ``stage``, ``failure_class``, ``reason``,
#: ``attempts``, ``first_failed_at``; from the retry middleware also ``kind`` (as for
#: ``request_retrying``), so receivers must accept ``**kwargs``.
request_dead_lettered = object()

#: A replayed dead letter succeeded: ``url``.
dead_letter_resolved = object()

#: An item failed validation: ``item``, ``reasons`` (list of strings).
item_invalid = object()

#: A batch was written to the database: ``products``, ``sightings``, ``new``, ``changed``,
#: ``seconds``.
batch_stored = object()

#: A domain's circuit breaker changed state: ``domain``, ``old``, ``new``, ``reason``.
circuit_state_changed = object()

#: The spider checked a listing page's markup: ``stage``, ``url``, ``not_found`` (what the
#: parser did not find; empty when the page is fine). Product pages are judged by
#: validation instead (``item_scraped`` / ``item_invalid``).
markup_checked = object()
