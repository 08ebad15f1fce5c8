"""Recording the catalogue into betamax cassettes, for offline tests (``scrapy record-site``).

Run once where csa-iot.org is reachable, the recorder captures listing page 1, a
sample of middle listing pages, the last page, the page past the end (the site's
404) and a sample of product pages, with python-requests recorded by betamax,
into a directory:

- ``robots.json``, ``listing.json``, ``detail.json``: one betamax cassette per
  kind of page (record mode ``new_episodes``). A page already in a cassette is
  replayed from it, never fetched again, so running again with larger samples
  only fetches the pages it adds;
- ``expectations.jsonl``: what the project's parsers read from every recorded
  page (see :mod:`.expectations`), for a human to review and commit.

One module per job:

- :mod:`.redaction`: what must never be recorded (cookies, credentials, tokens),
  removed from an interaction before betamax writes it;
- :mod:`.limits`: the page size limit (``RECORD_MAX_PAGE_SIZE``), on the wire and
  decompressed;
- :mod:`.cassettes`: betamax's registration (serializer, matcher, hook) and
  reading a recording back through betamax's own ``Cassette``;
- :mod:`.expectations`: the expectations file;
- :mod:`.sampling`: which pages of the listing and which products are recorded;
- :mod:`.recorder`: the polite one-request-at-a-time client (robots.txt, delay,
  retries read as the crawl reads them);
- :mod:`.summary`: the report printed at the end.

The package imports requests and betamax: the command imports it only when it
runs (every ``scrapy`` command imports every command module). The crawl-wide
masking of credentials in log lines is another concern: :mod:`matter_crawler.redaction`.
See docs/recordings.md.
"""

from __future__ import annotations


class RecordingError(Exception):
    """A failure the user can act on (the command prints it as one line, exit status 1)."""
