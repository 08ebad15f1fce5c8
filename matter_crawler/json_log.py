"""``LOG_FORMAT=json``: every log line of a crawl as one JSON object.

Scrapy's ``LOG_FORMAT`` is a :mod:`logging` format string, and ``json`` is not one
(``logging.Formatter("json")`` raises ``ValueError``: it names no field), so the
value gives no valid setting a second meaning. With it, each line is an object
with ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message``,
``exception`` (the traceback text) when there is one, ``stack`` when asked for,
and any ``extra`` fields of the record (a spider as its name, other values JSON
cannot hold as their text).
Non-ASCII characters are escaped, so a line holds no character that any reader
splits lines at (U+2028, NEL) and no terminal control sequence from the site.

How: Scrapy builds its root handler with ``logging.Formatter(LOG_FORMAT)`` when
the crawler process starts, and logs its first lines at once; no setting picks
the formatter class. So the ``crawl`` command (:mod:`matter_crawler.commands.crawl`)
installs the root handler itself, before the crawler process exists, built from
the settings Scrapy's handler is (``LOG_FILE``, ``LOG_FILE_APPEND``,
``LOG_ENCODING``, ``LOG_ENABLED``, ``LOG_LEVEL``, ``LOG_SHORT_NAMES``), and turns
``LOG_INSTALL_ROOT_HANDLER`` off so Scrapy installs none. ``LOG_DATEFORMAT`` is not
used (``time`` is always ISO 8601). A spider's ``custom_settings`` cannot change
this handler's level or file (Scrapy's own per-crawler handler would take them).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from scrapy import Spider
from scrapy.settings import BaseSettings
from scrapy.utils.log import TopLevelFormatter

JSON = "json"
#: What every LogRecord holds: anything else on a record came as ``extra``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and not name.startswith("_"):
                entry[name if name not in entry else f"extra_{name}"] = value
        return json.dumps(entry, ensure_ascii=True, default=_plain)


def _plain(value: Any) -> Any:
    """What JSON holds of an ``extra`` value: a spider's name (Scrapy passes the spider), else
    its text."""
    return value.name if isinstance(value, Spider) else str(value)


def json_handler(settings: BaseSettings) -> logging.Handler:
    """The handler Scrapy's ``_get_handler`` would build, with :class:`JsonFormatter`."""
    handler: logging.Handler
    filename = settings.get("LOG_FILE")
    if filename:
        mode = "a" if settings.getbool("LOG_FILE_APPEND") else "w"
        handler = logging.FileHandler(filename, mode=mode, encoding=settings.get("LOG_ENCODING"))
    elif settings.getbool("LOG_ENABLED"):
        handler = logging.StreamHandler()
    else:
        handler = logging.NullHandler()
    handler.setFormatter(JsonFormatter())
    handler.setLevel(settings.get("LOG_LEVEL"))
    if settings.getbool("LOG_SHORT_NAMES"):
        handler.addFilter(TopLevelFormatter(["scrapy"]))
    return handler


def use_json_log(settings: BaseSettings) -> bool:
    """With ``LOG_FORMAT=json``, install the JSON root handler in Scrapy's place.

    Call before the crawler process is built. Nothing happens when the user has
    turned Scrapy's root handler off (``LOG_INSTALL_ROOT_HANDLER``): logging is theirs.
    """
    if settings.get("LOG_FORMAT") != JSON or not settings.getbool("LOG_INSTALL_ROOT_HANDLER"):
        return False
    logging.root.setLevel(logging.NOTSET)
    logging.root.addHandler(json_handler(settings))
    settings.set("LOG_INSTALL_ROOT_HANDLER", False, priority="cmdline")
    return True
