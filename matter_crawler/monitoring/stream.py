"""``/events``: the event hub's snapshots and task events as Server-Sent Events.

At most ``MONITORING_MAX_CLIENTS`` streams (more get ``503`` with
``Retry-After``). A stream is written only while its client reads (it is a push
producer of its connection): while the client does not, events wait in the
stream's own queue, and a client whose queue passes ``MONITORING_CLIENT_BUFFER``
bytes, or that has not taken anything for ``MONITORING_IDLE_TIMEOUT`` seconds, is
dropped. A browser's ``EventSource`` reconnects by itself and starts again from
the latest snapshot (:class:`~matter_crawler.monitoring.events.EventHub`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from scrapy.utils.asyncio import CallLaterResult, call_later, create_looping_call
from twisted.internet.interfaces import IPushProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from .connections import ServerLimits
from .events import EventHub
from .resources import apply_headers

logger = logging.getLogger(__name__)


@implementer(IPushProducer)
class EventStream:
    """One ``/events`` client: written while its connection takes data, queued (bounded) if not.

    Registered as the request's streaming producer, so Twisted pauses it when
    the connection's send buffer fills (the client is not reading) and resumes
    it when the buffer drains. While paused, events wait here; past
    ``limits.client_buffer`` bytes, or after ``limits.idle_timeout`` seconds
    without the client taking anything, the client is dropped: its connection
    is aborted and whatever was waiting is freed.
    """

    def __init__(
        self, request: Request, limits: ServerLimits, gone: Callable[[EventStream], None]
    ) -> None:
        self.request = request
        self.limits = limits
        self.gone = gone
        self.paused = False
        self.closed = False
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self._stall_timer: CallLaterResult | None = None

    def send(self, kind: str, data: str) -> None:
        """An event (the hub's subscriber callback)."""
        self.write(f"event: {kind}\ndata: {data}\n\n".encode("ascii"))

    def write(self, chunk: bytes) -> None:
        if self.closed:
            return
        if not self.paused:
            self.request.write(chunk)  # may pause us, synchronously
            return
        self.queue.append(chunk)
        self.queued += len(chunk)
        if self.limits.client_buffer and self.queued > self.limits.client_buffer:
            self.drop(f"more than {self.limits.client_buffer} bytes of events unread")

    # -- IPushProducer: called by the connection ----------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True
        if self._stall_timer is None and self.limits.idle_timeout:
            self._stall_timer = call_later(
                self.limits.idle_timeout,
                self.drop,
                f"nothing read for {self.limits.idle_timeout:g} s",
            )

    def resumeProducing(self) -> None:
        self.paused = False
        self._cancel_timer()
        while self.queue and not self.paused and not self.closed:
            chunk = self.queue.popleft()
            self.queued -= len(chunk)
            self.request.write(chunk)

    def stopProducing(self) -> None:
        self._release()

    # -- ending ---------------------------------------------------------------------------

    def drop(self, reason: str) -> None:
        """Abort a client that does not keep up; its queue is freed at once."""
        if self.closed:
            return
        logger.info("Dropping an /events client (%s): %s", self.peer(), reason)
        self._release()
        transport = self.request.channel.transport if self.request.channel else None
        if transport is not None:
            transport.abortConnection()

    def finish(self) -> None:
        """End the stream at shutdown (a client that is not reading is aborted, not waited for)."""
        if self.closed:
            return
        stalled = self.paused or bool(self.queue)
        self._release()
        if stalled:
            transport = self.request.channel.transport if self.request.channel else None
            if transport is not None:
                transport.abortConnection()
        elif not self.request.finished and not getattr(self.request, "_disconnected", False):
            self.request.unregisterProducer()
            self.request.finish()

    def peer(self) -> str:
        address = self.request.getClientAddress()
        return f"{getattr(address, 'host', '?')}:{getattr(address, 'port', '?')}"

    def _release(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_timer()
        self.queue.clear()
        self.queued = 0
        self.gone(self)

    def _cancel_timer(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None


class EventsResource(Resource):
    """Server-Sent Events: the hub's snapshots and task events, live, to a few clients."""

    isLeaf = True
    KEEPALIVE_SECONDS = 15.0
    RETRY_AFTER_SECONDS = 10

    def __init__(self, hub: EventHub, limits: ServerLimits) -> None:
        super().__init__()
        self.hub = hub
        self.limits = limits
        self.clients: dict[Request, EventStream] = {}
        self._keepalive: Any = None

    def render_GET(self, request: Request) -> Any:
        if self.limits.max_clients and len(self.clients) >= self.limits.max_clients:
            return self._refuse(request)
        apply_headers(request, b"text/event-stream; charset=utf-8")
        request.setHeader(b"X-Accel-Buffering", b"no")
        stream = EventStream(request, self.limits, self._gone)
        self.clients[request] = stream
        request.registerProducer(stream, True)
        request.notifyFinish().addBoth(lambda _: stream.stopProducing())
        stream.write(b"retry: 2000\n\n")
        self.hub.subscribe(stream.send)  # sends the latest snapshot and recent tasks first
        if stream.closed:  # dropped already: it could not take even those
            self.hub.unsubscribe(stream.send)
        if self._keepalive is None:
            self._keepalive = create_looping_call(self._ping)
            self._keepalive.start(self.KEEPALIVE_SECONDS, now=False)
        return NOT_DONE_YET

    def _refuse(self, request: Request) -> bytes:
        request.setResponseCode(503, b"Service Unavailable")
        apply_headers(request, b"text/plain; charset=utf-8")
        request.setHeader(b"Retry-After", str(self.RETRY_AFTER_SECONDS).encode("ascii"))
        # and the connection is closed once answered: a refused client holds no descriptor
        request.setHeader(b"Connection", b"close")
        channel = request.channel
        request.notifyFinish().addBoth(lambda _: channel.loseConnection())
        return (
            f"Too many live clients ({self.limits.max_clients}, MONITORING_MAX_CLIENTS): "
            f"try again in {self.RETRY_AFTER_SECONDS} s.\n"
        ).encode("ascii")

    def _ping(self) -> None:
        for stream in list(self.clients.values()):
            stream.write(b": keep-alive\n\n")

    def _gone(self, stream: EventStream) -> None:
        self.clients.pop(stream.request, None)
        self.hub.unsubscribe(stream.send)

    def close(self) -> None:
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        self._keepalive = None
        for stream in list(self.clients.values()):
            stream.finish()
