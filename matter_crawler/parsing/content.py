"""Cheap checks that a 200 response really holds the page we asked for.

The classified-retry middleware calls :func:`content_problem` on every
successful response (setting ``RETRY_CONTENT_CHECK``). It must cost next to
nothing next to parsing, so it looks at bytes, not at a tree: a truncated body
has no closing ``</html>``; a listing without a card container or a product page
without its field list is not the page we wanted; an empty shell that only a
script fills in is reported as such, so the retry can render it in a browser.
A marker counts only outside ``<script>`` elements: a shell often carries the
page's markup as a string inside its loader script (the simulated site's does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scrapy.http import Request, Response

_LISTING_MARKERS = (b"post-feed", b"wp-block-crown-blocks-product-index")
_DETAIL_MARKERS = (b"entry-product-details", b"product-certificates-table")
_TAIL = 2048


@dataclass(frozen=True, slots=True)
class ContentProblem:
    """Why a 200 page is not usable. ``needs_javascript`` marks an empty shell."""

    reason: str
    needs_javascript: bool = False


def _in_markup(body: bytes, marker: bytes) -> bool:
    """Whether ``marker`` occurs outside every ``<script>`` element (a few byte searches)."""
    position = body.find(marker)
    while position != -1:
        if body.rfind(b"<script", 0, position) <= body.rfind(b"</script", 0, position):
            return True
        position = body.find(marker, position + len(marker))
    return False


def page_problem(body: bytes, stage: str) -> ContentProblem | None:
    """Check a listing (``stage="list"``) or detail (``stage="detail"``) page body."""
    if not body.strip():
        return ContentProblem("empty body")
    if b"</html>" not in body[-_TAIL:].lower():
        return ContentProblem("truncated body: no closing </html>")
    markers = _LISTING_MARKERS if stage == "list" else _DETAIL_MARKERS
    if any(_in_markup(body, marker) for marker in markers):
        return None
    # Real pages carry scripts too: only a page with none of the catalogue's markup is a shell.
    has_catalogue_markup = any(
        _in_markup(body, m) for m in (*_LISTING_MARKERS, *_DETAIL_MARKERS, b"entry-title")
    )
    if not has_catalogue_markup and b"<script" in body.lower():
        return ContentProblem(
            f"empty shell: no {stage} markup, the page is built by JavaScript",
            needs_javascript=True,
        )
    return ContentProblem(f"no {stage} markup on the page")


def content_problem(request: Request, response: Response) -> ContentProblem | None:
    """The ``RETRY_CONTENT_CHECK`` for this crawler: only list and detail pages are checked."""
    stage = request.meta.get("stage")
    if stage not in ("list", "detail") or response.status != 200:
        return None
    return page_problem(response.body, stage)
