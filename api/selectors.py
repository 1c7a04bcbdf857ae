"""Reads for the API, shaped as its answers: a member's choices and ledger events.

A member's state per purpose is the one the pages show (``member_effective_states``).
Ledger events are shown as facts only: never the hashed IP, the user agent, the
comment or the rest of the metadata, which are evidence, not the platform's business.
"""

from typing import Any

from accounts.models import ConsentEvent, Member
from accounts.selectors import EffectiveState, member_effective_states

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
