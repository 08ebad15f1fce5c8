"""A Downloader whose per-slot concurrency holds.

Scrapy 2.14 to 2.19 let one domain reach ``CONCURRENT_REQUESTS`` open requests
whatever ``CONCURRENT_REQUESTS_PER_DOMAIN`` says when ``DOWNLOAD_DELAY`` is 0
(scrapy#6982): ``Downloader._process_queue`` pops the slot queue in a loop
while ``free_transfer_slots()`` > 0, but a popped request only enters
``slot.transferring`` once its scheduled coroutine starts running, so the
loop never sees the slot fill up. Counting the request as transferring at the
moment it is popped restores the limit; ``_download`` adds it again (a set, so
a no-op) and removes it when the transfer ends, as before.

Enable with ``DOWNLOADER = "matter_crawler.downloader.SlotConcurrencyDownloader"``
(the project's default). ``tests/test_downloader.py`` checks the limit from the
simulated site's side (its highest number of requests open at once).
"""

from __future__ import annotations

from time import monotonic

from scrapy.core.downloader import Downloader, Slot
from scrapy.utils.asyncio import call_later
from scrapy.utils.defer import _schedule_coro


class SlotConcurrencyDownloader(Downloader):
    """Scrapy's Downloader with the slot's transfer count taken when a request is popped."""

    def _process_queue(self, slot: Slot) -> None:
        if slot.latercall:
            return  # a delayed call will process the queue
        now = monotonic()
        delay = slot.download_delay()
        if delay:
            penalty = delay - now + slot.lastseen
            if penalty > 0:
                slot.latercall = call_later(penalty, self._latercall, slot)
                return

        while slot.queue and slot.free_transfer_slots() > 0:
            slot.lastseen = now
            request, queue_dfd = slot.queue.popleft()
            slot.transferring.add(request)  # the fix: count it before its coroutine runs
            _schedule_coro(self._wait_for_download(slot, request, queue_dfd))
            if delay:
                # one request per delay period: the latercall set above paces the rest
                self._process_queue(slot)
                break
