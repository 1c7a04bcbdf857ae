"""Outbound webhooks: the endpoints staff register, the deliveries the ledger makes
for them, and replaying one.

Events come from the consent ledger, never from a request: ``webhook_events_dispatch``
follows the ledger by ``seq`` (the ``LedgerFollower`` row "webhooks") and makes one
``WebhookDelivery`` per event of interest and active endpoint, in the transaction that
moves the follower on. So the pages and the API do nothing extra, and a process that
dies half-way leaves either everything or nothing of its batch. The ledger appends in
``seq`` order, each event committed before the next is written, so no event can appear
behind the follower later.

Invariants:

- one delivery per (endpoint, event): the unique constraint, so two dispatchers at
  once, or one run twice, make no duplicates (the follower row is also locked);
- an endpoint gets the events after the ledger's head at its creation (``after_seq``),
  never the history before it;
- a payload names the member by external id only: no address, IP or comment.

Sending (signing, retries, parking) is ``api.services.webhook_sending``.
"""

import secrets
import urllib.parse
from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from accounts.models import Action, ConsentEvent
from accounts.permissions import permission_require
from api.models import (
    ApiClient,
    LedgerFollower,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookState,
)
from api.services.clients import MANAGE
from audit.models import Action as StaffAct
from audit.services import staff_action_record

REPLAY = "api.replay_webhookdelivery"
FOLLOWER = "webhooks"
SECRET_START = "whsec_"
# Ledger events read per dispatch transaction.
DISPATCH_BATCH = 500
# Plain http would let anyone on the path read and answer for the endpoint; it is
# allowed to this host only (a local relay, tests).
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

# The ledger's actions a webhook is sent for, and the event type each becomes;
# acknowledgements and notices served are evidence, not changes a platform acts on.
EVENT_TYPES: dict[str, str] = {
    Action.OBJECT: "preference.changed",
    Action.WITHDRAW_OBJECTION: "preference.changed",
    Action.OPT_IN: "preference.changed",
    Action.UNSUBSCRIBE: "member.unsubscribed",
    Action.ERASE: "member.erased",
}


def live_endpoint(prefix: str = "") -> Q:
    """Endpoints that are told anything (``prefix``: the path to one, e.g. "endpoint__"):
    active, of a client that is not revoked (a revoked client is a system switched off,
    or one whose key leaked: its URLs hear nothing more of members either)."""
    return Q(**{f"{prefix}active": True, f"{prefix}client__revoked_at__isnull": True})


class EndpointRefused(ValueError):
    """The URL cannot be an endpoint (not https, no host): nothing is made."""


def webhook_endpoint_create(
    *, client: ApiClient, url: str, by: User | None
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint of ``client``'s, told of the events after the ledger's head as it
    stands now, and its signing secret (shown once, to whoever made it)."""
    permission_require(by=by, perm=MANAGE)
    webhook_url_check(url)
    secret = f"{SECRET_START}{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            client=client, url=url, secret=secret, after_seq=_ledger_head(), created_by=by
        )
        if by is not None:  # never the secret
            detail = {"client": client, "client_id": client.pk, "url": url}
            staff_action_record(
                by=by, action=StaffAct.WEBHOOK_ENDPOINT_CREATE, target=endpoint, detail=detail
            )
    return endpoint, secret


def webhook_endpoint_deactivate(*, endpoint: WebhookEndpoint, by: User | None) -> bool:
    """Stop telling ``endpoint`` anything, pending deliveries included. False if it
    already was inactive."""
    permission_require(by=by, perm=MANAGE)
    with transaction.atomic():
        done = bool(
            WebhookEndpoint.objects.filter(pk=endpoint.pk, active=True).update(active=False)
        )
        if done and by is not None:
            staff_action_record(by=by, action=StaffAct.WEBHOOK_ENDPOINT_DEACTIVATE, target=endpoint)
    return done


def webhook_deliveries_replay(*, deliveries: QuerySet[WebhookDelivery], by: User | None) -> int:
    """Send the parked or delivered ones among ``deliveries`` again, now; how many.

    A replay gets one attempt: if it fails, the delivery's 24 hours are long over and
    it is parked again (replay once the endpoint answers)."""
    permission_require(by=by, perm=REPLAY)
    with transaction.atomic():
        count = deliveries.filter(state__in=[WebhookState.PARKED, WebhookState.DELIVERED]).update(
            state=WebhookState.PENDING, next_attempt_at=timezone.now()
        )
        if by is not None:
            staff_action_record(by=by, action=StaffAct.WEBHOOK_REPLAY, detail={"deliveries": count})
    return count


def webhook_events_dispatch(*, batch: int = DISPATCH_BATCH) -> tuple[int, bool]:
    """Make the deliveries for up to ``batch`` ledger events of interest after the
    follower, and move it on, in one transaction. How many events were dispatched, and
    whether the follower has reached the ledger's head."""
    if _follower_at_head():
        return 0, True  # beat's usual run: two reads, no lock, no commit
    with transaction.atomic():
        follower, _ = LedgerFollower.objects.select_for_update().get_or_create(name=FOLLOWER)
        head = _ledger_head()
        endpoints = list(
            WebhookEndpoint.objects.filter(live_endpoint()).values_list("id", "after_seq")
        )
        start = max(follower.seq, min((after for _, after in endpoints), default=head))
        events = _events_after(start, head, batch)
        reached = events[-1]["seq"] if len(events) == batch else head
        WebhookDelivery.objects.bulk_create(
            _deliveries(events, endpoints), batch_size=1000, ignore_conflicts=True
        )
        if reached > follower.seq:
            LedgerFollower.objects.filter(pk=follower.pk).update(seq=reached)
    return len(events), reached >= head


def webhook_payload(event: dict[str, Any]) -> dict[str, Any]:
    """What an endpoint is told of a ledger event (as ``_events_after`` reads it)."""
    payload = {
        "id": f"evt_{event['seq']}",
        "type": EVENT_TYPES[event["action"]],
        "created_at": event["created_at"].isoformat(),
        "member": {"external_id": event["member__external_id"]},
        "purpose": event["purpose__slug"],
        "action": event["action"],
        "source": event["source"],
    }
    via = (event["metadata"] or {}).get("via")
    if via:
        payload["via"] = via  # the linked account the choice was made through
    return payload


def webhook_url_check(url: str) -> None:
    """Refuse (``EndpointRefused``) a URL that cannot be an endpoint."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise EndpointRefused("an endpoint is an https:// URL")
    if parsed.scheme == "http" and parsed.hostname not in LOOPBACK:
        raise EndpointRefused("plain http is only for an endpoint on this host: use https://")


def _follower_at_head() -> bool:
    seq = LedgerFollower.objects.filter(name=FOLLOWER).values_list("seq", flat=True).first()
    return seq is not None and seq >= _ledger_head()


def _ledger_head() -> int:
    return ConsentEvent.objects.aggregate(head=Max("seq"))["head"] or 0


def _events_after(start: int, head: int, batch: int) -> list[dict[str, Any]]:
    """Events of interest in (start, head], oldest first: ``head`` was read first, and
    every event up to it is committed (the ledger commits in seq order)."""
    return list(
        ConsentEvent.objects.filter(seq__gt=start, seq__lte=head, action__in=list(EVENT_TYPES))
        .order_by("seq")
        .values(
            "seq",
            "action",
            "source",
            "created_at",
            "metadata",
            "member__external_id",
            "purpose__slug",
        )[:batch]
    )


def _deliveries(
    events: list[dict[str, Any]], endpoints: list[tuple[int, int]]
) -> Iterable[WebhookDelivery]:
    """Each event for each endpoint made before it (``endpoints``: id, after_seq)."""
    now = timezone.now()
    for event in events:
        payload = webhook_payload(event)
        for endpoint_id, after_seq in endpoints:
            if event["seq"] > after_seq:
                yield WebhookDelivery(
                    endpoint_id=endpoint_id,
                    event_seq=event["seq"],
                    event_type=payload["type"],
                    payload=payload,
                    next_attempt_at=now,
                    created_at=now,
                )
