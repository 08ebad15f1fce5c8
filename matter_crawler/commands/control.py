"""``scrapy control pause|resume|stop|profile NAME``: drive a running crawl from the terminal.

It talks to the crawl's monitoring server (``--url``, the address the crawl logs): it
asks ``GET /control`` where the crawl's token file is, reads the token from it (so it
works for the crawl's own user; ``--token-file`` or ``$MATTER_CONTROL_TOKEN`` give it
another way), and sends the command with ``POST /control/<command>``
(:mod:`matter_crawler.monitoring.control`). ``pause`` waits until the requests in
flight have finished (``--no-wait``: it does not).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from ..monitoring.control import COMMANDS

TOKEN_VARIABLE = "MATTER_CONTROL_TOKEN"
DEFAULT_URL = "http://127.0.0.1:9410/"
#: Seconds between looks at the state while ``pause`` waits.
POLL_INTERVAL = 0.2


class ControlFailed(Exception):
    """The crawl could not be reached or refused the command (a message for the user)."""


def base_url(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def call(url: str, *, token: str | None = None, body: dict[str, Any] | None = None) -> dict:
    """GET ``url`` (no token) or POST ``body`` to it with the token; the JSON answer."""
    request = urllib.request.Request(url, method="GET" if token is None else "POST")
    if token is not None:
        request.add_header("X-Matter-Control", "1")
        request.add_header("Authorization", f"Bearer {token}")
        request.add_header("Content-Type", "application/json")
        request.data = json.dumps(body or {}).encode("ascii")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        try:
            reason = json.loads(error.read()).get("error", "")
        except ValueError:
            reason = ""
        raise ControlFailed(f"{url}: HTTP {error.code} {reason}".rstrip()) from None
    except (OSError, ValueError) as error:
        raise ControlFailed(f"{url}: {error}") from None


def read_token(state: dict[str, Any], token_file: str | None) -> str:
    if token_file is None and os.environ.get(TOKEN_VARIABLE):
        return os.environ[TOKEN_VARIABLE].strip()
    path = Path(token_file or state.get("token_file") or "")
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError as error:
        raise ControlFailed(
            f"cannot read the control token from {path}: {error.strerror} (the crawl's user "
            f"can; or give --token-file or ${TOKEN_VARIABLE})"
        ) from None


def send(
    url: str,
    command: str,
    *,
    profile: str | None = None,
    token_file: str | None = None,
    wait: float = 0.0,
) -> dict[str, Any]:
    """Send ``command`` to the crawl at ``url``; with ``wait``, wait that long for a pause."""
    control = base_url(url) + "control"
    state = call(control)
    token = read_token(state, token_file)
    answer = call(f"{control}/{command}", token=token, body={"profile": profile})
    deadline = time.monotonic() + wait
    while answer.get("state") == "pausing" and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
        answer = call(control)
    return answer


class Command(ScrapyCommand):
    requires_project = False
    default_settings = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return "pause|resume|stop|profile NAME [--url URL] [--token-file FILE] [--json]"

    def short_desc(self) -> str:
        return "Pause, resume, stop a running crawl or switch its profile"

    def long_desc(self) -> str:
        return (
            "Send a command to a running crawl through its monitoring server (--url, the "
            "address the crawl logs). The crawl's token is read from its token file, whose "
            "path the server tells; pause waits until the requests in flight have finished."
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--url", default=DEFAULT_URL, help=f"the crawl's server ({DEFAULT_URL})"
        )
        parser.add_argument("--token-file", metavar="FILE", help="read the token from FILE")
        parser.add_argument(
            "--no-wait", action="store_true", help="pause: return before in-flight requests end"
        )
        parser.add_argument("--timeout", type=float, default=120.0, help="pause: wait at most S")
        parser.add_argument("--json", action="store_true", help="print the crawl's answer as JSON")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if not args or args[0] not in COMMANDS:
            raise UsageError(f"a command: one of {', '.join(COMMANDS)}")
        command, rest = args[0], args[1:]
        if (command == "profile") != (len(rest) == 1) or len(rest) > 1:
            raise UsageError("profile takes one NAME; the other commands take none")
        try:
            answer = send(
                opts.url,
                command,
                profile=rest[0] if rest else None,
                token_file=opts.token_file,
                wait=0.0 if opts.no_wait else opts.timeout,
            )
        except ControlFailed as error:
            print(f"scrapy control: error: {error}", file=sys.stderr)
            self.exitcode = 1
            return
        if opts.json:
            print(json.dumps(answer))
        else:
            print(
                f"{answer['state']} (profile {answer['profile']}, "
                f"{answer['in_flight']} requests in flight)"
            )
