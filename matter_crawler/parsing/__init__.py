"""Pure parsing of catalogue pages: HTML in, values out, no I/O."""

from .content import ContentProblem, content_problem, page_problem
from .detail import DetailPage, parse_detail
from .listing import ListingCard, ListingPage, page_number_from_url, parse_listing
from .normalize import build_product, label_key, parse_date, parse_id16

__all__ = [
    "ContentProblem",
    "DetailPage",
    "ListingCard",
    "ListingPage",
    "build_product",
    "content_problem",
    "label_key",
    "page_number_from_url",
    "page_problem",
    "parse_date",
    "parse_detail",
    "parse_id16",
    "parse_listing",
]
