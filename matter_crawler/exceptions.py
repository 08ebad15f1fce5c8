"""Exceptions matter-crawler components raise."""

from scrapy.exceptions import IgnoreRequest


class DeadLettered(IgnoreRequest):
    """A request failed for good and was put in the dead-letter queue.

    Raised by the classified-retry middleware after the dead letter is sent, so
    the request's errback knows it needs no further reporting.
    """

    def __init__(self, failure_class: str, reason: str) -> None:
        super().__init__(f"{failure_class}: {reason}")
        self.failure_class = failure_class
        self.reason = reason
