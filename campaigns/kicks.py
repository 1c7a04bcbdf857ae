"""Kicking a background task from requests without a broker publish per request, and
without a request ever waiting on the broker.

Web requests that leave work for a worker (webhook events to process, receipts to send)
ask for the worker task at most once per interval per process: a publish per request
would cost more than the request's own work. What a throttled request leaves behind is
still picked up, by the next kick or by beat's sweep.

The work itself is already committed (the ledger, the stored events) when a kick is
published, so a kick is only a nudge: it is published on a connection of its own with
short timeouts (``RENOTIFY_KICK_TIMEOUT``) and no retries, and a broker that does not
take it is logged at WARNING and left alone for ``FAILURE_PAUSE`` seconds, in which
this process's requests do not try it at all.
"""

import logging
import time

from celery import Task
from django.conf import settings
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Beat sweeps every 30 s: a pause as long costs nothing the sweep would not catch up.
FAILURE_PAUSE = 30.0
BROKER_ERRORS = (OperationalError, RedisError, OSError)


class PerProcessKick:
    """``due()`` is true at most once per ``seconds`` in this process; ``kick()``
    publishes a task when due, and pauses after the broker failed."""

    def __init__(self, seconds: float, *, pause: float = FAILURE_PAUSE) -> None:
        self.seconds = seconds
        self.pause = pause
        self._last = float("-inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True

    def kick(self, task: Task, *, countdown: float | None = None) -> bool:
        """Publish ``task`` if due; True when the broker took it."""
        if not self.due():
            return False
        if task_publish(task, countdown=countdown):
            return True
        # Not due again until the pause is over.
        self._last = time.monotonic() + self.pause - self.seconds
        return False


def task_publish(task: Task, *, countdown: float | None = None) -> bool:
    """Publish ``task`` with short timeouts and no retries; False (logged) when the
    broker cannot be reached or does not answer in time."""
    timeout = settings.RENOTIFY_KICK_TIMEOUT
    quick = {"socket_connect_timeout": timeout, "socket_timeout": timeout, "max_retries": 0}
    try:
        with task.app.connection_for_write(
            connect_timeout=timeout, transport_options=quick
        ) as connection:
            task.apply_async(countdown=countdown, connection=connection, retry=False)
    except BROKER_ERRORS as exc:
        logger.warning(
            "%s not queued, broker unreachable (%s); beat's sweep will run it",
            task.name,
            type(exc).__name__,
        )
        return False
    return True
