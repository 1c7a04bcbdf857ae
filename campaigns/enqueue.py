"""Publishing Celery tasks: the one module that does, always after the commit.

Services, tasks and views say what they want done; this module publishes the task by
its name once the current transaction commits (at once outside a transaction), so a
worker never looks for rows that are not committed yet and a rolled-back change asks
for nothing. It imports no services and no tasks: tasks call services, and services
ask for work through here, so neither needs the other.

Two kinds of publishing:

- The engine's own work (sender chains, fan-outs) goes through the app's normal
  connection with Celery's usual retries: it is asked for by workers and staff, who
  can wait for a broker.
- Nudges from requests (receipts to send after an objection, ESP events to process
  after a webhook) are *kicks*: at most one per interval per process, because a
  publish per request would cost more than the request's own work. The work itself is
  already committed (the ledger, the stored events), so a kick is published on a
  connection of its own with short timeouts (``RENOTIFY_KICK_TIMEOUT``) and no retries;
  a broker that does not take it is logged at WARNING and left alone for
  ``FAILURE_PAUSE`` seconds, in which this process's requests do not try it at all.
  Beat's sweeps pick up whatever a kick did not.
"""

import logging
import time
from functools import partial

from amqp.exceptions import AMQPError
from celery import current_app
from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# The tasks, by name (campaigns.tasks defines them).
CAMPAIGN_SEND = "campaigns.tasks.campaign_send"
CAMPAIGN_FAN_OUT = "campaigns.tasks.campaign_fan_out_task"
RECEIPTS_SEND = "campaigns.tasks.objection_receipts_send_task"
EVENTS_PROCESS = "campaigns.tasks.delivery_events_process"
EVIDENCE_PACK_BUILD = "evidence.tasks.evidence_pack_build_task"

# A process kicks each task at most once this often. A receipt sender and an event
# processor also run this long after their kick, so everything this process commits
# until its next kick is in before they run: without it, the events a process stores in
# the second after its last kick of a stream waited for beat's sweep (up to 30 s).
KICK_SECONDS = 1.0
# As long as beat's sweeps are apart: a pause costs nothing the sweep would not catch up.
FAILURE_PAUSE = settings.RENOTIFY_SWEEP_SECONDS
# What a broker that is down, refuses or does not answer raises: Redis's and RabbitMQ's
# client errors (a wrong vhost or credentials is an AMQPError), sockets' timeouts.
BROKER_ERRORS = (OperationalError, RedisError, AMQPError, OSError)


def task_publish(name: str, *, args: tuple = (), countdown: float | None = None) -> None:
    """Publish task ``name`` now, on the app's connection (the building block; callers
    outside this module use the functions below, which wait for the commit)."""
    current_app.send_task(name, args=args, countdown=countdown)


def sender_chains_start(campaign_id: int, chains: list[tuple[int, str]]) -> None:
    """The first link of each ``(slot, chain)`` once the transaction commits (the chains
    are taken by ``campaigns.services.senders.senders_start``)."""
    for slot, chain in chains:
        transaction.on_commit(partial(task_publish, CAMPAIGN_SEND, args=(campaign_id, slot, chain)))


def sender_continue(campaign_id: int, slot: int, chain: str, *, countdown: float) -> None:
    """A sender chain's next link, ``countdown`` seconds from now."""
    transaction.on_commit(
        lambda: task_publish(CAMPAIGN_SEND, args=(campaign_id, slot, chain), countdown=countdown)
    )


def fan_out_start(campaign_id: int) -> None:
    """Fan a campaign out (create its deliveries) once the transaction commits."""
    transaction.on_commit(lambda: task_publish(CAMPAIGN_FAN_OUT, args=(campaign_id,)))


def events_continue() -> None:
    """The ESP event processor again, once the transaction commits: a run stopped on its
    time budget with events left (the engine's own work: no kick throttle)."""
    transaction.on_commit(lambda: task_publish(EVENTS_PROCESS))


def evidence_pack_build_start(pack_id: int) -> None:
    """Build an evidence pack once the transaction that asked for it commits."""
    transaction.on_commit(lambda: task_publish(EVIDENCE_PACK_BUILD, args=(pack_id,)))


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

    def kick(self, name: str, *, countdown: float | None = None) -> bool:
        """Publish task ``name`` if due; True when the broker took it."""
        if not self.due():
            return False
        if quick_publish(name, countdown=countdown):
            return True
        # Not due again until the pause is over.
        self._last = time.monotonic() + self.pause - self.seconds
        return False


def quick_publish(name: str, *, countdown: float | None = None) -> bool:
    """Publish task ``name`` with short timeouts and no retries; False (logged) when
    the broker cannot be reached or does not answer in time."""
    timeout = settings.RENOTIFY_KICK_TIMEOUT
    # Each transport reads its own names and ignores the others': redis-py's socket
    # timeouts, py-amqp's read and write timeouts (its connect timeout is the argument).
    quick = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "read_timeout": timeout,
        "write_timeout": timeout,
        "max_retries": 0,
    }
    try:
        with current_app.connection_for_write(
            connect_timeout=timeout, transport_options=quick
        ) as connection:
            current_app.send_task(name, countdown=countdown, connection=connection, retry=False)
    except BROKER_ERRORS as exc:
        logger.warning(
            "%s not queued, broker unreachable (%s); beat's sweep will run it",
            name,
            type(exc).__name__,
        )
        return False
    return True


receipts_kicks = PerProcessKick(KICK_SECONDS)
events_kicks = PerProcessKick(KICK_SECONDS)


def receipts_kick() -> None:
    """Once the transaction commits, ask for a receipt sender (throttled per process)."""
    transaction.on_commit(
        lambda: receipts_kicks.kick(RECEIPTS_SEND, countdown=KICK_SECONDS), robust=True
    )


def events_kick() -> None:
    """Once the transaction commits, ask for the ESP event processor (throttled)."""
    transaction.on_commit(
        lambda: events_kicks.kick(EVENTS_PROCESS, countdown=KICK_SECONDS), robust=True
    )
