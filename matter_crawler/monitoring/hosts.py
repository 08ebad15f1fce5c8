"""Which ``Host`` headers the monitoring server answers to: its defence against DNS rebinding.

A web page whose host name is made to resolve to 127.0.0.1 would let the browser
read the live page and ``/status``; so every request must name this server in its
``Host`` header: ``127.0.0.1``, ``localhost``, ``[::1]``, ``MONITORING_HOST``, the
address the connection arrived on, or a name in ``MONITORING_ALLOWED_HOSTS``; with
this server's port. Anything else gets 421 Misdirected Request
(:class:`~matter_crawler.monitoring.resources.MisdirectedResource`). Prometheus
sends the target's address (``127.0.0.1:<port>`` from the service-discovery file),
so it passes. When bound to all interfaces (``0.0.0.0``) the machine's host names,
the one the service-discovery entry carries included, are accepted too.
"""

from __future__ import annotations

import socket

#: Names of this machine every server answers to (with its own port).
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def host_name(host: str) -> str:
    """A host as it appears in a URL or a Host header: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_host_names(host: str, extra: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """The names a server bound to ``host`` answers to (lower case, without a port)."""
    names = set(LOOPBACK_NAMES)
    if host in WILDCARD_HOSTS:
        names.update({socket.getfqdn(), socket.gethostname()})
    else:
        names.add(host_name(host))
    names.update(host_name(name.strip()) for name in extra if name.strip())
    return frozenset(name.lower().rstrip(".") for name in names)


def split_authority(authority: str) -> tuple[str, int | None]:
    """``"Host:port"`` -> ("host", port); ("host", None) without a port; ("", None) if bad."""
    text = authority.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return "", None
        name, rest = text[: end + 1], text[end + 1 :]
    else:
        name, colon, port = text.partition(":")
        rest = colon + port
    if not rest:
        return name.rstrip("."), None
    if not rest.startswith(":") or not rest[1:].isdigit():
        return "", None
    return name.rstrip("."), int(rest[1:])


def host_allowed(
    header: bytes | None, local_host: str, local_port: int, allowed: frozenset[str]
) -> bool:
    """Whether a request's ``Host`` header names this server (arrived on ``local_host:port``)."""
    if header is None:
        return False
    name, port = split_authority(header.decode("latin-1"))
    if port is None:
        port = 80
    return port == local_port and (name in allowed or name == host_name(local_host).lower())
