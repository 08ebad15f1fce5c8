"""``scrapy record-site``: record catalogue pages into betamax cassettes for offline tests.

(The module's name has a hyphen because Scrapy names a command after its module.)

Run once where csa-iot.org is reachable, it captures listing page 1, a sample
of middle listing pages, the last page, the page past the end (the site's 404)
and a sample of product pages, with python-requests recorded by betamax, into
``DIR``:

- ``robots.json``, ``listing.json``, ``detail.json``: one betamax cassette per
  kind of page (record mode ``new_episodes``). A page already in a cassette is
  replayed from it, never fetched again, so running the command again with
  larger samples only fetches the pages it adds;
- ``expectations.jsonl``: what the project's parsers read from every recorded
  page, one JSON line each: per listing page its card count and product paths,
  per product page the record a crawl must store, in the ground-truth format of
  :mod:`matter_crawler.verify` (paths, ISO dates). A human reviews it and
  commits it; lines already in the file are kept as reviewed (a parser that now
  reads a page differently is reported, and ``--rewrite-expectations``
  regenerates them).

Politely: robots.txt is obeyed (and its Crawl-delay), one request at a time
with ``--delay`` seconds between them, the project's ``USER_AGENT``, retries
of 429/5xx answers that honour ``Retry-After``. Nothing secret is recorded:
cookies (``Cookie``, ``Set-Cookie``), ``Authorization`` and similar headers,
the headers given with ``--header``, and token-like values in URLs and in
pages (``?_wpnonce=``, ``access_token=``, ``"nonce": "..."``) are removed or
replaced by ``REDACTED`` before betamax writes a cassette. Failed answers
(429, 5xx, 401/403) are never recorded. No page may be larger than
``--max-page-size`` (``RECORD_MAX_PAGE_SIZE``), neither as it comes over the
network nor decompressed: a bigger one (a decompression bomb, say) is refused,
read no further, and reported; so is a Content-Encoding other than the gzip asked for.

``python -m matter_crawler.sitesim --cassettes DIR`` serves a recording as a
site; ``tests/test_recordings.py`` runs every recorded page through the parsers.
See docs/recordings.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from ..items import ProductItem
from ..middlewares.retry import parse_retry_after
from ..parsing import build_product, page_number_from_url, parse_detail, parse_listing
from ..spiders.matter_products import LISTING_PATH
from ..verify import TRUTH_FIELDS
from ._database import CommandError

if TYPE_CHECKING:  # imported lazily: every `scrapy` command imports this module
    import requests
    from betamax import Betamax

CASSETTES = ("robots", "listing", "detail")
EXPECTATIONS_FILE = "expectations.jsonl"
REDACTED = "REDACTED"
#: betamax names of our serializer and request matcher
SERIALIZER = "matter-pretty-json"
MATCHER = "matter-redacted-uri"
#: save the cassette being recorded after this many new pages (an interrupted run keeps them)
SAVE_EVERY = 20
#: answers worth recording; anything else (429, 5xx, 401/403 challenges) is retried or reported
RECORDED_STATUSES = frozenset({*range(200, 400), 404, 410})
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 522, 524})
#: where product pages live (``/csa_product/<slug>/``)
PRODUCT_DETAIL_PREFIX = "/csa_product/"
#: Content-Encodings a page may come in (only gzip is asked for); anything else is refused
ACCEPTED_CODINGS = frozenset({"", "identity", "gzip", "x-gzip"})

# -- what must never be recorded ------------------------------------------------------

#: headers dropped from recorded requests and responses, whatever their value
SECRET_HEADERS = frozenset(
    {
        "cookie",
        "cookie2",
        "set-cookie",
        "set-cookie2",
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "proxy-authenticate",
        "x-api-key",
        "x-auth-token",
        "x-csrf-token",
        "x-xsrf-token",
        "x-wp-nonce",
        "cf-access-client-secret",
    }
)
#: query parameter and JSON key names whose values are secrets (also as a suffix: ``api_key``)
SECRET_NAMES = frozenset(
    {
        "token",
        "key",
        "apikey",
        "secret",
        "password",
        "passwd",
        "pwd",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "session",
        "sessionid",
        "sessid",
        "phpsessid",
        "sid",
        "nonce",
        "wpnonce",
        "signature",
        "sig",
        "jwt",
    }
)
_NAME_PARTS = re.compile(r"[_\-.\[\]]+")
_CAMEL_CASE = re.compile(r"([a-z0-9])([A-Z])")
_JWT = re.compile(r"^eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*$")
# long opaque values: 32+ characters of letters and digits both
_OPAQUE = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])[A-Za-z0-9_\-+/=.~%]{32,}$")
# name=value in a URL inside a page or a header (the name is checked afterwards)
_TEXT_QUERY_PAIR = re.compile(
    r"(?P<lead>[?&;]|&amp;)(?P<name>[A-Za-z0-9_.\-\[\]%]+)=(?P<value>[^&\"'\s<>#\\]+)"
)
# "name": "value" in JSON or a script (the name is checked afterwards)
_TEXT_JSON_PAIR = re.compile(
    r"(?P<quote>[\"'])(?P<name>[A-Za-z0-9_.\-]+)(?P=quote)(?P<sep>\s*:\s*)"
    r"(?P<vquote>[\"'])(?P<value>[^\"'\\]+)(?P=vquote)"
)


def is_secret_name(name: str) -> bool:
    """Whether a parameter or key named ``name`` holds a secret (``_wpnonce``, ``api_key``...).

    The name is split at ``_ - . [ ]`` and camelCase humps: its last part
    decides (``access_token``, ``restNonce`` yes, ``p_keywords`` no), or the
    whole name run together (``apikey``).
    """
    words = _CAMEL_CASE.sub(r"\1_\2", name)  # restNonce -> rest_Nonce
    parts = [part for part in _NAME_PARTS.split(words.lower()) if part]
    if not parts:
        return False
    return parts[-1] in SECRET_NAMES or "".join(parts) in SECRET_NAMES


def looks_like_token(value: str) -> bool:
    """A JSON web token, or a long opaque string of letters and digits."""
    return bool(_JWT.match(value) or _OPAQUE.match(value))


def redact_query(query: str) -> str:
    """The query with secret values replaced; every other byte left as it was."""
    if not query:
        return query
    pairs = []
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if (
            equals
            and value
            and (is_secret_name(unquote_plus(name)) or looks_like_token(unquote_plus(value)))
        ):
            value = REDACTED
        pairs.append(f"{name}{equals}{value}")
    return "&".join(pairs)


def redact_url(url: str) -> str:
    """``url`` without credentials: user:password@ and secret query/fragment values."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query, fragment = redact_query(parts.query), redact_query(parts.fragment)
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url  # untouched, byte for byte (urlunsplit would drop a bare "?")
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str) -> str:
    """A page or header with secret URL parameters and JSON values replaced."""

    def query_pair(match: re.Match[str]) -> str:
        if not is_secret_name(unquote_plus(match.group("name"))):
            return match.group(0)
        return f"{match.group('lead')}{match.group('name')}={REDACTED}"

    def json_pair(match: re.Match[str]) -> str:
        if not is_secret_name(match.group("name")):
            return match.group(0)
        quote, vquote = match.group("quote"), match.group("vquote")
        return f"{quote}{match.group('name')}{quote}{match.group('sep')}{vquote}{REDACTED}{vquote}"

    return _TEXT_JSON_PAIR.sub(json_pair, _TEXT_QUERY_PAIR.sub(query_pair, text))


def _header_values(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


class PageTooLarge(Exception):
    """A page over the size limit, or in an encoding that was not asked for: not recorded."""


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """A gzip body decompressed, but never past ``limit`` bytes (PageTooLarge instead).

    ``zlib.decompress`` would inflate a few kilobytes of a decompression bomb
    into gigabytes before anyone could look at the size.
    """
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        page = inflater.decompress(data, limit + 1)
    except zlib.error as error:
        raise PageTooLarge(f"a gzip body that does not decompress: {error}") from None
    if len(page) > limit or inflater.unconsumed_tail:
        raise PageTooLarge(f"over {limit:,} bytes decompressed (--max-page-size)")
    return page


def sanitize_interaction(
    data: dict[str, Any],
    private_headers: Iterable[str] = (),
    max_page_bytes: int | None = None,
) -> bool:
    """Make one betamax interaction safe to commit; False if it must not be recorded.

    Removes secret headers (and ``private_headers``, those the user added with
    ``--header``), redacts URLs and token-like values in the page, decodes a
    gzip body (so that cassettes can be reviewed and diffed as text) and sets
    Content-Length to the body actually stored. A body that decompresses to
    more than ``max_page_bytes`` raises :class:`PageTooLarge`.
    """
    dropped = SECRET_HEADERS | {name.lower() for name in private_headers}
    request, response = data["request"], data["response"]
    request["uri"] = redact_url(request["uri"])
    request["headers"] = {
        name: value for name, value in request["headers"].items() if name.lower() not in dropped
    }
    response["url"] = redact_url(response.get("url") or "")
    headers: dict[str, list[str]] = {}
    for name, recorded in response["headers"].items():
        lowered = name.lower()
        if lowered in dropped or lowered in ("content-length", "transfer-encoding"):
            continue
        values = _header_values(recorded)
        if lowered in ("location", "content-location"):
            values = [redact_url(value) for value in values]
        elif lowered in ("link", "refresh"):
            values = [redact_text(value) for value in values]
        headers[name] = values

    body = response["body"]
    encoding = body.get("encoding") or "utf-8"
    if "base64_string" in body:
        raw = base64.b64decode(body["base64_string"])
        codings = [
            value.strip().lower()
            for name, values in headers.items()
            if name.lower() == "content-encoding"
            for value in values
        ]
        if codings in (["gzip"], ["x-gzip"]):
            raw = gunzip_bounded(raw, max_page_bytes or MAX_STORED_PAGE_BYTES)
            headers = {k: v for k, v in headers.items() if k.lower() != "content-encoding"}
        try:
            text: str | None = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            text = None
        if text is None:  # not text: stored as it came (nothing to redact in it)
            body = {
                "encoding": body.get("encoding"),
                "base64_string": base64.b64encode(raw).decode(),
            }
            size = len(raw)
        else:
            body = {"encoding": encoding, "string": redact_text(text)}
            size = len(body["string"].encode(encoding, "replace"))
    else:
        body = {**body, "string": redact_text(body.get("string", ""))}
        size = len(body["string"].encode(encoding, "replace"))
    response["body"] = body
    headers["Content-Length"] = [str(size)]
    response["headers"] = headers
    return response["status"]["code"] in RECORDED_STATUSES


# -- betamax wiring (global registries: registered once per process) -----------------

_betamax_ready = False


def _before_record(interaction: Any, cassette: Any) -> None:
    """betamax's before_record hook: only acts on cassettes this command opened.

    A :class:`PageTooLarge` raised here ends the request (betamax records
    nothing): :meth:`SiteRecorder.fetch` reports it.
    """
    private = getattr(cassette, "matter_private_headers", None)
    if private is None:
        return
    limit = getattr(cassette, "matter_max_page_bytes", None)
    if not sanitize_interaction(interaction.data, private, limit):
        interaction.ignore()


def _betamax() -> type[Betamax]:
    """The Betamax class, with our serializer, matcher and hook registered."""
    global _betamax_ready  # noqa: PLW0603 - betamax's registries are process-wide
    from betamax import BaseMatcher, BaseSerializer, Betamax  # noqa: PLC0415

    if _betamax_ready:
        return Betamax

    class PrettyJSONSerializer(BaseSerializer):
        """Indented, key-sorted UTF-8 JSON: reviewable, and diffs show only new episodes."""

        name = SERIALIZER
        stored_as_binary = True  # we encode UTF-8 ourselves, whatever the locale

        @staticmethod
        def generate_cassette_name(cassette_library_dir: str, cassette_name: str) -> str:
            return str(Path(cassette_library_dir) / f"{cassette_name}.json")

        def serialize(self, cassette_data: dict[str, Any]) -> bytes:
            text = json.dumps(cassette_data, indent=2, sort_keys=True, ensure_ascii=False)
            return (text + "\n").encode("utf-8")

        def deserialize(self, cassette_data: bytes) -> dict[str, Any]:
            if not cassette_data.strip():
                return {}  # a new cassette
            # unlike betamax's own serializer, a damaged cassette is an error, not a fresh start
            return json.loads(cassette_data)

    class RedactedUriMatcher(BaseMatcher):
        """Match a request with a recording of its URL as it was recorded (redacted)."""

        name = MATCHER

        def match(self, request: Any, recorded_request: dict[str, Any]) -> bool:
            return redact_url(request.url) == recorded_request["uri"]

    Betamax.register_serializer(PrettyJSONSerializer)
    Betamax.register_request_matcher(RedactedUriMatcher)
    Betamax.configure().before_record(callback=_before_record)
    _betamax_ready = True
    return Betamax


# -- reading a recording -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedPage:
    """One recorded answer of a cassette."""

    cassette: Path
    uri: str  # absolute, as recorded (redacted)
    status: int
    body: bytes
    encoding: str

    @property
    def path(self) -> str:
        """Path and query: the page's name, whatever host it was recorded from."""
        return url_path(self.uri) or "/"

    @property
    def kind(self) -> str:
        """``listing``, ``detail`` or ``other``."""
        path = urlsplit(self.uri).path
        if path.startswith(LISTING_PATH):
            return "listing"
        if path.startswith(PRODUCT_DETAIL_PREFIX):
            return "detail"
        return "other"


def url_path(url: str | None) -> str | None:
    """A URL's path and query (the form of ``url`` in ground-truth records)."""
    if not url:
        return url
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


#: Largest page read back from a cassette (a recording is reviewed, but it is still a file)
MAX_STORED_PAGE_BYTES = 64 * 1024 * 1024


def _cassette_body(response: dict[str, Any]) -> tuple[bytes, str]:
    body = response.get("body") or {}
    encoding = body.get("encoding") or "utf-8"
    if "base64_string" in body:
        data = base64.b64decode(body["base64_string"])
        coding = {
            value.lower()
            for name, values in response["headers"].items()
            if name.lower() == "content-encoding"
            for value in _header_values(values)
        }
        if coding & {"gzip", "x-gzip"}:
            try:
                data = gunzip_bounded(data, MAX_STORED_PAGE_BYTES)
            except PageTooLarge as error:
                raise CommandError(f"a page of {response.get('url')}: {error}") from None
        return data, encoding
    return str(body.get("string", "")).encode(encoding, "replace"), encoding


def cassette_files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.glob("*.json") if path.stat().st_size)


def recorded_pages(directory: Path) -> list[RecordedPage]:
    """Every GET answer recorded in the cassettes of ``directory`` (a later duplicate wins)."""
    pages: dict[str, RecordedPage] = {}
    for path in cassette_files(directory):
        try:
            data = json.loads(path.read_bytes())
        except ValueError as error:
            raise CommandError(f"{path} is not a readable cassette: {error}") from None
        if not isinstance(data, dict):
            continue
        for interaction in data.get("http_interactions", []):
            request, response = interaction["request"], interaction["response"]
            if request.get("method", "GET").upper() != "GET":
                continue
            body, encoding = _cassette_body(response)
            page = RecordedPage(path, request["uri"], response["status"]["code"], body, encoding)
            pages[page.uri] = page
    return list(pages.values())


# -- expectations ----------------------------------------------------------------------


def product_record(item: ProductItem) -> dict[str, Any]:
    """A parsed product as a ground-truth record (verify.TRUTH_FIELDS, paths for URLs)."""
    record: dict[str, Any] = {name: getattr(item, name) for name in TRUTH_FIELDS}
    record["url"] = url_path(item.url)
    record["compliance_document_url"] = url_path(item.compliance_document_url)
    record["transport_interface"] = list(item.transport_interface)
    record["application_categories"] = list(item.application_categories)
    record["extra_fields"] = dict(item.extra_fields)
    return record


def listing_expectation(page: RecordedPage) -> dict[str, Any]:
    """What a listing page shows: its page number, status, card count and product paths."""
    number = page_number_from_url(page.uri) or 1
    if page.status != 200:
        return {"kind": "listing", "url": page.path, "page": number, "status": page.status,
                "cards": 0, "last_page": None, "products": []}  # fmt: skip
    listing = parse_listing(page.body, page.uri, page.encoding)
    return {
        "kind": "listing",
        "url": page.path,
        "page": number,
        "status": page.status,
        "cards": len(listing.cards),
        "last_page": listing.last_page,
        "products": [url_path(card.url) for card in listing.cards],
    }


def parsed_product(page: RecordedPage) -> ProductItem:
    return build_product(parse_detail(page.body, page.uri, page.encoding), page.uri)


def product_expectation(page: RecordedPage) -> dict[str, Any] | None:
    """The record a crawl stores for a product page (None unless it answered 200)."""
    if page.status != 200:
        return None
    return {"kind": "product", **product_record(parsed_product(page))}


def expectations_of(pages: Iterable[RecordedPage]) -> list[dict[str, Any]]:
    """Listing lines by page number, then products in listing order, then the rest by path."""
    listings, products = [], {}
    for page in pages:
        if page.kind == "listing":
            listings.append(listing_expectation(page))
        elif page.kind == "detail" and (line := product_expectation(page)) is not None:
            products[line["url"]] = line
    listings.sort(key=lambda line: (line["page"], line["url"]))
    order = {path: index for index, path in enumerate(p for ln in listings for p in ln["products"])}
    ordered = sorted(
        products.values(), key=lambda ln: (order.get(ln["url"], len(order)), ln["url"])
    )
    return listings + ordered


def read_expectations(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except ValueError as error:
                raise CommandError(f"{path}:{number}: not JSON: {error}") from None
    return lines


def merge_expectations(
    reviewed: list[dict[str, Any]], fresh: list[dict[str, Any]], *, rewrite: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """Fresh lines, keeping reviewed lines of pages already in the file unless ``rewrite``.

    Returns the lines and the pages whose reviewed line the parser no longer agrees with.
    """
    kept = {(line.get("kind"), line.get("url")): line for line in reviewed}
    merged, disagreements = [], []
    for line in fresh:
        old = kept.get((line["kind"], line["url"]))
        if old is None or rewrite:
            merged.append(line)
            continue
        merged.append(old)
        if old != line:
            disagreements.append(line["url"])
    return merged, disagreements


def write_jsonl(path: Path, lines: Iterable[dict[str, Any]]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    partial.replace(path)


# -- recording ---------------------------------------------------------------------------


@dataclass
class RecordOptions:
    directory: Path
    base_url: str
    listing_query: str
    user_agent: str
    listing_sample: int | None  # middle listing pages; None = all
    detail_sample: int | None  # product pages; None = all
    max_page_bytes: int  # RECORD_MAX_PAGE_SIZE, --max-page-size
    delay: float = 1.0
    timeout: float = 30.0
    attempts: int = 3
    seed: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    retry_after_max: float = 300.0
    rewrite_expectations: bool = False


@dataclass
class Fetched:
    url: str
    response: requests.Response | None = None
    replayed: bool = False
    error: str | None = None


@dataclass
class Phase:
    """One cassette being recorded: its session and how many pages it fetched."""

    name: str
    session: requests.Session
    recorder: Betamax
    fetched: int = 0


@dataclass
class RecordReport:
    fetched: Counter[str] = field(default_factory=Counter)
    replayed: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    disallowed: list[str] = field(default_factory=list)
    offsite: list[str] = field(default_factory=list)
    site_pages: int | None = None
    warnings: list[str] = field(default_factory=list)


def bounded_adapter(max_bytes: int) -> Any:
    """A requests transport adapter that reads at most ``max_bytes`` of any answer.

    It refuses (:class:`PageTooLarge`) an answer that announces more, that
    sends more, or that comes in a Content-Encoding other than gzip (the only
    one asked for), before betamax reads the body; the connection is closed
    and the rest of the body is never read.
    """
    import io  # noqa: PLC0415

    from requests.adapters import HTTPAdapter  # noqa: PLC0415
    from urllib3 import HTTPResponse  # noqa: PLC0415

    class BoundedAdapter(HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs["stream"] = True  # the body is read here, within the limit
            response = super().send(request, *args, **kwargs)
            raw = response.raw
            coding = (response.headers.get("Content-Encoding") or "").strip().lower()
            length = response.headers.get("Content-Length", "")
            problem = None
            if coding not in ACCEPTED_CODINGS:
                problem = f"Content-Encoding {coding!r}, which was not asked for"
            elif length.isdigit() and int(length) > max_bytes:
                problem = f"{int(length):,} bytes announced, over {max_bytes:,} (--max-page-size)"
            else:
                body = raw.read(max_bytes + 1, decode_content=False)
                if len(body) > max_bytes:
                    problem = f"over {max_bytes:,} bytes sent (--max-page-size)"
            if problem is not None:
                response.close()
                raise PageTooLarge(problem)
            response.raw = HTTPResponse(
                body=io.BytesIO(body),
                headers=raw.headers,
                status=raw.status,
                reason=raw.reason,
                preload_content=False,
                decode_content=False,
                request_url=response.url,
            )
            raw.release_conn()
            return response

    return BoundedAdapter()


class SiteRecorder:
    """Records a sample of the catalogue's pages (see the module docstring)."""

    def __init__(self, options: RecordOptions, log: Any = None) -> None:
        self.options = options
        self.directory = options.directory
        self.base_url = options.base_url.rstrip("/")
        self.site_host = urlsplit(self.base_url).hostname or ""
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.report = RecordReport()
        self.robots: Any = None  # protego parser; None = everything allowed
        self.delay = options.delay
        self._last_request_at = float("-inf")  # monotonic time of the last network request
        self._not_before = 0.0  # a retry's wait (Retry-After, backoff)
        self.recorded: dict[str, set[str]] = {name: set() for name in CASSETTES}
        self.rng = random.Random(options.seed)

    # -- URLs ------------------------------------------------------------------------

    def listing_url(self, page: int) -> str:
        """As the spider builds it: LISTING_PATH, ``page/N/``, then CSA_LISTING_QUERY."""
        path = LISTING_PATH if page == 1 else f"{LISTING_PATH}page/{page}/"
        query = f"?{self.options.listing_query}" if self.options.listing_query else ""
        return f"{self.base_url}{path}{query}"

    # -- network ----------------------------------------------------------------------

    def _session(self) -> requests.Session:
        import requests  # noqa: PLC0415

        session = requests.Session()
        session.headers.update(
            {
                "User-Agent": self.options.user_agent,
                "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                "Accept-Language": "en",
                # gzip only: betamax keeps gzip bodies intact (we decode them), mangles deflate
                "Accept-Encoding": "gzip",
            }
        )
        session.headers.update(self.options.headers)
        # like the crawler (COOKIES_ENABLED = False): the catalogue needs no session
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        # mounted before betamax wraps the session: it reads through this adapter
        bounded = bounded_adapter(self.options.max_page_bytes)
        session.mount("http://", bounded)
        session.mount("https://", bounded)
        return session

    @contextmanager
    def phase(self, name: str, session: requests.Session) -> Iterator[Phase]:
        """Record into the cassette ``DIR/<name>.json``; saved on the way out, whatever happens."""
        betamax = _betamax()
        recorder = betamax(session, cassette_library_dir=str(self.directory))
        placeholders = [
            {"placeholder": f"<{REDACTED} {header}>", "replace": value}
            for header, value in self.options.headers.items()
            if len(value) >= 6  # short values would replace innocent text
        ]
        recorder.use_cassette(
            name,
            record="new_episodes",
            serialize_with=SERIALIZER,
            match_requests_on=["method", MATCHER],
            allow_playback_repeats=True,
            placeholders=placeholders,
        )
        cassette = recorder.current_cassette
        cassette.matter_private_headers = frozenset(self.options.headers)
        cassette.matter_max_page_bytes = self.options.max_page_bytes
        self.recorded[name] = {i.data["request"]["uri"] for i in cassette.interactions}
        recorder.start()
        try:
            yield Phase(name, session, recorder)
        finally:
            recorder.stop()

    def _wait_turn(self) -> None:
        """Sleep until ``delay`` after the last request (and any retry wait) has passed.

        Computed at each request, so a Crawl-delay learned from robots.txt
        already spaces the request that follows robots.txt.
        """
        remaining = max(self._last_request_at + self.delay, self._not_before) - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)

    def _retry_wait(self, response: requests.Response | None, attempt: int) -> float:
        backoff = min(2 ** (attempt - 1) * max(self.delay, 1.0), 60.0)
        header = response.headers.get("Retry-After") if response is not None else None
        # read as the crawl reads it: `²` is a digit to str.isdigit(), not to float()
        wait = parse_retry_after(header, time.time())
        if wait is None:
            return backoff
        return min(wait, self.options.retry_after_max)

    def fetch(self, phase: Phase, url: str) -> Fetched:
        """GET ``url`` through the cassette: replayed if recorded, else fetched politely."""
        import requests  # noqa: PLC0415

        if self.robots is not None and not self.robots.can_fetch(url, self.options.user_agent):
            self.report.disallowed.append(url)
            self.log(f"  skip {url}: disallowed by robots.txt")
            return Fetched(url, error="disallowed by robots.txt")
        key = redact_url(url)
        if key in self.recorded[phase.name]:
            response = phase.session.get(url, allow_redirects=False, timeout=self.options.timeout)
            self.report.replayed[phase.name] += 1
            return Fetched(url, response, replayed=True)
        error = "not tried"
        for attempt in range(1, self.options.attempts + 1):
            self._wait_turn()
            response = None
            try:
                response = phase.session.get(
                    url, allow_redirects=False, timeout=self.options.timeout
                )
            except PageTooLarge as failure:
                error = f"refused: {failure}"
                self._last_request_at = time.monotonic()
                break  # the same page again would be as large
            except requests.RequestException as failure:
                error = f"{type(failure).__name__}: {failure}"
            self._last_request_at = time.monotonic()
            if response is not None and response.status_code in RECORDED_STATUSES:
                self.recorded[phase.name].add(key)
                self.report.fetched[phase.name] += 1
                phase.fetched += 1
                self.log(f"  GET {url} -> {response.status_code} (recorded)")
                if phase.fetched % SAVE_EVERY == 0:
                    phase.recorder.current_cassette.eject()  # saves; recording goes on
                return Fetched(url, response)
            if response is not None:
                error = f"HTTP {response.status_code}"
                if response.status_code not in RETRY_STATUSES:
                    break
            if attempt < self.options.attempts:
                wait = self._retry_wait(response, attempt)
                self.log(f"  GET {url} -> {error}; again in {wait:.1f} s")
                self._not_before = time.monotonic() + wait
        self.report.failed.append(f"{url} ({error})")
        self.log(f"  GET {url} -> {error}: not recorded")
        return Fetched(url, error=error)

    # -- the run ----------------------------------------------------------------------

    def run(self) -> RecordReport:
        self.directory.mkdir(parents=True, exist_ok=True)
        session = self._session()
        try:
            with self.phase("robots", session) as phase:
                self._read_robots(phase)
            with self.phase("listing", session) as phase:
                cards = self._record_listing(phase)
            with self.phase("detail", session) as phase:
                self._record_details(phase, cards)
        finally:
            session.close()
        return self.report

    def _read_robots(self, phase: Phase) -> None:
        from protego import Protego  # noqa: PLC0415

        url = f"{self.base_url}/robots.txt"
        fetched = self.fetch(phase, url)
        response = fetched.response
        if response is None or response.status_code >= 500:
            # RFC 9309: an unreachable robots.txt means nothing may be crawled
            raise CommandError(f"{url} could not be read ({fetched.error}): recording nothing")
        if response.status_code != 200:
            self.log(f"  {url} answered {response.status_code}: no restrictions")
            return
        self.robots = Protego.parse(response.text)
        crawl_delay = self.robots.crawl_delay(self.options.user_agent)
        if crawl_delay and crawl_delay > self.delay:
            self.log(f"  robots.txt asks for {crawl_delay:g} s between requests: waiting that long")
            self.delay = float(crawl_delay)

    def _listing_page(self, phase: Phase, page: int) -> Any:
        fetched = self.fetch(phase, self.listing_url(page))
        response = fetched.response
        if response is None or response.status_code != 200:
            return None
        return parse_listing(response.content, fetched.url, response.encoding)

    def _record_listing(self, phase: Phase) -> list[str]:
        """Page 1, a sample of middle pages, the last page and the page past it."""
        first = self._listing_page(phase, 1)
        if first is None:
            raise CommandError(f"listing page 1 ({self.listing_url(1)}) could not be recorded")
        if not first.cards:
            self.report.warnings.append(
                f"listing page 1 shows no product cards (layout {first.layout!r}): "
                "has the markup changed?"
            )
        last = max(first.last_page or 1, 1)
        self.report.site_pages = last
        recorded_numbers = {page_number_from_url(uri) or 1 for uri in self.recorded["listing"]}
        middle = self._sample(list(range(2, last)), recorded_numbers, self.options.listing_sample)
        pages = [1, *middle, *([last] if last > 1 else [])]
        self.log(f"The listing has {last} pages; recording pages {_ranges(pages)} and {last + 1}")
        card_urls: list[str] = [card.url for card in first.cards]
        for number in pages[1:]:
            listing = self._listing_page(phase, number)
            if listing is None:
                continue
            card_urls += [card.url for card in listing.cards]
            if number < last and len(listing.cards) < 12:
                self.report.warnings.append(
                    f"listing page {number} shows {len(listing.cards)} cards"
                )
        probe = self.fetch(phase, self.listing_url(last + 1))
        if probe.response is not None and probe.response.status_code == 200:
            shown = parse_listing(probe.response.content, probe.url, probe.response.encoding)
            if shown.cards:
                self.report.warnings.append(
                    f"page {last + 1}, past the last page shown, has {len(shown.cards)} cards"
                )
        unique = list(dict.fromkeys(card_urls))
        onsite = [url for url in unique if urlsplit(url).hostname == self.site_host]
        self.report.offsite += [url for url in unique if url not in onsite]
        return onsite

    def _record_details(self, phase: Phase, card_urls: list[str]) -> None:
        recorded = {url for url in card_urls if redact_url(url) in self.recorded["detail"]}
        chosen = self._sample(card_urls, recorded, self.options.detail_sample)
        self.log(f"Recording {len(chosen)} of the {len(card_urls)} product pages listed")
        for url in chosen:
            self.fetch(phase, url)

    def _sample(self, candidates: list[Any], recorded: set[Any], size: int | None) -> list[Any]:
        """``size`` candidates (all if None): recorded ones first, then a seeded random pick.

        Recorded ones count towards the sample, so a second run with the same
        sizes fetches nothing and a larger one fetches only the difference.
        """
        if size is None:
            return list(candidates)
        chosen = [item for item in candidates if item in recorded][:size]
        rest = [item for item in candidates if item not in recorded]
        self.rng.shuffle(rest)
        chosen += rest[: max(size - len(chosen), 0)]
        position = {item: index for index, item in enumerate(candidates)}
        return sorted(chosen, key=position.__getitem__)

    # -- expectations -------------------------------------------------------------------

    def write_expectations(self) -> dict[str, Any]:
        """Regenerate ``expectations.jsonl`` from every page in the cassettes."""
        pages = recorded_pages(self.directory)
        fresh = expectations_of(pages)
        path = self.directory / EXPECTATIONS_FILE
        lines, disagreements = merge_expectations(
            read_expectations(path), fresh, rewrite=self.options.rewrite_expectations
        )
        write_jsonl(path, lines)
        products = [line for line in fresh if line["kind"] == "product"]
        unknown: Counter[str] = Counter(
            label for line in products for label in line["extra_fields"]
        )
        problems = []
        for page in pages:
            if page.kind == "detail" and page.status == 200:
                item = parsed_product(page)
                missing = [
                    n for n in ("manufacturer", "model", "certificate_id") if not getattr(item, n)
                ]
                reasons = item.problems + [f"{name} missing" for name in missing]
                if reasons:
                    problems.append(f"{page.path}: {'; '.join(reasons)}")
        return {
            "path": path,
            "listing": sum(1 for line in lines if line["kind"] == "listing"),
            "products": sum(1 for line in lines if line["kind"] == "product"),
            "unknown_labels": unknown,
            "problems": problems,
            "disagreements": disagreements,
        }


def _ranges(numbers: list[int]) -> str:
    """``1-3, 7, 9-10``."""
    parts, start, previous = [], None, None
    for number in sorted(numbers):
        if start is None:
            start = previous = number
        elif number == previous + 1:
            previous = number
        else:
            parts.append(f"{start}-{previous}" if previous != start else str(start))
            start = previous = number
    if start is not None:
        parts.append(f"{start}-{previous}" if previous != start else str(start))
    return ", ".join(parts)


def _sample_size(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {text!r}") from None
    if size < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {size}")
    return size


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if (
        not colon
        or not name.strip()
        or not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name.strip())
    ):
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


class Command(ScrapyCommand):
    requires_project = True
    #: plain requests, no Scrapy engine: no reactor, no crawl log
    requires_crawler_process = False
    command_name = "record-site"

    def syntax(self) -> str:
        return (
            "-o DIR [--listing-sample N|all] [--detail-sample N|all] [--delay S] "
            "[--seed N] [--header 'Name: value'] [--max-page-size BYTES] [--rewrite-expectations]"
        )

    def short_desc(self) -> str:
        return "Record catalogue pages into betamax cassettes for offline tests"

    def long_desc(self) -> str:
        return (
            "Record listing page 1, a sample of middle listing pages, the last page, the page "
            "past it and a sample of product pages of CSA_BASE_URL into betamax cassettes in "
            "DIR, politely (robots.txt, --delay, USER_AGENT), with cookies and credentials "
            "removed; pages already recorded are replayed, not fetched again. Writes "
            "DIR/expectations.jsonl (what the parsers read from every recorded page) for "
            "review. See docs/recordings.md."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.prog = f"scrapy {self.command_name}"
        assert self.settings is not None
        parser.add_argument("-o", "--output", metavar="DIR", help="directory of the recording")
        parser.add_argument(
            "--listing-sample",
            type=_sample_size,
            default=3,
            metavar="N",
            help="middle listing pages to record, or 'all' (3); page 1 and the last always",
        )
        parser.add_argument(
            "--detail-sample",
            type=_sample_size,
            default=12,
            metavar="N",
            help="product pages to record from the recorded listing pages, or 'all' (12)",
        )
        parser.add_argument(
            "--delay",
            type=float,
            default=1.0,
            metavar="S",
            help="seconds between requests (1.0; robots.txt's Crawl-delay if longer)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=self.settings.getfloat("DOWNLOAD_TIMEOUT", 30.0),
            metavar="S",
            help="seconds to wait for an answer (DOWNLOAD_TIMEOUT)",
        )
        parser.add_argument(
            "--attempts", type=int, default=3, metavar="N", help="tries per page (3)"
        )
        parser.add_argument(
            "--seed", type=int, default=1, metavar="N", help="seed of the samples (1)"
        )
        parser.add_argument(
            "--header",
            type=_header,
            action="append",
            default=[],
            metavar="'NAME: VALUE'",
            help="extra request header (e.g. a cookie a challenge page set); sent, never recorded",
        )
        parser.add_argument(
            "--max-page-size",
            type=int,
            default=self.settings.getint("RECORD_MAX_PAGE_SIZE"),
            metavar="BYTES",
            help="largest page recorded, as sent and decompressed; a larger one is refused "
            "(RECORD_MAX_PAGE_SIZE)",
        )
        parser.add_argument(
            "--rewrite-expectations",
            action="store_true",
            help="regenerate every line of expectations.jsonl, reviewed ones too",
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}", print_help=False)
        if not opts.output:
            raise UsageError("give the recording's directory: -o DIR", print_help=False)
        if opts.delay < 0 or opts.timeout <= 0 or opts.attempts < 1 or opts.max_page_size < 1:
            raise UsageError(
                "--delay must be >= 0, --timeout > 0, --attempts >= 1 and --max-page-size >= 1",
                print_help=False,
            )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        settings = self.settings
        options = RecordOptions(
            directory=Path(opts.output),
            base_url=settings.get("CSA_BASE_URL", "https://csa-iot.org"),
            listing_query=(settings.get("CSA_LISTING_QUERY") or "").lstrip("?"),
            user_agent=settings.get("USER_AGENT"),
            listing_sample=opts.listing_sample,
            detail_sample=opts.detail_sample,
            delay=opts.delay,
            timeout=opts.timeout,
            attempts=opts.attempts,
            seed=opts.seed,
            headers=dict(opts.header),
            retry_after_max=settings.getfloat("RETRY_AFTER_MAX", 300.0),
            rewrite_expectations=opts.rewrite_expectations,
            max_page_bytes=opts.max_page_size,
        )
        recorder = SiteRecorder(options)
        try:
            recorder.log(f"Recording {options.base_url} into {options.directory}")
            report = recorder.run()
            summary = recorder.write_expectations()
        except CommandError as error:
            self.fail(str(error))
            return
        except KeyboardInterrupt:
            self.fail("interrupted: the pages recorded so far are saved; run again to go on")
            return
        except OSError as error:
            self.fail(str(error))
            return
        print(render_summary(options, report, summary))
        if report.failed:
            self.exitcode = 1

    def fail(self, message: str) -> None:
        print(f"scrapy {self.command_name}: error: {message}", file=sys.stderr)
        self.exitcode = 1


def render_summary(options: RecordOptions, report: RecordReport, summary: dict[str, Any]) -> str:
    directory = options.directory
    lines = [
        f"Recorded {options.base_url} into {directory}/ "
        f"({', '.join(f'{name}.json' for name in CASSETTES)}):",
        f"  listing pages: {report.fetched['listing']} fetched, {report.replayed['listing']} "
        f"already recorded (the site shows {report.site_pages} pages)",
        f"  product pages: {report.fetched['detail']} fetched, {report.replayed['detail']} "
        "already recorded",
        f"  expectations: {summary['path']} ({summary['listing']} listing pages, "
        f"{summary['products']} products): review it, then commit the directory",
    ]
    if summary["unknown_labels"]:
        named = ", ".join(
            f"{label!r} ({count} pages)" for label, count in summary["unknown_labels"].most_common()
        )
        lines.append(f"  labels the parser does not know (kept in extra_fields): {named}")
    for title, items in (
        ("could not be recorded", report.failed),
        ("disallowed by robots.txt", report.disallowed),
        ("product links to other sites (not recorded)", report.offsite),
        ("pages the parser cannot read fully", summary["problems"]),
        ("warnings", report.warnings),
    ):
        if items:
            lines.append(f"  {title}: {len(items)}")
            lines += [f"    {item}" for item in items[:20]]
    if summary["disagreements"]:
        lines.append(
            f"  the parser now reads {len(summary['disagreements'])} recorded pages differently "
            "from the reviewed expectations (kept; --rewrite-expectations replaces them):"
        )
        lines += [f"    {url}" for url in summary["disagreements"][:20]]
    return "\n".join(lines)
