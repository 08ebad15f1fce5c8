"""Where the catalogue's pages are, and how the spider asks for them.

Site facts the request builders share (docs/site-markup.md describes the pages):
the listing's path and page URLs (from parsing/urls.py), and the priorities and statuses of the
spider's requests. No Scrapy here, so a command can build the same URLs.
"""

from __future__ import annotations

from ..parsing.urls import LISTING_PATH, listing_url
from ..planner import GONE_STATUSES, REDIRECT_STATUSES

__all__ = ["DETAIL_PRIORITY", "LISTING_PATH", "LIST_PRIORITY", "PAST_END_STATUSES", "listing_url"]

#: Detail pages before listing pages keeps the queue of product pages short.
DETAIL_PRIORITY = 10
LIST_PRIORITY = 0
#: Statuses a listing page past the end answers with (redirects are not followed).
PAST_END_STATUSES = (*REDIRECT_STATUSES, *GONE_STATUSES)
