"""A catalogue served from recordings: betamax cassettes and their expectations file.

``python -m sitesim --cassettes DIR`` serves the pages that
``scrapy record-site`` recorded into ``DIR`` (``*.json`` betamax cassettes),
so that tests and benchmarks can crawl real pages offline:

- a recorded page is answered with its recorded status, headers and body,
  every absolute link to the recorded site (``https://csa-iot.org/...``, also
  JSON-escaped, percent-encoded and protocol-relative) rewritten to the
  simulated site's own address, so a crawler never leaves it;
- a listing page is found by its page number whatever its query (like the
  generated site), a product page by its path; anything not recorded gets a
  recorded 404 page if the recording holds one, else the site's WordPress 404;
- the ground truth (``/__sim__/truth``) is the product records of
  ``DIR/expectations.jsonl``, which the record command derived from the
  recorded pages with the crawler's parser and a human reviewed. That file is
  the one place where the crawler's view enters the simulated site, and only
  as reviewed data: nothing here imports the crawler.

Only the standard library is used; the cassette format is betamax's JSON
(``http_interactions`` of ``request``/``response``/``recorded_at``).
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from .chrome import JS_ROOT, js_loader
from .render import LISTING_PATH

EXPECTATIONS_FILE = "expectations.jsonl"
_PAGE_PATH = re.compile(r"^/csa-iot_products/page/(\d+)/?$")
_DETAIL_PATH = re.compile(r"^/csa_product/([^/]+)/?$")
# Recorded headers a replay must not repeat: the server sets its own framing,
# bodies are served decoded, and no cookie ever leaves a recording.
_DROPPED_HEADERS = frozenset(
    {
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "date",
        "server",
        "set-cookie",
        "set-cookie2",
    }
)
# Headers holding URLs of the recorded site.
_URL_HEADERS = frozenset({"location", "content-location", "link", "refresh"})
_TEXT_TYPES = ("text/", "json", "javascript", "xml")
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)
# Rewritten pages kept per (page, base URL); base URLs are few (one unless on a wildcard).
_MAX_CACHED = 4096


class RecordingError(ValueError):
    """The directory holds no usable recording (message says why)."""


@dataclass(frozen=True, slots=True)
class RecordedPage:
    """One recorded answer, before its links are rewritten."""

    uri: str  # path and query, as recorded
    kind: str  # "list", "detail" or "other"
    key: str  # the page regardless of URL form: "list:3", "detail:<slug>", or the path
    status: int
    headers: tuple[tuple[str, str], ...]  # lower-case names, without _DROPPED_HEADERS
    body: bytes
    encoding: str
    is_text: bool


def page_kind(path: str) -> str:
    """``list``, ``detail`` or ``other``, by the URL scheme of the catalogue."""
    if path.startswith(LISTING_PATH):
        return "list"
    if _DETAIL_PATH.match(path):
        return "detail"
    return "other"


def listing_page_number(path: str, query: str) -> int | None:
    """The listing page a URL names (``/page/N/`` or ``paged=N``; page 1 otherwise)."""
    if match := _PAGE_PATH.match(path):
        return int(match.group(1))
    if path != LISTING_PATH:
        return None
    paged = parse_qs(query).get("paged", ["1"])[0]
    return int(paged) if paged.isdigit() else None


def _page_key(path: str, query: str) -> str:
    kind = page_kind(path)
    if kind == "list":
        number = listing_page_number(path, query)
        return f"list:{number}" if number is not None else path
    if kind == "detail":
        match = _DETAIL_PATH.match(path)
        assert match is not None
        return f"detail:{match.group(1)}"
    return path


def _header_list(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def _decoded_body(response: dict[str, Any]) -> tuple[bytes, str]:
    """The response body as sent by the site, content-decoded, and its text encoding."""
    body = response.get("body") or {}
    encoding = body.get("encoding") or "utf-8"
    if "base64_string" in body:
        data = base64.b64decode(body["base64_string"])
    else:
        data = str(body.get("string", "")).encode(encoding, "surrogateescape")
    headers = {name.lower(): _header_list(value) for name, value in response["headers"].items()}
    coding = ",".join(headers.get("content-encoding", [])).strip().lower()
    if coding in ("gzip", "x-gzip"):
        data = zlib.decompress(data, 16 + zlib.MAX_WBITS)
    elif coding == "deflate":
        try:
            data = zlib.decompress(data)
        except zlib.error:  # raw deflate, as some servers send it
            data = zlib.decompress(data, -zlib.MAX_WBITS)
    return data, encoding


def load_cassettes(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every interaction of every betamax cassette (``*.json``) in ``directory``."""
    for path in sorted(directory.glob("*.json")):
        if not path.stat().st_size:
            continue  # betamax creates a cassette's file empty before its first save
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise RecordingError(f"{path} is not JSON: {error}") from None
        if not isinstance(data, dict) or "http_interactions" not in data:
            continue  # not a cassette (a manifest, an editor's file...)
        for interaction in data["http_interactions"]:
            yield path, interaction


class Recording:
    """The recorded pages of a directory, indexed the way the site's URLs are routed."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise RecordingError(f"no directory {self.directory}")
        self.pages: dict[str, RecordedPage] = {}  # path?query -> page
        self.listing: dict[int, RecordedPage] = {}  # page number -> page
        self.by_path: dict[str, RecordedPage] = {}  # path -> page (product pages, others)
        self.origins: set[tuple[str, str]] = set()  # (scheme, netloc) of the recorded site
        for _path, interaction in load_cassettes(self.directory):
            self._add(interaction)
        if not self.pages:
            raise RecordingError(f"no betamax cassettes (*.json) with interactions in {directory}")
        self.not_found_page = self._recorded_not_found()
        self.truth = self._expectations()
        self._rewrite = self._rewriter()
        self._cache: dict[tuple[str, str], bytes] = {}

    # --- loading ------------------------------------------------------------

    def _add(self, interaction: dict[str, Any]) -> None:
        request, response = interaction["request"], interaction["response"]
        if request.get("method", "GET").upper() != "GET":
            return
        parts = urlsplit(request["uri"])
        self.origins.add((parts.scheme, parts.netloc.rpartition("@")[2]))
        body, encoding = _decoded_body(response)
        headers = tuple(
            (name.lower(), value)
            for name, values in response["headers"].items()
            if name.lower() not in _DROPPED_HEADERS
            for value in _header_list(values)
        )
        content_type = next((v for n, v in headers if n == "content-type"), "").lower()
        path, query = parts.path or "/", parts.query
        page = RecordedPage(
            uri=path + (f"?{query}" if query else ""),
            kind=page_kind(path),
            key=_page_key(path, query),
            status=int(response["status"]["code"]),
            headers=headers,
            body=body,
            encoding=encoding,
            is_text=not content_type or any(kind in content_type for kind in _TEXT_TYPES),
        )
        self.pages[page.uri] = page  # a later recording of the same URL wins
        number = listing_page_number(path, query) if page.kind == "list" else None
        if number is not None:
            self.listing[number] = page
        elif page.kind != "list":
            self.by_path[path] = page

    def _recorded_not_found(self) -> RecordedPage | None:
        """A recorded HTML 404 (the record command probes the page past the end)."""
        for page in self.pages.values():
            if page.status == 404 and page.is_text and page.body:
                return page
        return None

    def _expectations(self) -> list[dict[str, Any]]:
        """The product records of the reviewed expectations file (``kind`` removed)."""
        path = self.directory / EXPECTATIONS_FILE
        if not path.is_file():
            return []
        records = []
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except ValueError as error:
                    raise RecordingError(f"{path}:{number}: not JSON: {error}") from None
                if data.get("kind") == "product":
                    records.append({k: v for k, v in data.items() if k != "kind"})
        return records

    def truth_lines(self) -> Iterator[str]:
        for record in self.truth:
            yield json.dumps(record, ensure_ascii=False) + "\n"

    # --- finding ------------------------------------------------------------

    def find(self, path: str, query: str) -> RecordedPage | None:
        """The recorded page for a request, or None (the site answers 404)."""
        exact = self.pages.get(path + (f"?{query}" if query else ""))
        if exact is not None:
            return exact
        if page_kind(path) == "list":
            number = listing_page_number(path, query)
            return self.listing.get(number) if number is not None else None
        # product pages and others: the query does not name another page
        return self.by_path.get(path)

    # --- rewriting ----------------------------------------------------------

    def _rewriter(self) -> re.Pattern[str] | None:
        """One pattern matching a link to any recorded origin, in every spelling.

        ``https://host``, ``http://host``, ``https:\\/\\/host`` (JSON in
        scripts), ``https%3A%2F%2Fhost`` (a URL in a query) and ``//host``
        after a quote, ``=`` or ``(``. The host must end there: a recorded
        ``127.0.0.1:4123`` never matches inside ``127.0.0.1:41234``.
        """
        hosts = []
        for _scheme, netloc in sorted(self.origins):
            if not netloc:
                continue
            end = r"(?![A-Za-z0-9.\-])" + ("" if ":" in netloc else r"(?!:\d)")
            hosts.append(re.escape(netloc) + end)
        if not hosts:
            return None
        prefix = r"(?P<prefix>https?:(?://|\\/\\/)|https?%3A%2F%2F|(?<=[\"'(=])//)"
        return re.compile(f"{prefix}(?:{'|'.join(hosts)})", re.IGNORECASE)

    def rewrite_text(self, text: str, base: str) -> str:
        """``text`` with every link to the recorded site pointing at ``base`` instead."""
        if self._rewrite is None:
            return text
        netloc = urlsplit(base).netloc

        def replace(match: re.Match[str]) -> str:
            prefix = match.group("prefix").lower()
            if prefix == "//":
                return f"//{netloc}"
            if "%3a" in prefix:
                return quote(base, safe="")
            if "\\/" in prefix:
                return base.replace("/", "\\/")
            return base

        return self._rewrite.sub(replace, text)

    def body_for(self, page: RecordedPage, base: str) -> bytes:
        """The page's body with links rewritten to ``base`` (cached)."""
        if not page.is_text:
            return page.body
        key = (page.uri, base)
        cached = self._cache.get(key)
        if cached is None:
            text = page.body.decode(page.encoding, "surrogateescape")
            cached = self.rewrite_text(text, base).encode(page.encoding, "surrogateescape")
            if len(self._cache) < _MAX_CACHED:
                self._cache[key] = cached
        return cached

    def headers_for(self, page: RecordedPage, base: str) -> tuple[tuple[bytes, bytes], ...]:
        return tuple(
            (
                name.encode("latin-1"),
                (self.rewrite_text(value, base) if name in _URL_HEADERS else value).encode(
                    "latin-1", "replace"
                ),
            )
            for name, value in page.headers
        )


def js_only_shell(page: bytes, encoding: str) -> bytes:
    """The page as a JavaScript-only shell, like the generated site's ``--js-only-rate``.

    The body's content is replaced by an empty ``div#product-root`` and a
    script that inserts the original markup there 50 ms after load, so the
    plain HTML has no product data and the rendered DOM matches the page's.
    A page without a ``<body>`` is served unchanged.
    """
    text = page.decode(encoding, "surrogateescape")
    opening = _BODY_OPEN.search(text)
    closings = list(_BODY_CLOSE.finditer(text))
    if opening is None or not closings or closings[-1].start() < opening.end():
        return page
    closing = closings[-1]
    content = text[opening.end() : closing.start()]
    loader = f"{JS_ROOT}\n{js_loader(content)}"
    shell = text[: opening.end()] + "\n" + loader + text[closing.start() :]
    return shell.encode(encoding, "surrogateescape")
