"""One canonical form of a product page URL.

The same product can be linked with another query string, a fragment, with or
without its trailing slash, with the host in another case or with the other
scheme; each of those is one product and must be one row. The canonical form is
the site's own: the scheme and host of ``CSA_BASE_URL``, the path
``/csa_product/<slug>/`` with its trailing slash, no query, no fragment, and the
path escaped as Scrapy sends it (``w3lib.url.safe_url_string``, escapes in upper
case), so that the URL a request is made for, the ``known`` key, the stored row
and a dead letter are the same string. Pure functions.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import SplitResult, urlsplit

from w3lib.url import safe_url_string

#: Where the listing lives: page 1 here, page N at ``page/N/`` below it.
LISTING_PATH = "/csa-iot_products/"
#: A product page path: one non-empty segment after /csa_product/, trailing slashes optional.
_PRODUCT_PATH = re.compile(r"/csa_product/([^/]+)/*")
_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
# what a path segment may hold as it is (RFC 3986 pchar, plus % of an escape)
_UNSAFE_IN_PATH = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@%]")
# What browsers drop from a URL before reading it: leading/trailing C0 controls and
# spaces, and every tab and line break (WHATWG URL standard).
_EDGES = "".join(map(chr, range(0x21)))
_TABS_AND_BREAKS = re.compile(r"[\t\n\r]")
_DEFAULT_PORTS = (80, 443)
_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)")


class OffsiteURL(ValueError):
    """A well-formed URL on another host (or port) than the site's."""


@lru_cache(maxsize=16)
def _site(base_url: str) -> tuple[str, str, str, int | None]:
    """(scheme, netloc, hostname, explicit port) of ``CSA_BASE_URL``, lower case."""
    parts = urlsplit(base_url)
    hostname = (parts.hostname or "").rstrip(".")
    if parts.scheme not in ("http", "https") or not hostname:
        raise ValueError(f"CSA_BASE_URL {base_url!r} is not an http(s) URL with a host")
    return parts.scheme, parts.netloc.lower(), hostname, parts.port


def split_url(url: str) -> SplitResult:
    """``urlsplit`` that also checks the port, after dropping what browsers drop.

    Raises ValueError for a URL that cannot be read (``http://[x/``, a port that is
    not a number or is out of range).
    """
    cleaned = _TABS_AND_BREAKS.sub("", url.strip(_EDGES))
    parts = urlsplit(cleaned)
    parts.port  # noqa: B018 - reading it validates the port (ValueError)
    return parts


def check_port(url: str) -> None:
    """ValueError if an absolute URL's port is not a number in 0-65535.

    ``urljoin`` reads a malformed host (``http://[x/``) as an error, but not a port;
    this is the cheap check for the rest (a regular expression, no ``urlsplit``), for
    parsers that check every link of a page.
    """
    match = _AUTHORITY.match(url)
    if match is None:
        return
    hostport = match.group(1).rpartition("@")[2]
    colon = hostport.rfind(":")
    if colon <= hostport.rfind("]"):  # no port (an IPv6 address has colons inside [])
        return
    port = hostport[colon + 1 :]
    if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise ValueError(f"port {port[:20]!r} is not a number in 0-65535")


def listing_url(base_url: str, page: int, query: str = "") -> str:
    """Listing page ``page`` of the site at ``base_url``, with the listing's query string.

    ``base_url`` is ``CSA_BASE_URL`` without its trailing slash; ``query`` is
    ``CSA_LISTING_QUERY`` without its ``?``.
    """
    path = LISTING_PATH if page == 1 else f"{LISTING_PATH}page/{page}/"
    return f"{base_url}{path}?{query}" if query else f"{base_url}{path}"


def url_path(url: str | None) -> str | None:
    """A URL's path and query: how ground-truth records name a page, whatever its host."""
    if not url:
        return url
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def is_product_path(path: str) -> bool:
    """Whether a URL path is a product page's (``/csa_product/<slug>/``)."""
    match = _PRODUCT_PATH.fullmatch(path)
    return match is not None and match.group(1) not in (".", "..")


def canonical_product_url(url: str, base_url: str) -> str:
    """The canonical URL of the product page ``url`` links, on the site at ``base_url``.

    Raises :class:`OffsiteURL` for a link to another host or port, and ValueError
    for a URL that cannot be read or that is not a product page
    (``/csa_product/<slug>/``).
    """
    scheme, netloc, hostname, port = _site(base_url)
    parts = split_url(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{parts.scheme or 'no'} scheme: not a web page link")
    link_host = (parts.hostname or "").rstrip(".")
    if not link_host:
        raise ValueError("no host in the link")
    same_port = parts.port in (None, *_DEFAULT_PORTS) if port is None else parts.port == port
    if link_host != hostname or not same_port:
        raise OffsiteURL(f"the link points at {parts.netloc}, not at {netloc}")
    match = _PRODUCT_PATH.fullmatch(parts.path)
    if match is None or match.group(1) in (".", ".."):
        raise ValueError("not a product page path (/csa_product/<slug>/)")
    slug = match.group(1)
    if _UNSAFE_IN_PATH.search(slug):  # rare: spaces, controls, non-ASCII, brackets...
        slug = safe_url_string(slug)
    if "%" in slug:
        slug = _ESCAPE.sub(lambda m: m.group().upper(), slug)
    return f"{scheme}://{netloc}/csa_product/{slug}/"
