"""The ``/__sim__/`` control API: ground truth, mutations, faults and the account.

Only loopback clients may use it: it can switch the whole site into an outage
or rewrite its catalogue, which nobody on the network should be able to do.
"""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING, Any, Protocol

from twisted.web.http import Request

from . import hostile, hostile_parsing, truth
from .catalogue import CatalogueError
from .dcl import crosscheck_json, ledger_json
from .mutations import TRIGGERS

if TYPE_CHECKING:
    from .cassettes import Recording
    from .catalogue import Catalogue
    from .config import Settings
    from .mutations import MutationSchedule
    from .stats import Stats

JSON = b"application/json; charset=utf-8"
NDJSON = b"application/x-ndjson; charset=utf-8"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a client's IP address text) is a loopback address.

    IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) count as their IPv4
    address; anything that is not an IP address (a UNIX socket...) does not.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class ApiError(Exception):
    """An API request that fails with ``status`` and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ControlledSite(Protocol):
    """What the API reads and changes of the running site (server.SimServer).

    Spelled out here so that the API does not import the server that serves it.
    """

    recording: Recording | None
    catalogue: Catalogue
    settings: Settings
    outage_window: tuple[float, float] | None
    mutations: MutationSchedule
    stats: Stats

    def update_settings(self, changes: dict[str, Any]) -> None: ...

    def reset_account(self) -> None: ...


class SimApi:
    """Handlers of the control endpoints (never counted in the account)."""

    def __init__(self, sim: ControlledSite) -> None:
        self.sim = sim
        self._routes = {
            "/__sim__/truth": {b"GET": self.get_truth},
            "/__sim__/crosscheck": {b"GET": self.get_crosscheck},
            "/__sim__/dcl": {b"GET": self.get_dcl},
            "/__sim__/hostile": {b"GET": self.get_hostile},
            "/__sim__/faults": {b"GET": self.get_faults, b"POST": self.post_faults},
            "/__sim__/mutate": {b"POST": self.post_mutate},
            "/__sim__/mutations": {b"GET": self.get_mutations},
            "/__sim__/removed": {b"GET": self.get_removed},
            "/__sim__/stats": {b"GET": self.get_stats},
            "/__sim__/stats/reset": {b"POST": self.post_stats_reset},
            "/__sim__/requests": {b"GET": self.get_requests},
        }

    def render(self, request: Request) -> bytes:
        """Answer one control request synchronously."""
        client = request.getClientAddress()
        try:
            if not is_loopback(getattr(client, "host", "")):
                raise ApiError(403, "the /__sim__/ API answers loopback clients only")
            path = request.path.decode("utf-8", "replace").rstrip("/")
            methods = self._routes.get(path)
            if methods is None:
                raise ApiError(404, f"no such endpoint: {path}")
            handler = methods.get(request.method)
            if handler is None:
                request.setHeader(b"allow", b", ".join(methods))
                raise ApiError(405, f"{request.method.decode()} not allowed on {path}")
            content_type, body = handler(request)
        except ApiError as error:
            request.setResponseCode(error.status)
            content_type, body = JSON, _json({"error": str(error)})
        request.setHeader(b"content-type", content_type)
        request.setHeader(b"cache-control", b"no-store")
        return body

    # --- endpoints ----------------------------------------------------------

    def get_truth(self, _request: Request) -> tuple[bytes, bytes]:
        """The current ground truth as JSON lines, newest first.

        With ``--cassettes``: the product records of the recording's reviewed
        expectations file.
        """
        if self.sim.recording is not None:
            return NDJSON, "".join(self.sim.recording.truth_lines()).encode()
        lines = truth.json_lines(self.sim.catalogue, self.sim.settings.variant_rate)
        return NDJSON, "".join(lines).encode()

    def get_crosscheck(self, _request: Request) -> tuple[bytes, bytes]:
        """The cross-check's expected findings (``--dcl``; see dcl/crosscheck.py)."""
        gateway = self.sim.dcl
        if gateway is None:
            raise ApiError(404, "no simulated DCL: start the site with --dcl")
        if self.sim.catalogue.mutations != gateway.ledger.mutations:
            raise ApiError(409, "the catalogue changed since the ledger was built")
        return JSON, _json(crosscheck_json(gateway.ledger))

    def get_dcl(self, _request: Request) -> tuple[bytes, bytes]:
        """Every record of the simulated ledger, as served (``--dcl``; see dcl/truth.py)."""
        gateway = self.sim.dcl
        if gateway is None:
            raise ApiError(404, "no simulated DCL: start the site with --dcl")
        return JSON, _json(ledger_json(gateway.ledger))

    def get_hostile(self, _request: Request) -> tuple[bytes, bytes]:
        """The hostile products (``--hostile``, ``--hostile-parsing``) and what a correct
        crawler does with each."""
        catalogue = self.sim.catalogue
        described = hostile.describe(catalogue.hostile)
        described += hostile_parsing.describe(catalogue.hostile_parsing)
        return JSON, _json(described)

    def get_faults(self, _request: Request) -> tuple[bytes, bytes]:
        """The options in force, with the absolute outage window (epoch seconds)."""
        data = self.sim.settings.as_json()
        window = self.sim.outage_window
        data["outage_window"] = None if window is None else {"start": window[0], "end": window[1]}
        return JSON, _json(data)

    def post_faults(self, request: Request) -> tuple[bytes, bytes]:
        """Change options; answers with the full configuration now in force."""
        try:
            self.sim.update_settings(_body(request))
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        return self.get_faults(request)

    def post_mutate(self, request: Request) -> tuple[bytes, bytes]:
        """Add, remove and change products (see Catalogue.mutate), now or at a trigger.

        With ``after_requests`` or ``after_list_page`` the mutation waits for that
        moment of a crawl (see mutations.py) and the answer is ``{"scheduled": {...}}``.
        """
        body = _body(request)
        if self.sim.recording is not None:
            raise ApiError(400, "a recorded catalogue (--cassettes) cannot be mutated")
        unknown = set(body) - {"add", "remove", "change", *TRIGGERS}
        if unknown:
            raise ApiError(400, f"unknown keys: {', '.join(sorted(unknown))}")
        triggers = [name for name in TRIGGERS if name in body]
        if len(triggers) > 1:
            raise ApiError(400, "give at most one of after_requests and after_list_page")
        changes = {name: body[name] for name in ("add", "remove", "change") if name in body}
        try:
            if triggers:
                trigger = triggers[0]
                scheduled = self.sim.mutations.schedule(changes, trigger, body[trigger])
                return JSON, _json({"scheduled": scheduled})
            result = self.sim.catalogue.mutate(**changes)
        except CatalogueError as error:
            raise ApiError(400, str(error)) from None
        return JSON, _json(
            {"added": result.added, "removed": result.removed, "changed": result.changed}
        )

    def get_mutations(self, _request: Request) -> tuple[bytes, bytes]:
        """Scheduled mutations still waiting, and those applied with what they did."""
        return JSON, _json(self.sim.mutations.describe())

    def get_removed(self, _request: Request) -> tuple[bytes, bytes]:
        """The products mutations removed, as JSON lines of their truth when removed."""
        if self.sim.recording is not None:
            return NDJSON, b""
        lines = truth.removed_json_lines(self.sim.catalogue, self.sim.settings.variant_rate)
        return NDJSON, "".join(lines).encode()

    def get_stats(self, _request: Request) -> tuple[bytes, bytes]:
        """The account since start or the last reset."""
        return JSON, _json(self.sim.stats.snapshot())

    def post_stats_reset(self, _request: Request) -> tuple[bytes, bytes]:
        """Zero the account, the request log and the per-path fault sequences."""
        self.sim.reset_account()
        return JSON, _json(self.sim.stats.snapshot())

    def get_requests(self, request: Request) -> tuple[bytes, bytes]:
        """The request log, optionally only requests that arrived at or after ``since``."""
        since = request.args.get(b"since")
        try:
            after = float(since[0]) if since else None
        except ValueError:
            raise ApiError(400, "since must be an epoch time in seconds") from None
        return JSON, _json(self.sim.stats.requests(after))


def _body(request: Request) -> dict[str, Any]:
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ApiError(400, "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()
