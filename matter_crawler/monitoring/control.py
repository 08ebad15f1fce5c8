"""The control routes of the monitoring server: ``GET /control`` and ``POST /control/<command>``.

Who may drive a crawl: whoever can read its control token (a file of mode 0600,
:mod:`matter_crawler.extensions.control`), that is the crawl's own user. A web page
in that user's browser must not be able to, so a command needs all of:

- the Host check of every request (:mod:`.hosts`, 421 otherwise);
- ``POST`` (any other method: 405, and an ``OPTIONS`` preflight gets no
  ``Access-Control-*`` header either, so a browser never sends a cross-origin
  request that carries the headers below);
- no ``Origin`` other than this server's own (403), and no ``Sec-Fetch-Site`` other
  than ``same-origin`` or ``none`` (403);
- the custom header ``X-Matter-Control: 1`` (403): a cross-origin form post cannot
  send one;
- ``Authorization: Bearer <token>`` with the crawl's token (401; compared in
  constant time).

``GET /control`` needs no token and shows what ``/status`` could: the state, the
profile and where the token file is (never the token). This module checks requests;
the extension carries the commands out.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Protocol

from twisted.web.resource import Resource
from twisted.web.server import Request

from .resources import apply_headers

logger = logging.getLogger(__name__)

#: The custom header every command must carry (its value: ``1``).
CONTROL_HEADER = b"x-matter-control"
#: The most of a command's body that is read (``{"profile": "balanced"}`` needs 30 bytes).
MAX_BODY = 1024
COMMANDS = ("pause", "resume", "stop", "profile")


class ControlError(Exception):
    """A command that cannot be carried out now (HTTP ``status``, a reason a person can act on)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Controller(Protocol):
    token: str

    def describe(self) -> dict[str, Any]: ...

    def command(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]: ...

    def refused(self, status: int) -> None: ...


def _answer(request: Request, status: int, payload: dict[str, Any]) -> bytes:
    request.setResponseCode(status)
    apply_headers(request, b"application/json")
    return json.dumps(payload, default=str).encode("ascii")


def refusal(request: Request, token: str) -> tuple[int, str] | None:
    """Why a ``POST`` may not drive the crawl (status, reason), or None."""
    host = (request.getHeader(b"host") or b"").decode("latin-1").lower()
    origin = request.getHeader(b"origin")
    if origin is not None and origin.decode("latin-1").lower() != f"http://{host}":
        return 403, "cross-origin request refused"
    site = request.getHeader(b"sec-fetch-site")
    if site is not None and site.decode("latin-1").lower() not in ("same-origin", "none"):
        return 403, "cross-site request refused"
    if request.getHeader(CONTROL_HEADER) != b"1":
        return 403, "the X-Matter-Control: 1 header is required"
    scheme, _, given = (request.getHeader(b"authorization") or b"").decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8"), token.encode("utf-8")
    ):
        return 401, "a valid control token is required (Authorization: Bearer <token>)"
    return None


class ControlResource(Resource):
    """``/control`` (state) and ``/control/<command>`` (commands)."""

    isLeaf = True

    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller

    def render(self, request: Request) -> bytes:
        if request.method not in (b"GET", b"HEAD", b"POST"):
            request.setHeader(b"Allow", b"GET, POST")
            return _answer(request, 405, {"error": "only GET /control and POST commands"})
        return super().render(request)

    def render_GET(self, request: Request) -> bytes:
        if request.postpath not in ([], [b""]):
            request.setHeader(b"Allow", b"POST")
            return _answer(request, 405, {"error": "commands are sent with POST"})
        return _answer(request, 200, self.controller.describe())

    def render_POST(self, request: Request) -> bytes:
        why = refusal(request, self.controller.token)
        if why is not None:
            status, reason = why
            self.controller.refused(status)
            if status == 401:
                request.setHeader(b"WWW-Authenticate", b'Bearer realm="matter-crawler control"')
            return _answer(request, status, {"error": reason})
        name = b"/".join(request.postpath).decode("latin-1")
        if name not in COMMANDS:
            return _answer(request, 404, {"error": f"no command {name!r}: one of {COMMANDS}"})
        body = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(body) > MAX_BODY:
            return _answer(request, 413, {"error": f"a command's body is at most {MAX_BODY} B"})
        try:
            arguments = json.loads(body) if body.strip() else {}
        except ValueError:
            return _answer(request, 400, {"error": "the body must be a JSON object"})
        if not isinstance(arguments, dict):
            return _answer(request, 400, {"error": "the body must be a JSON object"})
        try:
            return _answer(request, 200, self.controller.command(name, arguments))
        except ControlError as error:
            return _answer(request, error.status, {"error": str(error)})
