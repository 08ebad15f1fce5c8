"""Terminal-safe text: page-derived strings made harmless to print.

Product names, URLs, dead-letter reasons and other text that comes from the
crawled site reach a terminal through ``scrapy changes``, ``scrapy dead-letters``
and log lines. A control character there is an instruction to the terminal (ESC
starts an escape sequence that can recolour, move the cursor, retitle the window
or rewrite what was printed; BEL rings), and a bidirectional override makes text
display in another order than it is stored. :func:`terminal_safe` shows each of
them as a visible escape (``\\x1b``, ``\\u202e``) and leaves every other character,
non-ASCII letters included, as it is. The parsers already drop control characters
from what they store (:func:`matter_crawler.parsing._html.clean_text`); this is the
second line, for what was stored before, for bidi controls (which are stored, since
they are legitimate in mixed-direction text) and for text that never went through the
parsers.

:func:`quoted` and :func:`shortened` cut page-derived text that goes into a message
(a dead letter's reason, a validation problem): a value of a megabyte is named by its
first characters and its length, never copied whole.
"""

from __future__ import annotations

import re

#: Page-derived text quoted in a message is cut to this many characters.
QUOTE_LIMIT = 80
# C0 controls (tab and newline included: one value, one line), DEL, C1 controls, and the
# Unicode bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069)
# plus the line and paragraph separators (U+2028, U+2029) a terminal may break on.
UNSAFE_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(value: object) -> str:
    """``str(value)`` with every control and bidi-control character shown as an escape."""
    text = value if isinstance(value, str) else str(value)
    return UNSAFE_CHARACTERS.sub(_escape, text)


def shortened(text: str, limit: int = QUOTE_LIMIT) -> str:
    """Page-derived text for a message, cut to ``limit`` characters (its length said)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def quoted(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of page-derived text for a message, cut to ``limit`` characters."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"
