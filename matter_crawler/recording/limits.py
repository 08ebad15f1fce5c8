"""The page size limit of a recording (``RECORD_MAX_PAGE_SIZE``, ``--max-page-size``).

No page may be larger than the limit, neither as it comes over the network nor
decompressed: a bigger one (a decompression bomb, say) is refused, read no
further, and reported; so is a Content-Encoding other than the gzip asked for.
"""

from __future__ import annotations

import io
import zlib
from typing import Any

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from urllib3 import HTTPResponse

#: Content-Encodings a page may come in (only gzip is asked for); anything else is refused
ACCEPTED_CODINGS = frozenset({"", "identity", "gzip", "x-gzip"})
#: Largest page read back from a cassette (a recording is reviewed, but it is still a file)
MAX_STORED_PAGE_BYTES = 64 * 1024 * 1024


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


class BoundedAdapter(HTTPAdapter):
    """A requests transport adapter that reads at most ``max_bytes`` of any answer.

    It refuses (:class:`PageTooLarge`) an answer that announces more, that
    sends more, or that comes in a Content-Encoding other than gzip (the only
    one asked for), before betamax reads the body; the connection is closed
    and the rest of the body is never read.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        kwargs["stream"] = True  # the body is read here, within the limit
        response = super().send(request, *args, **kwargs)
        raw = response.raw
        coding = (response.headers.get("Content-Encoding") or "").strip().lower()
        length = response.headers.get("Content-Length", "")
        limit = self.max_bytes
        problem = None
        if coding not in ACCEPTED_CODINGS:
            problem = f"Content-Encoding {coding!r}, which was not asked for"
        elif length.isdigit() and int(length) > limit:
            problem = f"{int(length):,} bytes announced, over {limit:,} (--max-page-size)"
        else:
            body = raw.read(limit + 1, decode_content=False)
            if len(body) > limit:
                problem = f"over {limit:,} bytes sent (--max-page-size)"
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
