"""Catalogue text made safe for XML and HTML output.

Product text is hostile input (docs/security.md): XML 1.0 cannot hold most C0
controls, lone surrogates or U+FFFE/U+FFFF at all (lxml refuses the document), so
they are dropped; everything else is escaped by whoever writes the markup
(:func:`html.escape` here, lxml in the feed).
"""

from __future__ import annotations

import re

# Characters XML 1.0 forbids (Char production): C0 controls but tab, newline and
# carriage return; surrogates; U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: object) -> str:
    """``str(value)`` without the characters XML 1.0 cannot hold (None: empty)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return _NOT_XML.sub("", text)
