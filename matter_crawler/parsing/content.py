"""Cheap checks that a 200 response really holds the page we asked for.

The classified-retry middleware calls the check on every successful response
(setting ``RETRY_CONTENT_CHECK``, by default :class:`ContentCheck`). It must cost
next to nothing next to parsing, so it looks at bytes, not at a tree: a
truncated body has no closing ``</html>``; a listing without a card container or
a product page without its field list is not the page we wanted; an empty shell
that only a script fills in is reported as such, so the retry can render it in a
browser. A marker counts only outside ``<script>`` elements: a shell often
carries the page's markup as a string inside its loader script (the simulated
site's does).

The work is linear in the page's size: one forward pass per marker that, when the
marker turns up inside a script element, jumps past that element's end (a few byte
searches each), and at most ``max_scripts`` script elements holding the marker are
stepped over per marker (``CONTENT_CHECK_MAX_SCRIPTS``). A real page holds the
marker in no script at all, or in one (a JavaScript shell's loader); a page with more
than the cap before any catalogue markup is reported as a content problem that says
so, rather than searched for seconds. Like the markers, ``<script`` is matched in
lower case (as WordPress writes it): lowering a whole page first would cost more than
the rest of the check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Request, Response

_LISTING_MARKERS = (b"post-feed", b"wp-block-crown-blocks-product-index")
_DETAIL_MARKERS = (b"entry-product-details", b"product-certificates-table")
_TAIL = 2048
_SCRIPT_START = b"<script"
_SCRIPT_END = b"</script"
#: The default of ``CONTENT_CHECK_MAX_SCRIPTS`` (settings.py holds the same number).
DEFAULT_MAX_SCRIPTS = 1000


@dataclass(frozen=True, slots=True)
class ContentProblem:
    """Why a 200 page is not usable. ``needs_javascript`` marks an empty shell."""

    reason: str
    needs_javascript: bool = False


class _TooManyScripts(Exception):
    """More script elements than the cap held the marker before any markup did."""


def _in_markup(body: bytes, marker: bytes, max_scripts: int) -> bool:
    """Whether ``marker`` occurs outside every ``<script>`` element of ``body``.

    For an occurrence, the nearest ``<script`` before it tells: no such tag, or one
    closed before the occurrence, and the marker is in the markup (the common case:
    two short searches). Otherwise the occurrence is inside that script element, and
    the search goes on after the element's end, never inside it again: the searches
    cover the page about once, however many times a script repeats the marker.
    Raises :class:`_TooManyScripts` after ``max_scripts`` such elements.
    """
    found = body.find(marker)
    scripts = 0
    while found != -1:
        start = body.rfind(_SCRIPT_START, 0, found)
        if start == -1 or body.find(_SCRIPT_END, start, found) != -1:
            return True  # no script element is open where the marker is
        scripts += 1
        if scripts > max_scripts:
            raise _TooManyScripts
        end = body.find(_SCRIPT_END, found)
        if end == -1:
            return False  # an unclosed script runs to the end of the page
        found = body.find(marker, end + len(_SCRIPT_END))
    return False


def page_problem(
    body: bytes, stage: str, max_scripts: int = DEFAULT_MAX_SCRIPTS
) -> ContentProblem | None:
    """Check a listing (``stage="list"``) or detail (``stage="detail"``) page body."""
    if not body.strip():
        return ContentProblem("empty body")
    if b"</html>" not in body[-_TAIL:].lower():
        return ContentProblem("truncated body: no closing </html>")
    markers = _LISTING_MARKERS if stage == "list" else _DETAIL_MARKERS
    try:
        if any(_in_markup(body, marker, max_scripts) for marker in markers):
            return None
        # Real pages carry scripts too: only a page with none of the catalogue's markup is a shell.
        has_catalogue_markup = any(
            _in_markup(body, m, max_scripts)
            for m in (*_LISTING_MARKERS, *_DETAIL_MARKERS, b"entry-title")
        )
    except _TooManyScripts:
        return ContentProblem(
            f"more than {max_scripts} <script> elements hold catalogue markers before any "
            f"{stage} markup (CONTENT_CHECK_MAX_SCRIPTS): not a catalogue page"
        )
    if not has_catalogue_markup and _SCRIPT_START in body.lower():
        return ContentProblem(
            f"empty shell: no {stage} markup, the page is built by JavaScript",
            needs_javascript=True,
        )
    return ContentProblem(f"no {stage} markup on the page")


def content_problem(request: Request, response: Response) -> ContentProblem | None:
    """A ``RETRY_CONTENT_CHECK`` function with the default cap: list and detail pages only."""
    return _check(request, response, DEFAULT_MAX_SCRIPTS)


class ContentCheck:
    """The default ``RETRY_CONTENT_CHECK``: :func:`page_problem` with the crawl's settings.

    Built by the retry middleware with ``from_crawler``; reads ``CONTENT_CHECK_MAX_SCRIPTS``.
    """

    def __init__(self, max_scripts: int) -> None:
        if max_scripts < 1:
            raise ValueError(f"CONTENT_CHECK_MAX_SCRIPTS must be at least 1, not {max_scripts}")
        self.max_scripts = max_scripts

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler.settings.getint("CONTENT_CHECK_MAX_SCRIPTS"))

    def __call__(self, request: Request, response: Response) -> ContentProblem | None:
        return _check(request, response, self.max_scripts)


def _check(request: Request, response: Response, max_scripts: int) -> ContentProblem | None:
    stage = request.meta.get("stage")
    if stage not in ("list", "detail") or response.status != 200:
        return None
    return page_problem(response.body, stage, max_scripts)
