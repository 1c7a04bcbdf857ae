"""django-anymail's tracking webhooks, mounted for every ESP it supports.

Each anymail tracking view is wrapped so that one request does one INSERT:
the ``tracking`` signal receiver collects events into a per-request buffer
and the wrapper stores them together. Processing happens later, in batches
(``services.tracking.events_process``), kicked after the request and by beat.

The wrapper answers before anything is read or stored when the ESP is not one
of ``RENOTIFY_WEBHOOK_ESPS`` (404) or the basic-auth credentials are missing
(401, which Amazon SNS needs before it sends them) or wrong (400): anymail runs
an ESP's own checks in class order, and SES parses the body before it checks
credentials. Refusals log one WARNING line, never a traceback (an attacker
controls how many there are). Payloads anymail cannot parse are kept and
answered 200 (an ESP would retry a 4xx/5xx forever); an error in our own
receiver is a 500, so the ESP retries it and the logs show it.
"""

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager
from functools import wraps

from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.signals import tracking
from anymail.utils import get_request_basic_auth
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.urls import URLPattern
from django.utils.crypto import constant_time_compare
from django.views.decorators.csrf import csrf_exempt

from campaigns import enqueue
from campaigns.services.tracking import event_row, events_store, unparsed_store

logger = logging.getLogger(__name__)
_local = threading.local()
UNPARSEABLE = (ValueError, KeyError, TypeError, AttributeError, IndexError)


@contextmanager
def _buffer():
    _local.events = []
    try:
        yield _local.events
    finally:
        _local.events = None


class TrackingReceiverError(RuntimeError):
    """Our receiver failed on an event anymail parsed: our bug, not the ESP's payload."""


@receiver(tracking, dispatch_uid="renotify-tracking")
def tracking_event_received(sender, event, esp_name, **kwargs) -> None:
    """Anymail's signal, once per event: buffer it (or store it, outside a webhook)."""
    try:
        row = event_row(event, esp_name)
    except Exception as error:
        # Re-raised as a type the webhook does not take for a malformed payload.
        raise TrackingReceiverError(f"{esp_name} event: {type(error).__name__}") from error
    buffer: list[dict] | None = getattr(_local, "events", None)
    if buffer is None:
        events_store([row])
    else:
        buffer.append(row)


def _credentials_refusal(request: HttpRequest, esp: str) -> HttpResponse | None:
    """401 without credentials, 400 with wrong ones (none are right while no secret is
    set); None when they match one of ``ANYMAIL["WEBHOOK_SECRET"]`` (rotation)."""
    given = get_request_basic_auth(request)
    if given is None:
        logger.warning("%s webhook: refused, no credentials", esp)
        response = _refused("credentials required", status=401)
        response["WWW-Authenticate"] = 'Basic realm="Renotify ESP webhooks"'
        return response
    allowed = settings.ANYMAIL.get("WEBHOOK_SECRET") or []
    if any(constant_time_compare(given, secret) for secret in allowed):
        return None
    logger.warning("%s webhook: refused, wrong credentials", esp)
    return _refused("bad credentials", status=400)


def _refused(text: str, *, status: int) -> HttpResponse:
    """A refusal already logged once, here: Django's request logger would add a second
    line for every 4xx (it skips responses marked as logged)."""
    response = HttpResponse(text, status=status)
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def stored_once(view: Callable, esp: str, slug: str) -> Callable:
    """Wrap an anymail tracking view: refuse first, then buffer, store in one INSERT,
    and keep what fails to parse."""

    @csrf_exempt
    @wraps(view)
    def webhook(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if slug not in settings.RENOTIFY_WEBHOOK_ESPS:
            return HttpResponseNotFound("this ESP's webhook is not configured")
        if request.method == "POST" and (refusal := _credentials_refusal(request, esp)):
            return refusal
        body = request.body  # read now: a parser may consume the stream
        with _buffer() as events:
            try:
                response = view(request, *args, **kwargs)
            except AnymailWebhookValidationFailure as refused:
                # The ESP's own signature check (e.g. Mailgun's) failed.
                logger.warning("%s webhook: refused, %s", esp, refused)
                return _refused("refused", status=400)
            # Only what a malformed body raises in anymail's parser. A misconfiguration
            # (a missing key or package) or our own receiver's error stays a 500: the
            # ESP retries, and the error shows in the logs.
            except UNPARSEABLE as exc:
                logger.warning("%s webhook: unparseable payload kept (%s)", esp, type(exc).__name__)
                unparsed_store(esp=esp, body=body, problem=f"{type(exc).__name__}: {exc}")
                return HttpResponse("unparseable payload kept", status=200)
            if response.status_code == 200 and events:
                events_store(events)
                enqueue.events_kick()
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
        slug = str(pattern.pattern).split("/", 1)[0]  # as the URL and settings name it
        patterns.append(
            URLPattern(pattern.pattern, stored_once(pattern.callback, esp, slug), name=pattern.name)
        )
    return patterns
