"""The cassettes of a recording: betamax's registration, and reading them back.

One betamax cassette per kind of page (``robots``, ``listing``, ``detail``),
``DIR/<name>.json``, written with our serializer (indented, key-sorted UTF-8
JSON: reviewable, and a diff shows only the new episodes) and matched on the
redacted URL. Every interaction passes :func:`~.redaction.sanitize_interaction`
before betamax records it; failed answers (429, 5xx, 401/403) are never recorded.
A recording is read back through betamax's own ``Cassette`` (record mode
``none``: nothing is written), each answer as the ``requests.Response`` betamax
replays.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from betamax import BaseMatcher, BaseSerializer, Betamax
from betamax.cassette import Cassette, Interaction

from ..parsing.urls import LISTING_PATH, is_product_path, url_path
from . import RecordingError
from .limits import MAX_STORED_PAGE_BYTES, PageTooLarge, gunzip_bounded
from .redaction import REDACTED, redact_url, sanitize_interaction

CASSETTES = ("robots", "listing", "detail")
#: betamax names of our serializer and request matcher
SERIALIZER = "matter-pretty-json"
MATCHER = "matter-redacted-uri"
#: answers worth recording; anything else (429, 5xx, 401/403 challenges) is retried or reported
RECORDED_STATUSES = frozenset({*range(200, 400), 404, 410})


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

    def match(self, request: requests.PreparedRequest, recorded_request: dict[str, Any]) -> bool:
        return redact_url(request.url) == recorded_request["uri"]


@dataclass(frozen=True, slots=True)
class _Recording:
    """What the hook needs to know of a cassette :func:`use_cassette` opened."""

    private_headers: frozenset[str]  # --header names: sent, never recorded
    max_page_bytes: int


# betamax's hooks are process-wide: they act on our cassettes only
_RECORDING: weakref.WeakKeyDictionary[Cassette, _Recording] = weakref.WeakKeyDictionary()


def _before_record(interaction: Interaction, cassette: Cassette) -> None:
    """betamax's before_record hook: only acts on cassettes :func:`use_cassette` opened.

    A :class:`~.limits.PageTooLarge` raised here ends the request (betamax
    records nothing): the recorder reports it.
    """
    recording = _RECORDING.get(cassette)
    if recording is None:
        return
    sanitize_interaction(interaction.data, recording.private_headers, recording.max_page_bytes)
    if interaction.data["response"]["status"]["code"] not in RECORDED_STATUSES:
        interaction.ignore()


_registered = False


def register() -> None:
    """Register our serializer, matcher and hook with betamax (its registries are global)."""
    global _registered  # noqa: PLW0603 - betamax's registries are process-wide
    if _registered:
        return
    Betamax.register_serializer(PrettyJSONSerializer)
    Betamax.register_request_matcher(RedactedUriMatcher)
    Betamax.configure().before_record(callback=_before_record)
    _registered = True


def use_cassette(
    session: requests.Session,
    directory: Path,
    name: str,
    private_headers: Mapping[str, str],
    max_page_bytes: int,
) -> Betamax:
    """A betamax recorder of ``session`` into ``DIR/<name>.json`` (not started).

    ``private_headers`` (``--header``) are sent, never recorded: dropped from the
    recorded request, and their values replaced by placeholders wherever else
    they appear.
    """
    register()
    recorder = Betamax(session, cassette_library_dir=str(directory))
    placeholders = [
        {"placeholder": f"<{REDACTED} {header}>", "replace": value}
        for header, value in private_headers.items()
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
    _RECORDING[recorder.current_cassette] = _Recording(frozenset(private_headers), max_page_bytes)
    return recorder


def recorded_urls(cassette: Cassette) -> set[str]:
    """The (redacted) URLs a cassette holds answers for."""
    return {interaction.as_response().request.url for interaction in cassette.interactions}


# -- reading a recording -------------------------------------------------------------------


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
        if is_product_path(path):
            return "detail"
        return "other"


def cassette_files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.glob("*.json") if path.stat().st_size)


def read_cassette(path: Path) -> Cassette:
    """The cassette at ``path``, loaded by betamax for playback only (nothing is written)."""
    register()
    try:
        return Cassette(
            path.stem, SERIALIZER, cassette_library_dir=str(path.parent), record_mode="none"
        )
    except (ValueError, KeyError, TypeError, AttributeError, LookupError) as error:
        # ValueError: not JSON; the others: JSON that is not betamax's cassette format
        raise RecordingError(f"{path} is not a readable cassette: {error!r}") from None


def page_body(response: requests.Response) -> bytes:
    """A replayed answer's body as the site sent it, gunzipped within the stored-page limit."""
    data = response.raw.read(decode_content=False)  # .content would gunzip without a bound
    coding = (response.headers.get("Content-Encoding") or "").strip().lower()
    if coding in ("gzip", "x-gzip"):
        try:
            data = gunzip_bounded(data, MAX_STORED_PAGE_BYTES)
        except PageTooLarge as error:
            raise RecordingError(f"a page of {response.url}: {error}") from None
    return data


def recorded_pages(directory: Path) -> list[RecordedPage]:
    """Every GET answer recorded in the cassettes of ``directory`` (a later duplicate wins)."""
    pages: dict[str, RecordedPage] = {}
    for path in cassette_files(directory):
        for interaction in read_cassette(path).interactions:
            response = interaction.as_response()
            request = response.request
            if (request.method or "GET").upper() != "GET":
                continue
            page = RecordedPage(
                path,
                request.url,
                response.status_code,
                page_body(response),
                response.encoding or "utf-8",
            )
            pages[page.uri] = page
    return list(pages.values())
