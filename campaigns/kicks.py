"""Kicking a background task from requests without a broker publish per request.

Web requests that leave work for a worker (webhook events to process, receipts to send)
ask for the worker task at most once per interval per process: a publish per request
would cost more than the request's own work. What a throttled request leaves behind is
still picked up, by the next kick or by beat's sweep.
"""

import time


class PerProcessKick:
    """``due()`` is true at most once per ``seconds`` in this process."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = float("-inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True
