"""What must never be recorded: secrets removed from an interaction before betamax writes it.

Cookies (``Cookie``, ``Set-Cookie``), ``Authorization`` and similar headers, the
headers given with ``--header``, and token-like values in URLs and in pages
(``?_wpnonce=``, ``access_token=``, ``"nonce": "..."``) are removed or replaced
by ``REDACTED``. Pure functions over betamax's interaction data (the dict its
``before_record`` hook hands over).

(Masking credentials in the crawl's log lines is :mod:`matter_crawler.redaction`:
another audience and another rule, ``***`` in place of a password in a line a
human reads, where a recording must hold nothing secret at all.)
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from .limits import MAX_STORED_PAGE_BYTES, gunzip_bounded

REDACTED = "REDACTED"

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


def header_values(value: Any) -> list[str]:
    """A recorded header's values: betamax stores a list, older cassettes a string."""
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def sanitize_interaction(
    data: dict[str, Any],
    private_headers: Iterable[str] = (),
    max_page_bytes: int | None = None,
) -> None:
    """Make one betamax interaction safe to commit (in place).

    Removes secret headers (and ``private_headers``, those the user added with
    ``--header``), redacts URLs and token-like values in the page, decodes a
    gzip body (so that cassettes can be reviewed and diffed as text) and sets
    Content-Length to the body actually stored. A body that decompresses to
    more than ``max_page_bytes`` raises :class:`~.limits.PageTooLarge`.
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
        values = header_values(recorded)
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
