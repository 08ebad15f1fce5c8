"""The URL a request stands for: the one the spider asked for, before any redirect.

A product is stored under the canonical form of the URL the spider asked for
(:func:`~matter_crawler.parsing.canonical_product_url`), not under the URL a
redirect led to, and its dead letter is keyed by the URL asked for: a replay of
the letter asks for the same product again, stores the same row, and resolves
the letter (the dead-letter store matches the two by the canonical form). Every
component that writes a dead letter for a request (the retry middleware, the
spider's errbacks, the callback-error middleware, the dupefilter's drop of a
redirect) keys it with :func:`requested_url`."""

from __future__ import annotations

from scrapy import Request


def requested_url(request: Request) -> str:
    """The first URL of the request's redirect chain (its own URL if it was not redirected)."""
    chain = request.meta.get("redirect_urls")
    return chain[0] if chain else request.url
