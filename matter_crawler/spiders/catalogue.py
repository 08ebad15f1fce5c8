"""Where the catalogue's pages are, and how the spider asks for them.

Site facts the request builders share (docs/site-markup.md describes the pages):
the listing's path, its page URLs, and the priorities and statuses of the
spider's requests. No Scrapy here, so a command can build the same URLs.
"""

from __future__ import annotations

from ..planner import GONE_STATUSES, REDIRECT_STATUSES

LISTING_PATH = "/csa-iot_products/"
#: Detail pages before listing pages keeps the queue of product pages short.
DETAIL_PRIORITY = 10
LIST_PRIORITY = 0
#: Statuses a listing page past the end answers with (redirects are not followed).
PAST_END_STATUSES = (*REDIRECT_STATUSES, *GONE_STATUSES)


def listing_page_url(base_url: str, query: str, page: int) -> str:
    """Listing page ``page`` of the site at ``base_url``; ``query`` without its ``?``."""
    path = LISTING_PATH if page == 1 else f"{LISTING_PATH}page/{page}/"
    return f"{base_url}{path}{f'?{query}' if query else ''}"
