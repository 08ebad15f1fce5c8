"""Small lxml helpers shared by the listing and detail parsers.

The parsers work on lxml trees with XPath compiled once at import time from the
CSS selectors that docs/site-markup.md documents: the selectors stay readable
and a page costs one tree build plus a handful of compiled XPath calls, which
is several times cheaper than going through parsel's per-call translation.

:func:`parse_document` parses with libxml2's limits and fails loudly when one is
hit: markup nested deeper than 256 elements, or a text node or attribute longer
than 10,000,000 characters, makes libxml2 stop and return the tree built so far,
which would then read as a page with its fields missing. It raises
:class:`PageParseError` with the reason instead. It also refuses, before
parsing, an element with more than :data:`MAX_ATTRIBUTES` attributes: libxml2
checks each attribute against the element's earlier ones, so an element with
100,000 attributes (a 1 MB tag) holds the reactor for tens of seconds. It also decodes charsets that
Python knows and libxml2 does not (see its docstring).

:func:`clean_text` normalises every text value the parsers return: whitespace
collapsed as a browser shows it, and control characters (C0 and C1, DEL), which a
browser does not display and a terminal would obey, removed.
"""

from __future__ import annotations

import codecs
import re

from cssselect import HTMLTranslator
from lxml import etree, html

_translator = HTMLTranslator()
_whitespace = re.compile(r"\s+")
# C0 controls, DEL and C1 controls, except those Python counts as whitespace (tab, line
# breaks, \x1c-\x1f, NEL), which _whitespace collapses to a space like any other.
_controls = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
#: libxml2's nesting limit without XML_PARSE_HUGE (which lxml's HTML parser leaves off).
MAX_DEPTH = 256
#: Attributes one element may have; real pages use a few dozen at most.
MAX_ATTRIBUTES = 1024
# A start tag read as libxml2 reads it: quoted values may hold `<`, `>`, spaces and `=`.
# Possessive quantifiers keep every scan linear. The lookahead form matches only tags of at
# least 2 * MAX_ATTRIBUTES units (each attribute is at least a name and a space), so a
# normal page costs one pass over its tags and nothing in Python.
_TAG_PARTS = r"""(?:[^"'<>]++|"[^"]*+"|'[^']*+')"""
_TAG_UNIT = r"""(?:[^"'<>]|"[^"]*+"|'[^']*+')"""  # a character, or a quoted value


def _for_text_and_bytes(pattern: str) -> dict[type, re.Pattern]:
    return {str: re.compile(pattern), bytes: re.compile(pattern.encode())}


_LONG_TAG = _for_text_and_bytes(f"<[A-Za-z](?={_TAG_UNIT}{{{2 * MAX_ATTRIBUTES}}})")
_TAG = _for_text_and_bytes(f"<[A-Za-z]{_TAG_PARTS}*+")
_QUOTED = _for_text_and_bytes(r""""[^"]*+"|'[^']*+'""")
_ATTRIBUTE_NAME = _for_text_and_bytes(r"\s[^\s>/=]")
_BLANK = {str: '""', bytes: b'""'}
_UTF8 = "utf-8"


class PageParseError(ValueError):
    """A page the parsers refuse, with the reason (``str(error)``, also ``error.reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def css(selector: str, *, relative: bool = True) -> etree.XPath:
    """Compile a CSS selector into an XPath callable (relative to the node it is called on)."""
    prefix = "descendant-or-self::" if relative else "//"
    return etree.XPath(_translator.css_to_xpath(selector, prefix=prefix))


def parse_document(source: str | bytes, encoding: str | None = None) -> html.HtmlElement:
    """Parse an HTML page (text, or bytes with an optional encoding) into an lxml tree.

    Bytes in UTF-8 (or with no encoding given) go to libxml2 as they are: the common
    case costs what it always did. Bytes in another encoding libxml2 knows are decoded
    by libxml2 too. An encoding libxml2 does not know (its iconv lacks e.g. ``cp858``,
    ``cp1125`` or ``mac-turkish``, which Python and Scrapy's ``response.encoding``
    know) is decoded by Python with that codec, undecodable bytes replaced by U+FFFD,
    and the text is parsed; an encoding Python does not know either is read as UTF-8
    with replacement. Raises :class:`PageParseError` when libxml2 stops at one of its
    limits (see the module docstring).
    """
    _check_attribute_counts(source)
    if isinstance(source, str):
        return _parse_with(source if source.strip() else "<html></html>", html.HTMLParser())
    if not source.strip():
        source = b"<html></html>"
    name = _codec_name(encoding)
    if name is None:  # Python does not know it either
        return _parse_with(source.decode(_UTF8, "replace"), html.HTMLParser())
    try:
        parser = html.HTMLParser(encoding=name)
    except LookupError:  # libxml2's iconv does not know it: Python decodes
        return _parse_with(source.decode(name, "replace"), html.HTMLParser())
    return _parse_with(source, parser)


def _check_attribute_counts(source: str | bytes) -> None:
    """Raise :class:`PageParseError` for an element with more than MAX_ATTRIBUTES attributes."""
    kind = type(source)
    for long_tag in _LONG_TAG[kind].finditer(source):
        tag = _TAG[kind].match(source, long_tag.start())
        assert tag is not None  # the lookahead matched its start
        # quoted values may hold spaces and `=`: blank them before counting names
        names = _ATTRIBUTE_NAME[kind].findall(_QUOTED[kind].sub(_BLANK[kind], tag.group()))
        if len(names) > MAX_ATTRIBUTES:
            raise PageParseError(
                f"an element with {len(names)} attributes (more than {MAX_ATTRIBUTES}) at "
                f"offset {long_tag.start()}: the HTML parser would take minutes over it"
            )


def _codec_name(encoding: str | None) -> str | None:
    """Python's name of ``encoding`` (``utf-8`` when none is given); None if Python lacks it."""
    if not encoding or encoding == _UTF8:  # what Scrapy says for nearly every page
        return _UTF8
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return None


def _parse_with(source: str | bytes, parser: html.HTMLParser) -> html.HtmlElement:
    doc = html.document_fromstring(source, parser=parser)
    # libxml2 keeps about 100 errors per parse and stops at the first fatal one,
    # so the log is short and a fatal error is its last entry
    error = parser.error_log.last_error
    if error is not None and error.level == etree.ErrorLevels.FATAL:
        raise PageParseError(_refusal(error.message.strip(), error.type, error.line))
    return doc


def _refusal(message: str, error_type: int, line: int) -> str:
    """The reason a page is refused, from libxml2's fatal error."""
    if "depth" in message.lower():
        return (
            f"markup nested deeper than {MAX_DEPTH} elements (libxml2's limit, near line "
            f"{line}): the parser stopped there, so the page cannot be read"
        )
    if error_type == etree.ErrorTypes.ERR_RESOURCE_LIMIT:
        return (
            f"the page exceeds a limit of the HTML parser near line {line} ({message}): "
            "the parser stopped there, so the page cannot be read"
        )
    return f"the HTML parser gave up near line {line}: {message}"


def clean_text(value: str | None) -> str | None:
    """Collapse whitespace the way a browser displays it and drop control characters;
    empty text becomes None."""
    if value is None:
        return None
    collapsed = _whitespace.sub(" ", value).strip()
    if not collapsed.isprintable():  # rare (a control or format character): look closer
        collapsed = _whitespace.sub(" ", _controls.sub("", collapsed)).strip()
    return collapsed or None


def node_text(node: etree._Element | None) -> str | None:
    """The visible text of a node (descendants included), whitespace-collapsed."""
    if node is None:
        return None
    return clean_text(node.text_content())


def first(nodes: list) -> etree._Element | None:
    return nodes[0] if nodes else None
