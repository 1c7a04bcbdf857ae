"""Sending webhook deliveries: signed, retried with backoff for 24 hours, then parked.

Each run (``webhook_deliveries_send_due``, a beat task) claims a bounded batch of due
deliveries (row locks with SKIP LOCKED on PostgreSQL, then a lease: ``next_attempt_at``
moves past the run's end, so a worker that dies leaves them due again later), commits,
and only then talks to the network. Each attempt is a ``WebhookAttempt`` row; a 2xx
answer delivers, anything else (another status, a redirect, a timeout, a refused
connection) is retried after ``retry_delay``, until 24 hours after the delivery was
made; the first failure after that parks it.

A dead endpoint cannot hold the worker: every request has short timeouts
(``RENOTIFY_WEBHOOK_TIMEOUT``), an endpoint that fails once in a run gets nothing more
in that run (its other deliveries wait for its retry), and a run starts no request that
could outlast its budget (``RENOTIFY_WEBHOOK_BUDGET``): what is left is due again at
once, for the next run.

The signature (``Renotify-Signature: t=<unix time>,v1=<hex>``) is HMAC-SHA256 with the
endpoint's secret over ``"<t>." + body``: docs/api.md shows how to check it.
"""

import hashlib
import hmac
import http.client
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from api.models import WebhookAttempt, WebhookDelivery, WebhookState
from api.services.webhooks import live_endpoint
from config.fields import clipped

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Renotify-Signature"
EVENT_ID_HEADER = "Renotify-Event-Id"
USER_AGENT = "Renotify-Webhooks/1"
RETRY_WINDOW = timedelta(hours=24)
# Retries wait 30 s, 60 s, 120 s ... at most an hour, each up to a quarter longer at
# random, so that deliveries that failed together do not all come back together.
FIRST_RETRY_SECONDS = 30.0
LONGEST_RETRY_SECONDS = 3600.0
JITTER = 0.25
# Deliveries claimed per run, and attempts recorded per commit (a worker that dies
# leaves at most these unrecorded: their deliveries are sent again after the lease).
SEND_BATCH = 100
RECORD_EVERY = 25
# An answer's body is read this far at most (only its status counts).
ANSWER_READ_BYTES = 1024
# A claimed delivery is due again this long after its run's budget, in case the worker
# died while sending it.
LEASE_MARGIN = timedelta(minutes=1)
# Network errors, timeouts and refusals are OSErrors (URLError, socket.timeout); a
# malformed answer is an HTTPException; a URL urllib cannot use, a ValueError.
SEND_ERRORS = (OSError, http.client.HTTPException, ValueError)

_jitter = secrets.SystemRandom()


def webhook_body(payload: dict[str, Any]) -> bytes:
    """The bytes sent (and signed) for a delivery's payload."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The ``Renotify-Signature`` header's value for ``body`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def retry_delay(attempts: int) -> float:
    """Seconds to wait after a delivery's ``attempts``-th failed attempt."""
    base = min(FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1), LONGEST_RETRY_SECONDS)
    return base * (1 + _jitter.uniform(0, JITTER))


@dataclass
class SendRun:
    """What one run did, by count."""

    delivered: int = 0
    failed: int = 0
    parked: int = 0
    postponed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    """How an endpoint answered one attempt."""

    status_code: int | None
    error: str = ""
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class _Outcome:
    """One attempt, as it will be recorded: the delivery's new state and next try."""

    delivery: WebhookDelivery
    answer: Answer
    at: datetime
    state: WebhookState
    retry_at: datetime | None  # pending: when it is due again

    @classmethod
    def of(cls, delivery: WebhookDelivery, answer: Answer, at: datetime) -> "_Outcome":
        deadline = delivery.created_at + RETRY_WINDOW
        if answer.ok:
            return cls(delivery, answer, at, WebhookState.DELIVERED, None)
        if at >= deadline:
            return cls(delivery, answer, at, WebhookState.PARKED, None)
        retry_at = min(at + timedelta(seconds=retry_delay(delivery.attempts + 1)), deadline)
        return cls(delivery, answer, at, WebhookState.PENDING, retry_at)

    def changes(self) -> dict[str, Any]:
        """The delivery's fields after this attempt."""
        changes: dict[str, Any] = {"state": self.state, "attempts": F("attempts") + 1}
        if self.state == WebhookState.DELIVERED:
            changes["delivered_at"] = self.at
        if self.retry_at is not None:
            changes["next_attempt_at"] = self.retry_at
        return changes


@dataclass
class _Pass:
    """A run's attempts not yet recorded, and the claimed deliveries it leaves
    unsent, by when each is due again. Written together, a few attempts at a time: a
    commit per attempt would cost more than the attempt."""

    run: SendRun = field(default_factory=SendRun)
    outcomes: list[_Outcome] = field(default_factory=list)
    postponed: dict[datetime, list[int]] = field(default_factory=lambda: defaultdict(list))

    def attempted(self, outcome: _Outcome) -> None:
        self.outcomes.append(outcome)
        if len(self.outcomes) >= RECORD_EVERY:
            self.record()

    def postpone(self, delivery_id: int, until: datetime) -> None:
        self.postponed[until].append(delivery_id)

    def record(self) -> None:
        if not self.outcomes and not self.postponed:
            return
        with transaction.atomic():
            WebhookAttempt.objects.bulk_create(_attempt_row(o) for o in self.outcomes)
            for outcome in self.outcomes:
                WebhookDelivery.objects.filter(
                    pk=outcome.delivery.pk, state=WebhookState.PENDING
                ).update(**outcome.changes())
                self._count(outcome)
            for until, ids in self.postponed.items():
                WebhookDelivery.objects.filter(pk__in=ids, state=WebhookState.PENDING).update(
                    next_attempt_at=until
                )
                self.run.postponed += len(ids)
        self.outcomes, self.postponed = [], defaultdict(list)

    def _count(self, outcome: _Outcome) -> None:
        if outcome.state == WebhookState.DELIVERED:
            self.run.delivered += 1
        elif outcome.state == WebhookState.PARKED:
            self.run.parked += 1
            logger.warning(
                "webhook delivery %s to endpoint %s parked after %s attempts",
                outcome.delivery.pk,
                outcome.delivery.endpoint_id,
                outcome.delivery.attempts + 1,
            )
        else:
            self.run.failed += 1


def webhook_deliveries_send_due(*, limit: int = SEND_BATCH) -> SendRun:
    """Send up to ``limit`` due deliveries within the run's budget (see the module
    docstring); what was done."""
    budget, timeout = settings.RENOTIFY_WEBHOOK_BUDGET, settings.RENOTIFY_WEBHOOK_TIMEOUT
    started = time.monotonic()
    claimed = _claim(limit, lease_until=timezone.now() + _lease(budget, timeout))
    this = _Pass()
    failing: dict[int, datetime] = {}  # endpoint id -> when it is tried again
    for index, delivery in enumerate(claimed):
        if delivery.endpoint_id in failing:
            this.postpone(delivery.pk, failing[delivery.endpoint_id])
            continue
        if index and time.monotonic() - started + 2 * timeout > budget:
            this.postpone(delivery.pk, timezone.now())
            continue
        outcome = _Outcome.of(delivery, _post(delivery), timezone.now())
        this.attempted(outcome)
        if outcome.state != WebhookState.DELIVERED:
            failing[delivery.endpoint_id] = outcome.retry_at or outcome.at + timedelta(
                seconds=FIRST_RETRY_SECONDS
            )
    this.record()
    if claimed:
        logger.info("webhook deliveries: %s", this.run.as_dict())
    return this.run


def _lease(budget: float, timeout: float) -> timedelta:
    return timedelta(seconds=budget + 2 * timeout) + LEASE_MARGIN


def _claim(limit: int, *, lease_until: datetime) -> list[WebhookDelivery]:
    """Due deliveries to live endpoints, oldest due first, leased until
    ``lease_until``; another run at the same moment skips them."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(live_endpoint("endpoint__"), state=WebhookState.PENDING)
            .filter(next_attempt_at__lte=now)
            .order_by("next_attempt_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        WebhookDelivery.objects.filter(pk__in=ids).update(next_attempt_at=lease_until)
    found = WebhookDelivery.objects.select_related("endpoint").in_bulk(ids)
    return [found[pk] for pk in ids]


def _attempt_row(outcome: _Outcome) -> WebhookAttempt:
    return WebhookAttempt(
        delivery=outcome.delivery,
        attempted_at=outcome.at,
        status_code=outcome.answer.status_code,
        error=clipped(WebhookAttempt, "error", outcome.answer.error),
        duration_ms=outcome.answer.duration_ms,
    )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other non-2xx: the signed event is not sent on
    to a URL nobody registered."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _post(delivery: WebhookDelivery) -> Answer:
    body = webhook_body(delivery.payload)
    request = urllib.request.Request(
        delivery.endpoint.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_ID_HEADER: delivery.payload["id"],
            SIGNATURE_HEADER: webhook_signature(
                secret=delivery.endpoint.secret, timestamp=int(time.time()), body=body
            ),
        },
    )
    started = time.monotonic()
    try:
        with _opener.open(request, timeout=settings.RENOTIFY_WEBHOOK_TIMEOUT) as response:
            response.read(ANSWER_READ_BYTES)
            status, error = response.status, ""
    except urllib.error.HTTPError as refused:
        refused.close()
        status, error = refused.code, ""
    except SEND_ERRORS as failure:
        # The error's kind and text, never the URL (it may carry a token).
        status, error = None, f"{type(failure).__name__}: {failure}"
    return Answer(status, error, duration_ms=round((time.monotonic() - started) * 1000))
