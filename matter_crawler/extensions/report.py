"""The HTML report rewritten at the end of every crawl (``REPORT_HTML_PATH``).

When the spider closes, the report of ``scrapy report`` (the whole period:
:mod:`matter_crawler.reporting`) replaces the file at ``REPORT_HTML_PATH`` atomically,
whatever the crawl's outcome (:mod:`~matter_crawler.extensions.written_at_close`); the
live page links it. Stats: ``report/bytes``, ``report/errors``. Empty ``REPORT_HTML_PATH`` (the
default): the extension is off.
"""

from __future__ import annotations

from sqlalchemy import Engine

from ..commands._export_files import kept_mode, write_file
from ..reporting.report_data import read_report
from ..reporting.report_html import render_report
from .written_at_close import WrittenAtClose


class HtmlReportWriter(WrittenAtClose):
    path_setting = "REPORT_HTML_PATH"
    stats_prefix = "report"
    what = "the HTML report"

    def write(self, engine: Engine) -> dict[str, int]:
        data = read_report(engine, None, None)
        page = render_report(data).encode("utf-8")
        write_file(self.path, page, kept_mode(self.path))
        return {"bytes": len(page)}
