"""Pure parsing of catalogue pages: HTML in, values out, no I/O.

A page the parsers refuse (libxml2 stopped at one of its limits, or an element
with more attributes than libxml2 reads in reasonable time) raises
:class:`PageParseError` with the reason; a bad card or value is reported in the
result (``ListingPage.bad_cards``, ``ProductItem.problems``), never raised.
"""

from ._html import MAX_ATTRIBUTES, MAX_DEPTH, PageParseError
from .content import ContentCheck, ContentProblem, content_problem, page_problem
from .detail import DetailPage, parse_detail
from .listing import BadCard, ListingCard, ListingPage, page_number_from_url, parse_listing
from .normalize import build_product, label_key, parse_date, parse_id16
from .urls import OffsiteURL, canonical_product_url

__all__ = [
    "MAX_ATTRIBUTES",
    "MAX_DEPTH",
    "BadCard",
    "ContentCheck",
    "ContentProblem",
    "DetailPage",
    "ListingCard",
    "ListingPage",
    "OffsiteURL",
    "PageParseError",
    "build_product",
    "canonical_product_url",
    "content_problem",
    "label_key",
    "page_number_from_url",
    "page_problem",
    "parse_date",
    "parse_detail",
    "parse_id16",
    "parse_listing",
]
