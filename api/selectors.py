"""Reads for the API, shaped as its answers, and for its admin.

- A member's choices and ledger events: a member's state per purpose is the one the
  pages show (``member_effective_states``). Ledger events are shown as facts only:
  never the hashed IP, the user agent, the comment or the rest of the metadata, which
  are evidence, not the platform's business.
- Where each consumer stands in the suppression feed.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from accounts.models import ConsentEvent, Member, SuppressionChange
from accounts.selectors import EffectiveState, member_effective_states, suppression_feed_head
from api.models import ApiClient, ConsumerPosition

EVENTS_SHOWN = 20
EVENTS_MOST = 100


def member_preferences(*, member: Member, events: int = EVENTS_SHOWN) -> dict[str, Any]:
    """The member's effective state for every purpose, and their last ``events`` ledger
    events, newest first: two queries (the purposes come from the per-process copy)."""
    recent = (
        ConsentEvent.objects.filter(member=member)
        .select_related("purpose")
        .only(*EVENT_FIELDS, "purpose__slug")
        .order_by("-seq")[:events]
    )
    return {
        "external_id": member.external_id,
        "jurisdiction": member.jurisdiction,
        "purposes": [state_out(state) for state in member_effective_states(member=member)],
        "events": [event_out(event) for event in recent],
    }


def state_out(state: EffectiveState) -> dict[str, Any]:
    return {
        "purpose": state.purpose.slug,
        "state": state.state.value,
        "reason": state.reason.value,
        "since": state.since.isoformat(),
        "policy_mode": state.policy_mode.value,
        "explicit_choice": state.explicit_choice.value if state.explicit_choice else None,
        # Not used yet where the member lives; planned from this date unless they object.
        "planned_mode": state.planned_mode.value if state.planned_mode else None,
        "planned_from": state.planned_from.isoformat() if state.planned_from else None,
    }


EVENT_FIELDS = ("seq", "action", "source", "purpose", "notice_version_id", "created_at", "metadata")


def event_out(event: ConsentEvent | None) -> dict[str, Any] | None:
    """The event as the API shows it; ``occurred_at`` is the client's own time of the
    choice, when it sent one (the ledger's ``created_at`` is always the server's)."""
    if event is None:
        return None
    return {
        "seq": event.seq,
        "action": event.action,
        "source": event.source,
        "purpose": event.purpose.slug if event.purpose is not None else None,
        "notice_version_id": event.notice_version_id,
        "created_at": event.created_at.isoformat(),
        "occurred_at": (event.metadata or {}).get("occurred_at"),
    }


@dataclass(frozen=True)
class FeedLag:
    """How far a consumer's applied cursor is behind the feed of its purpose."""

    position: ConsumerPosition
    head: int
    entries_behind: int
    # When the oldest entry it has not applied was recorded (None: it is up to date).
    oldest_unapplied_at: datetime | None

    @property
    def seconds_behind(self) -> float:
        if self.oldest_unapplied_at is None:
            return 0.0
        return max(0.0, (timezone.now() - self.oldest_unapplied_at).total_seconds())


def consumer_lag(*, position: ConsumerPosition) -> FeedLag:
    """The lag of one position: a count over the (purpose, id) index range after its
    cursor, the first entry there, and the head (no per-entry work in Python)."""
    unapplied = SuppressionChange.objects.filter(
        purpose_id=position.purpose_id, pk__gt=position.cursor
    ).order_by("pk")
    head = suppression_feed_head(purpose=position.purpose)
    oldest = unapplied.values_list("recorded_at", flat=True).first()
    if oldest is None:
        return FeedLag(position, head, 0, None)
    return FeedLag(position, head, unapplied.count(), oldest)


def consumer_lags(*, client: ApiClient) -> list[FeedLag]:
    """Every feed position of ``client`` with its lag, by purpose slug."""
    positions = ConsumerPosition.objects.filter(client=client).select_related("purpose")
    return [consumer_lag(position=p) for p in positions.order_by("purpose__slug")]
