"""``scrapy crawl``: Scrapy's own command, plus ``LOG_FORMAT=json``.

A command of the project's ``COMMANDS_MODULE`` takes the place of Scrapy's of the
same name. This one only installs the JSON log handler
(:func:`matter_crawler.json_log.use_json_log`) after the options are read and
before Scrapy builds the crawler process, whose first lines are then JSON too.
"""

from __future__ import annotations

import argparse

from scrapy.commands.crawl import Command as ScrapyCrawlCommand

from ..json_log import use_json_log


class Command(ScrapyCrawlCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        assert self.settings is not None
        use_json_log(self.settings)
