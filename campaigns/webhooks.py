"""django-anymail's tracking webhooks, mounted for every ESP it supports.

Each anymail tracking view is wrapped so that one request does one INSERT:
the ``tracking`` signal receiver collects events into a per-request buffer
and the wrapper stores them together. Processing happens later, in batches
(``services.tracking.events_process``), kicked after the request and by beat.
Payloads anymail cannot parse are kept and answered 200 (an ESP would retry
a 4xx/5xx forever); failed authentication still gets anymail's 400.
"""

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager
from functools import wraps

from anymail.signals import tracking
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.views.decorators.csrf import csrf_exempt

from campaigns.kicks import PerProcessKick
from campaigns.services.tracking import event_row, events_store, unparsed_store

logger = logging.getLogger(__name__)
_local = threading.local()
UNPARSEABLE = (ValueError, KeyError, TypeError, AttributeError, IndexError)

# Kick the processor at most once a second per process: publishing a Celery message
# on every request would cost more than storing the event.
_kicks = PerProcessKick(1.0)


@contextmanager
def _buffer():
    _local.events = []
    try:
        yield _local.events
    finally:
        _local.events = None


@receiver(tracking, dispatch_uid="renotify-tracking")
def tracking_event_received(sender, event, esp_name, **kwargs) -> None:
    """Anymail's signal, once per event: buffer it (or store it, outside a webhook)."""
    row = event_row(event, esp_name)
    buffer: list[dict] | None = getattr(_local, "events", None)
    if buffer is None:
        events_store([row])
    else:
        buffer.append(row)


def _kick_processor() -> None:
    # The events are stored: a broker that is down or hung costs the ESP no error and no
    # wait (campaigns.kicks); beat's sweep processes them.
    transaction.on_commit(_processor_kick, robust=True)


def _processor_kick() -> None:
    from campaigns.tasks import delivery_events_process

    _kicks.kick(delivery_events_process)


def stored_once(view: Callable, esp: str) -> Callable:
    """Wrap an anymail tracking view: buffer, store in one INSERT, keep what fails to parse."""

    @csrf_exempt
    @wraps(view)
    def webhook(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        body = request.body  # read now: a parser may consume the stream
        with _buffer() as events:
            try:
                response = view(request, *args, **kwargs)
            except SuspiciousOperation:
                raise  # bad or missing credentials: anymail's 400, nothing stored
            # Only what a malformed body raises. A misconfiguration (a missing key or
            # package) stays a 500: the ESP retries, and the error shows in the logs.
            except UNPARSEABLE as exc:
                logger.warning("%s webhook: unparseable payload kept (%s)", esp, type(exc).__name__)
                unparsed_store(esp=esp, body=body, problem=f"{type(exc).__name__}: {exc}")
                return HttpResponse("unparseable payload kept", status=200)
            if response.status_code == 200 and events:
                events_store(events)
                _kick_processor()
        return response

    return webhook


def tracking_urlpatterns() -> list[URLPattern]:
    """Every tracking webhook anymail offers, each wrapped by ``stored_once``."""
    # Imported here, for the URLconf only: it loads every ESP's module (boto3 for
    # SES), which commands and workers never need.
    from anymail.urls import urlpatterns as anymail_patterns

    patterns = []
    for pattern in anymail_patterns:
        if not (pattern.name or "").endswith("_tracking_webhook"):
            continue
        esp = pattern.callback.view_class.esp_name  # as the signal names it, e.g. "Postmark"
        patterns.append(
            URLPattern(pattern.pattern, stored_once(pattern.callback, esp), name=pattern.name)
        )
    return patterns
