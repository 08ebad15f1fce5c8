"""The URL a request stands for: the one the spider asked for, before any redirect.

A product is stored under the URL its listing card links (the spider's
request), not under the URL a redirect led to, and its dead letter must carry
the same key: a replay of the letter then asks for the same URL again, stores
the same row, and resolves the letter. Every component that writes a dead
letter for a request (the retry middleware, the spider's errbacks, the
callback-error middleware, the dupefilter's drop of a redirect) keys it with
:func:`requested_url`.
"""

from __future__ import annotations

from scrapy import Request


def requested_url(request: Request) -> str:
    """The first URL of the request's redirect chain (its own URL if it was not redirected)."""
    chain = request.meta.get("redirect_urls")
    return chain[0] if chain else request.url
