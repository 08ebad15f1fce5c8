"""``scrapy record-site``: record catalogue pages into betamax cassettes for offline tests.

(The module's name has a hyphen because Scrapy names a command after its module.)

The options and the run; the work is :mod:`matter_crawler.recording` (what is
recorded, how politely, what is redacted, the expectations file).
``python -m sitesim --cassettes DIR`` serves a recording as a
site; ``tests/crawl/test_recordings.py`` runs every recorded page through the parsers.
See docs/recordings.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError


def _sample_size(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {text!r}") from None
    if size < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {size}")
    return size


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if (
        not colon
        or not name.strip()
        or not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name.strip())
    ):
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


class Command(ScrapyCommand):
    requires_project = True
    #: plain requests, no Scrapy engine: no reactor, no crawl log
    requires_crawler_process = False
    command_name = "record-site"

    def syntax(self) -> str:
        return (
            "-o DIR [--listing-sample N|all] [--detail-sample N|all] [--delay S] "
            "[--seed N] [--header 'Name: value'] [--max-page-size BYTES] [--rewrite-expectations]"
        )

    def short_desc(self) -> str:
        return "Record catalogue pages into betamax cassettes for offline tests"

    def long_desc(self) -> str:
        return (
            "Record listing page 1, a sample of middle listing pages, the last page, the page "
            "past it and a sample of product pages of CSA_BASE_URL into betamax cassettes in "
            "DIR, politely (robots.txt, --delay, USER_AGENT), with cookies and credentials "
            "removed; pages already recorded are replayed, not fetched again. Writes "
            "DIR/expectations.jsonl (what the parsers read from every recorded page) for "
            "review. See docs/recordings.md."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.prog = f"scrapy {self.command_name}"
        assert self.settings is not None
        parser.add_argument("-o", "--output", metavar="DIR", help="directory of the recording")
        parser.add_argument(
            "--listing-sample",
            type=_sample_size,
            default=3,
            metavar="N",
            help="middle listing pages to record, or 'all' (3); page 1 and the last always",
        )
        parser.add_argument(
            "--detail-sample",
            type=_sample_size,
            default=12,
            metavar="N",
            help="product pages to record from the recorded listing pages, or 'all' (12)",
        )
        parser.add_argument(
            "--delay",
            type=float,
            default=1.0,
            metavar="S",
            help="seconds between requests (1.0; robots.txt's Crawl-delay if longer)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=self.settings.getfloat("DOWNLOAD_TIMEOUT"),
            metavar="S",
            help="seconds to wait for an answer (DOWNLOAD_TIMEOUT)",
        )
        parser.add_argument(
            "--attempts", type=int, default=3, metavar="N", help="tries per page (3)"
        )
        parser.add_argument(
            "--seed", type=int, default=1, metavar="N", help="seed of the samples (1)"
        )
        parser.add_argument(
            "--header",
            type=_header,
            action="append",
            default=[],
            metavar="'NAME: VALUE'",
            help="extra request header (e.g. a cookie a challenge page set); sent, never recorded",
        )
        parser.add_argument(
            "--max-page-size",
            type=int,
            default=self.settings.getint("RECORD_MAX_PAGE_SIZE"),
            metavar="BYTES",
            help="largest page recorded, as sent and decompressed; a larger one is refused "
            "(RECORD_MAX_PAGE_SIZE)",
        )
        parser.add_argument(
            "--rewrite-expectations",
            action="store_true",
            help="regenerate every line of expectations.jsonl, reviewed ones too",
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        if args:
            raise UsageError(f"unexpected arguments: {' '.join(args)}", print_help=False)
        if not opts.output:
            raise UsageError("give the recording's directory: -o DIR", print_help=False)
        if opts.delay < 0 or opts.timeout <= 0 or opts.attempts < 1 or opts.max_page_size < 1:
            raise UsageError(
                "--delay must be >= 0, --timeout > 0, --attempts >= 1 and --max-page-size >= 1",
                print_help=False,
            )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        # imported here: every `scrapy` command imports this module, the recorder's
        # requests and betamax load only when it runs
        from ..recording import RecordingError  # noqa: PLC0415
        from ..recording.expectations import write_expectations  # noqa: PLC0415
        from ..recording.recorder import RecordOptions, SiteRecorder  # noqa: PLC0415
        from ..recording.summary import render_summary  # noqa: PLC0415

        assert self.settings is not None
        settings = self.settings
        options = RecordOptions(
            directory=Path(opts.output),
            base_url=settings.get("CSA_BASE_URL"),
            listing_query=(settings.get("CSA_LISTING_QUERY") or "").lstrip("?"),
            user_agent=settings.get("USER_AGENT"),
            listing_sample=opts.listing_sample,
            detail_sample=opts.detail_sample,
            delay=opts.delay,
            timeout=opts.timeout,
            attempts=opts.attempts,
            seed=opts.seed,
            headers=dict(opts.header),
            retry_after_max=settings.getfloat("RETRY_AFTER_MAX"),
            max_page_bytes=opts.max_page_size,
        )
        recorder = SiteRecorder(options)
        try:
            recorder.log(f"Recording {options.base_url} into {options.directory}")
            report = recorder.run()
            summary = write_expectations(options.directory, rewrite=opts.rewrite_expectations)
        except RecordingError as error:
            self.fail(str(error))
            return
        except KeyboardInterrupt:
            self.fail("interrupted: the pages recorded so far are saved; run again to go on")
            return
        except OSError as error:
            self.fail(str(error))
            return
        print(render_summary(options, report, summary))
        if report.failed:
            self.exitcode = 1

    def fail(self, message: str) -> None:
        print(f"scrapy {self.command_name}: error: {message}", file=sys.stderr)
        self.exitcode = 1
