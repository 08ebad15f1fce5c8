"""Credentials never shown: masked in log lines, the run record and anything else printed.

Credentials reach the crawl in URLs (``DATABASE_URL``,
``PROMETHEUS_PUSHGATEWAY_URL``: ``scheme://user:password@host``, or a
``?password=`` parameter) and in environment variables (``SCRAPYD_PASSWORD``,
``MATTER_DATABASE_URL``, ``MATTER_PUSHGATEWAY_PASSWORD``). The environment is
the place for them: a ``-s`` value shows in the process list and in scrapyd's
job arguments.

- :func:`mask_credentials` replaces the password of every URL in a text with
  ``***`` (the user name stays, so the line still says which account), and the
  value of secret-named query parameters;
- :func:`masked` does the same through settings-like values (dicts, lists),
  and hides whole values whose name says secret (``*PASSWORD*``, ``*TOKEN*``...);
- :class:`CredentialMasking`, a Scrapy add-on (``ADDONS``, first of all), puts
  a :class:`CredentialMaskingFilter` on the root log handlers before anything
  logs a setting: Scrapy's "Overridden settings" line included.

Crawl-wide (storage, extensions and commands use it), it depends on Scrapy only, so any
package can import it without a cycle. What ``scrapy record-site`` removes from a
recording is another rule: :mod:`matter_crawler.recording.redaction`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from scrapy.settings import BaseSettings

MASK = "***"
#: Setting (or key) names whose whole value is a secret.
SECRET_NAME_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "AUTH", "API_KEY")
#: scheme://user:password@ (the user name may be empty: scheme://:password@)
# (a password may hold an unescaped @: everything up to the authority's last @ is masked)
_URL_PASSWORD = re.compile(r"(?P<lead>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@'\"]*):[^\s/?#'\"]+@")
#: ?password=..., &sslpassword=..., &token=... in a URL or DSN
_SECRET_PARAMETER = re.compile(
    r"(?P<lead>[?&;](?:[A-Za-z_]*password|passwd|pwd|token|access_token|secret|api_?key)=)"
    r"[^&;\s'\"]*",
    re.IGNORECASE,
)


def mask_credentials(text: str) -> str:
    """``text`` with every URL's password, and secret query parameters, replaced by ``***``."""
    if "@" not in text and "=" not in text:
        return text  # the common case, at the cost of two scans
    text = _URL_PASSWORD.sub(rf"\g<lead>:{MASK}@", text)
    return _SECRET_PARAMETER.sub(rf"\g<lead>{MASK}", text)


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in SECRET_NAME_WORDS)


def masked(value: Any, name: str = "") -> Any:
    """A copy of a settings-like value with credentials masked (whole values of secret names)."""
    if isinstance(value, BaseSettings):
        value = value.copy_to_dict()
    if name and is_secret_name(name) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, str):
        return mask_credentials(value)
    if isinstance(value, dict):
        return {key: masked(item, str(key)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return value


class CredentialMaskingFilter(logging.Filter):
    """Rewrites each record's message with its credentials masked (the record is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: let the handler report it as usual
            return True
        shown = mask_credentials(message)
        if shown != message:
            record.msg, record.args = shown, None
        return True


_FILTER = CredentialMaskingFilter()


def install_log_masking(logger: logging.Logger | None = None) -> None:
    """Put the masking filter on every handler of ``logger`` (the root logger); idempotent."""
    for handler in (logger or logging.getLogger()).handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


class CredentialMasking:
    """Scrapy add-on: mask credentials in every log line of the crawl.

    Add-ons run when the crawler applies its settings, after Scrapy has
    installed its log handler and before the "Overridden settings" line.
    """

    def update_settings(self, settings: BaseSettings) -> None:
        install_log_masking()
