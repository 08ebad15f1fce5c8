"""Small lxml helpers shared by the listing and detail parsers.

The parsers work on lxml trees with XPath compiled once at import time from the
CSS selectors that ``shared/csa-site.md`` documents: the selectors stay readable
and a page costs one tree build plus a handful of compiled XPath calls, which
is several times cheaper than going through parsel's per-call translation.
"""

from __future__ import annotations

import re

from cssselect import HTMLTranslator
from lxml import etree, html

_translator = HTMLTranslator()
_whitespace = re.compile(r"\s+")


def css(selector: str, *, relative: bool = True) -> etree.XPath:
    """Compile a CSS selector into an XPath callable (relative to the node it is called on)."""
    prefix = "descendant-or-self::" if relative else "//"
    return etree.XPath(_translator.css_to_xpath(selector, prefix=prefix))


def parse_document(source: str | bytes, encoding: str | None = None) -> html.HtmlElement:
    """Parse an HTML page (text, or bytes with an optional encoding) into an lxml tree."""
    if isinstance(source, bytes):
        parser = html.HTMLParser(encoding=encoding or "utf-8")
        if not source.strip():
            return html.document_fromstring(b"<html></html>", parser=parser)
        return html.document_fromstring(source, parser=parser)
    if not source.strip():
        return html.document_fromstring("<html></html>")
    return html.document_fromstring(source)


def clean_text(value: str | None) -> str | None:
    """Collapse whitespace the way a browser displays it; empty text becomes None."""
    if value is None:
        return None
    collapsed = _whitespace.sub(" ", value).strip()
    return collapsed or None


def node_text(node: etree._Element | None) -> str | None:
    """The visible text of a node (descendants included), whitespace-collapsed."""
    if node is None:
        return None
    return clean_text(node.text_content())


def first(nodes: list) -> etree._Element | None:
    return nodes[0] if nodes else None
