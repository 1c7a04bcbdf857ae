"""A campaign's sender chains, one per slot (campaigns.models.SenderSlot).

A chain is a run of ``campaigns.tasks.campaign_send`` links, each publishing the next.
A worker that dies during a link takes the chain with it: nothing publishes the next
link (with Redis as the broker, the unacknowledged message comes back only after the
visibility timeout, an hour). So each link checks in, saying by when the next one runs,
and the reconciler starts a new chain in any slot overdue by a lease.

Each link carries the slot's token, and handing over to the next link changes it: a
link whose token is no longer the slot's (its chain was replaced, or it is a second
copy of a link the broker delivered twice) stops."""

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from campaigns import enqueue
from campaigns.models import Campaign, SenderSlot


def sender_slots(count: int | None = None) -> range:
    return range(count or settings.RENOTIFY_SENDERS_PER_CAMPAIGN)


def senders_start(campaign_id: int, *, slots: Iterable[int] | None = None) -> None:
    """Start a chain in each of ``slots`` (by default all of them) once the transaction
    commits; a chain already in one of them stops at its next link."""
    chains = sender_chains_take(
        campaign_id=campaign_id, slots=sender_slots() if slots is None else slots
    )
    enqueue.sender_chains_start(campaign_id, chains)


def sender_chains_take(*, campaign_id: int, slots: Iterable[int]) -> list[tuple[int, str]]:
    """A new chain for each of ``slots``: ``(slot, chain)`` to publish. The chains that
    held them stop at their next link."""
    now = timezone.now()
    rows = [
        SenderSlot(campaign_id=campaign_id, slot=slot, chain=secrets.token_hex(8), due_by=now)
        for slot in slots
    ]
    SenderSlot.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["campaign", "slot"],
        update_fields=["chain", "due_by"],
    )
    return [(row.slot, row.chain) for row in rows]


def sender_check_in(
    *, campaign_id: int, slot: int, chain: str, due_by: datetime, passed_to: str = ""
) -> bool:
    """Whether ``chain`` still holds ``slot``; if it does, its next link runs by ``due_by``
    and, with ``passed_to``, carries that token from now on."""
    return (
        SenderSlot.objects.filter(campaign_id=campaign_id, slot=slot, chain=chain).update(
            due_by=due_by, chain=passed_to or chain
        )
        == 1
    )


def sender_slots_overdue(*, campaign: Campaign, now: datetime) -> list[int]:
    """The slots whose chain is a lease late (lost with its worker), or that never had one."""
    on_time = now - timedelta(seconds=settings.RENOTIFY_LEASE_SECONDS)
    alive = set(
        SenderSlot.objects.filter(campaign=campaign, due_by__gte=on_time).values_list(
            "slot", flat=True
        )
    )
    return [slot for slot in sender_slots() if slot not in alive]


@dataclass(frozen=True)
class SenderLink:
    """The running link of a chain in ``slot``, holding the slot's token ``chain``: what
    it tells the slot about when the next link runs."""

    campaign_id: int
    slot: int
    chain: str

    def check_in(self, *, countdown: float, passed_to: str = "") -> bool:
        """Whether this link's chain still holds the slot; if so, the next link runs
        ``countdown`` seconds from now (with ``passed_to``: carrying that token)."""
        return sender_check_in(
            campaign_id=self.campaign_id,
            slot=self.slot,
            chain=self.chain,
            due_by=timezone.now() + timedelta(seconds=countdown),
            passed_to=passed_to,
        )

    def retry_in(self, countdown: float) -> float:
        """The link is retried ``countdown`` seconds from now (the same chain)."""
        self.check_in(countdown=countdown)
        return countdown

    def continue_in(self, countdown: float) -> None:
        """Publish the next link, ``countdown`` seconds from now, with a token of its own:
        of two copies of one link (a broker may deliver a message twice), only the first
        to get here goes on, so a chain never forks."""
        token = secrets.token_hex(8)
        if self.check_in(countdown=countdown, passed_to=token):
            enqueue.sender_continue(self.campaign_id, self.slot, token, countdown=countdown)
