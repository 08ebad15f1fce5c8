"""Command line: ``python -m sitesim --port 8800 --products 6000 --seed 1``.

Prints exactly one line once listening (``matter-crawler sitesim listening on
http://HOST:PORT``), which launchers read to learn the port when ``--port 0``
let the system pick one. SIGTERM and SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from twisted.internet import error
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from . import truth
from .cassettes import Recording, RecordingError
from .catalogue import MAX_PRODUCTS, MIN_PRODUCTS, Catalogue
from .config import OPTIONS, Settings
from .dcl import Gateway, crosscheck_json, ledger_json
from .dcl import build as build_ledger
from .server import SimServer, SimSite, SiteResource

BANNER = "matter-crawler sitesim listening on"


def _arg_type(parse: Callable[[Any], Any]) -> Callable[[str], Any]:
    """Turn a config parser's ValueError into argparse's clear usage error."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _products(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not MIN_PRODUCTS <= count <= MAX_PRODUCTS:
        raise argparse.ArgumentTypeError(f"must be {MIN_PRODUCTS}..{MAX_PRODUCTS}, got {count}")
    return count


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535 (0 = any free port), got {port}")
    return port


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def build_parser() -> argparse.ArgumentParser:
    """The CLI; fault options come from the same table as ``/__sim__/faults``."""
    parser = argparse.ArgumentParser(
        prog="python -m sitesim",
        description="Serve a simulated csa-iot.org Matter catalogue (see docs/sitesim.md).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8800, help="port, 0 = free (default 8800)")
    parser.add_argument(
        "--products", type=_products, default=6000, help="catalogue size (default 6000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="catalogue and fault seed (default 1)")
    parser.add_argument(
        "--dump-truth", metavar="FILE", help="write the ground truth (JSON lines) and exit"
    )
    parser.add_argument(
        "--dcl",
        action="store_true",
        help="also serve a simulated Distributed Compliance Ledger under /dcl/ (ledger derived "
        "from the catalogue with seeded disagreements; truth at GET /__sim__/crosscheck)",
    )
    parser.add_argument(
        "--dump-crosscheck",
        metavar="FILE",
        help="write the cross-check's expected findings (JSON) of the simulated DCL and exit",
    )
    parser.add_argument(
        "--dump-dcl",
        metavar="FILE",
        help="write every record of the simulated DCL (JSON, as served) and exit",
    )
    parser.add_argument(
        "--hostile",
        action="store_true",
        help="serve a few products badly (malformed, missing fields, oversized, redirect loop, "
        "off-site link; see GET /__sim__/hostile)",
    )
    parser.add_argument(
        "--hostile-parsing",
        action="store_true",
        help="serve a few products and pages so as to break parsers (huge script, deep "
        "nesting, unknown charset, bad cards, over-long values, control characters, URL "
        "variants, bad Retry-After, bad page numbers; see GET /__sim__/hostile)",
    )
    parser.add_argument(
        "--cassettes",
        metavar="DIR",
        help="serve the pages recorded in DIR by `scrapy record-site` (betamax cassettes) "
        "instead of a generated catalogue; the truth is DIR/expectations.jsonl",
    )
    parser.add_argument(
        "--set-cookies",
        action="store_true",
        help="set a session cookie on every page answer (tests that recorders drop cookies)",
    )
    defaults = Settings().as_json()
    for name, option in OPTIONS.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=_arg_type(option.parse),
            metavar=option.metavar,
            help=f"{option.help} (default {_shown(defaults[name])})",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, then dump the truth or serve until SIGTERM/SIGINT."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Values were parsed (and validated) by the option table's parsers.
    given = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    settings = replace(Settings(), **given)
    recording = None
    if args.cassettes:
        for switched, flag in (
            (args.hostile, "--hostile"),
            (args.hostile_parsing, "--hostile-parsing"),
        ):
            if switched:
                parser.error(f"{flag} does not apply to --cassettes (a recording is served as is)")
        try:
            recording = Recording(Path(args.cassettes))
        except RecordingError as failure:
            parser.error(f"--cassettes: {failure}")
        # no products of its own: the smallest catalogue seeds the faults and the 404 page
        catalogue = Catalogue(MIN_PRODUCTS, args.seed)
    else:
        catalogue = Catalogue(args.products, args.seed)
    if args.hostile:
        catalogue.enable_hostile()
    if args.hostile_parsing:
        catalogue.enable_hostile_parsing()
    if args.cassettes and (args.dcl or args.dump_crosscheck or args.dump_dcl):
        parser.error("--dcl needs a generated catalogue, not --cassettes")
    for target, render in ((args.dump_crosscheck, crosscheck_json), (args.dump_dcl, ledger_json)):
        if target:
            dumped = json.dumps(render(build_ledger(catalogue, settings.variant_rate)))
            if target == "-":
                print(dumped)
            else:
                Path(target).write_text(dumped + "\n", encoding="utf-8")
            return 0
    if args.dump_truth:

        def dump(out: TextIO) -> None:
            if recording is not None:
                out.writelines(recording.truth_lines())
            else:
                truth.dump(catalogue, settings.variant_rate, out)

        if args.dump_truth == "-":
            dump(sys.stdout)
        else:
            with open(args.dump_truth, "w", encoding="utf-8") as out:
                dump(out)
        return 0
    return serve(
        catalogue,
        settings,
        args.host,
        args.port,
        parser,
        recording=recording,
        set_cookies=args.set_cookies,
        dcl=Gateway(build_ledger(catalogue, settings.variant_rate)) if args.dcl else None,
    )


def serve(
    catalogue: Catalogue,
    settings: Settings,
    host: str,
    port: int,
    parser: argparse.ArgumentParser,
    *,
    recording: Recording | None = None,
    set_cookies: bool = False,
    dcl: Gateway | None = None,
) -> int:
    """Listen, print the banner line, run the reactor until stopped."""
    # Importing the reactor installs it: only do so when actually serving.
    from twisted.internet import reactor  # noqa: PLC0415

    # Warnings and errors (a failing callback...) go to stderr; no info chatter.
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(sys.stderr),
                [LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)],
            )
        ],
        redirectStandardIO=False,
    )
    sim = SimServer(
        catalogue, settings, host, reactor, recording=recording, set_cookies=set_cookies, dcl=dcl
    )
    site = SimSite(SiteResource(sim))
    try:
        listening = reactor.listenTCP(port, site, backlog=1024, interface=host)
    except error.CannotListenError as failure:
        parser.exit(1, f"{parser.prog}: error: cannot listen on {host}:{port}: {failure}\n")
    sim.port = listening.getHost().port
    shown = f"[{host}]" if ":" in host else host
    # Printed once the reactor runs: its SIGTERM/SIGINT handlers are installed
    # by then, so a launcher that stops the site right after the banner gets a
    # clean exit, not death by the default signal action.
    reactor.callWhenRunning(print, f"{BANNER} http://{shown}:{sim.port}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
