"""Record a member's choice: one ledger event and the Preference, in one transaction.

Every source (preference page, one-click, API, admin, import, ESP) records
choices through ``consent_record``; nothing else writes ConsentEvent rows.
"""

from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from accounts import ledger
from accounts.models import (
    Action,
    Choice,
    ConsentEvent,
    EmailStatus,
    Member,
    Preference,
    Purpose,
    Source,
)

# What each preference action leaves as the member's explicit choice. Withdrawing
# an objection clears the choice (back to the jurisdiction's default) rather than
# opting in, which matters where the default is opt-in.
PREFERENCE_EFFECT: dict[str, Choice | None] = {
    Action.OBJECT: Choice.OUT,
    Action.OPT_IN: Choice.IN,
    Action.WITHDRAW_OBJECTION: None,
}

# Arbitrary constant naming the ledger's advisory lock on PostgreSQL.
LEDGER_LOCK_ID = 0x72656E6F


@dataclass(frozen=True)
class Recorded:
    """The event that stands for the choice, and whether this call created it."""

    event: ConsentEvent | None
    created: bool


def consent_record(
    *,
    member: Member,
    action: Action | str,
    source: Source | str,
    purpose: Purpose | None = None,
    notice_version_id: int | None = None,
    delivery_id: int | None = None,
    ip: str | None = None,
    user_agent: str = "",
    comment: str = "",
    metadata: dict[str, Any] | None = None,
) -> Recorded:
    """Append the choice to the ledger and apply it, unless it would change nothing.

    Repeating a choice (a double click, a retried request) records no second
    event and returns the event that already stands for it.
    """
    action, source = Action(action), Source(source)
    if (action in PREFERENCE_EFFECT) != (purpose is not None):
        raise ValueError(
            f"{action} {'needs' if action in PREFERENCE_EFFECT else 'takes no'} purpose"
        )
    # No savepoint inside a caller's transaction: nobody catches an error from here to
    # carry on, and the two round trips would be spent while the ledger lock is held.
    with transaction.atomic(savepoint=False):
        # Locking the member serialises concurrent clicks by the same person.
        member = Member.objects.select_for_update().get(pk=member.pk)
        stands, standing = _already_stands(member, action, purpose, notice_version_id, delivery_id)
        if stands:
            return Recorded(standing, created=False)
        event = _append(
            member_id=member.pk,
            purpose_id=purpose.pk if purpose else None,
            action=action.value,
            source=source.value,
            notice_version_id=notice_version_id,
            delivery_id=delivery_id,
            ip_hash=ledger.hash_ip(ip),
            user_agent=(user_agent or "")[:300],
            comment=comment or "",
            metadata=metadata or {},
        )
        _apply(member, action, purpose, event)
    return Recorded(event, created=True)


def _already_stands(
    member: Member,
    action: Action,
    purpose: Purpose | None,
    notice_version_id: int | None,
    delivery_id: int | None,
) -> tuple[bool, ConsentEvent | None]:
    """Whether recording ``action`` would change nothing, and the event standing for it."""
    if action in PREFERENCE_EFFECT:
        pref = Preference.objects.filter(member=member, purpose=purpose).first()
        current = pref.choice if pref else None
        unchanged = current == PREFERENCE_EFFECT[action] or (
            action == Action.WITHDRAW_OBJECTION and current != Choice.OUT
        )
        return unchanged, (pref.last_event if pref else None)
    same = member.consent_events.filter(action=action)
    if action == Action.UNSUBSCRIBE:
        # Stands until staff clear the address back to OK.
        last = same.order_by("-seq").first()
        return (last is not None and member.email_status != EmailStatus.OK), last
    acknowledged = same.filter(notice_version_id=notice_version_id, delivery_id=delivery_id).first()
    return acknowledged is not None, acknowledged


def _append(**fields: Any) -> ConsentEvent:
    """Add one event at the head of the chain. Call inside a transaction."""
    if connection.vendor == "postgresql":
        # Held until commit: the next writer reads the head only after we added ours.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LEDGER_LOCK_ID])
    # On SQLite the IMMEDIATE transaction already holds the database's write lock.
    # Plain SQL for the head: every statement from here to commit holds up every other
    # choice being recorded, and the ORM's query building costs more than the query.
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT seq, hash FROM {ConsentEvent._meta.db_table} ORDER BY seq DESC LIMIT 1"
        )
        head = cursor.fetchone()
    seq, prev_hash = (head[0] + 1, head[1]) if head else (1, ledger.GENESIS_HASH)
    fields.update(seq=seq, prev_hash=prev_hash, created_at=timezone.now())
    fields["hash"] = ledger.event_hash(fields, prev_hash=prev_hash)
    return ConsentEvent.objects.create(**fields)


def _apply(member: Member, action: Action, purpose: Purpose | None, event: ConsentEvent) -> None:
    if action in PREFERENCE_EFFECT:
        # One INSERT ... ON CONFLICT DO UPDATE: this runs while the ledger lock is held,
        # so every round trip here is one that no other choice can make meanwhile.
        Preference.objects.bulk_create(
            [
                Preference(
                    member=member,
                    purpose=purpose,
                    choice=PREFERENCE_EFFECT[action],
                    chosen_at=event.created_at,
                    last_event=event,
                )
            ],
            update_conflicts=True,
            unique_fields=["member", "purpose"],
            update_fields=["choice", "chosen_at", "last_event"],
        )
    elif action == Action.UNSUBSCRIBE and member.email_status == EmailStatus.OK:
        Member.objects.filter(pk=member.pk).update(
            email_status=EmailStatus.UNSUBSCRIBED,
            email_status_changed_at=event.created_at,
            updated_at=event.created_at,
        )
