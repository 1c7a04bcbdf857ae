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
        email_status = _member_lock(member.pk)
        if action in PREFERENCE_EFFECT:
            # Read after the member lock, so a concurrent click's choice is seen.
            pref = _preference_read_and_ledger_lock(member.pk, purpose.pk)
            if _preference_stands(action, pref):
                return Recorded(pref.last_event if pref else None, created=False)
        else:
            stands, standing = _already_stands(
                member, email_status, action, notice_version_id, delivery_id
            )
            if stands:
                return Recorded(standing, created=False)
            _ledger_lock()
        event = _event_new(
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
        if action in PREFERENCE_EFFECT and connection.vendor == "postgresql":
            _insert_with_preference(event, choice=PREFERENCE_EFFECT[action])
        else:
            event.save(force_insert=True)
            _apply(member, email_status, action, purpose, event)
    return Recorded(event, created=True)


# Plain SQL from the member lock to the commit: each statement here holds up every other
# choice being recorded (the ledger is one chain), and on the machines measured the
# ORM's query building cost more than running the queries.
def _member_lock(member_id: int) -> str:
    """Lock the member's row until commit; its email status as it now stands."""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT email_status FROM {Member._meta.db_table} WHERE id = %s{lock}", [member_id]
        )
        row = cursor.fetchone()
    if row is None:
        raise Member.DoesNotExist(f"no member {member_id}")
    return row[0]


def _ledger_lock() -> None:
    """Held until commit: the next writer reads the head only after we added ours. (On
    SQLite the IMMEDIATE transaction already holds the database's write lock.)"""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LEDGER_LOCK_ID])


def _preference_read_and_ledger_lock(member_id: int, purpose_id: int) -> Preference | None:
    """The member's Preference for the purpose, taking the ledger lock in the same round
    trip on PostgreSQL (after the member lock: the two locks are always taken in that
    order, so two writers can never wait for each other)."""
    table = Preference._meta.db_table
    select = f"SELECT p.id, p.choice, p.last_event_id FROM {table} p"
    where = "p.member_id = %s AND p.purpose_id = %s"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"{select} RIGHT JOIN (SELECT pg_advisory_xact_lock(%s)) ledger ON {where}",
                [LEDGER_LOCK_ID, member_id, purpose_id],
            )
        else:
            cursor.execute(f"{select} WHERE {where}", [member_id, purpose_id])
        row = cursor.fetchone()
    if row is None or row[0] is None:
        return None
    return Preference.from_db(connection.alias, ("id", "choice", "last_event_id"), row)


def _preference_stands(action: Action, pref: Preference | None) -> bool:
    current = pref.choice if pref else None
    return current == PREFERENCE_EFFECT[action] or (
        action == Action.WITHDRAW_OBJECTION and current != Choice.OUT
    )


def _already_stands(
    member: Member,
    email_status: str,
    action: Action,
    notice_version_id: int | None,
    delivery_id: int | None,
) -> tuple[bool, ConsentEvent | None]:
    """Whether recording ``action`` (not a preference) would change nothing, and the
    event standing for it."""
    same = ConsentEvent.objects.filter(member=member, action=action)
    if action == Action.UNSUBSCRIBE:
        # Stands until staff clear the address back to OK.
        last = same.order_by("-seq").first()
        return (last is not None and email_status != EmailStatus.OK), last
    acknowledged = same.filter(notice_version_id=notice_version_id, delivery_id=delivery_id).first()
    return acknowledged is not None, acknowledged


def _event_new(**fields: Any) -> ConsentEvent:
    """The next event of the chain, hashed, not yet saved. Call with the ledger lock held."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT seq, hash FROM {ConsentEvent._meta.db_table} ORDER BY seq DESC LIMIT 1"
        )
        head = cursor.fetchone()
    seq, prev_hash = (head[0] + 1, head[1]) if head else (1, ledger.GENESIS_HASH)
    fields.update(seq=seq, prev_hash=prev_hash, created_at=timezone.now())
    fields["hash"] = ledger.event_hash(fields, prev_hash=prev_hash)
    return ConsentEvent(**fields)


_EVENT_WITH_PREFERENCE_SQL = """
WITH event AS (
    INSERT INTO {event} ({columns}) VALUES ({values}) RETURNING id
)
INSERT INTO {preference} (member_id, purpose_id, choice, chosen_at, last_event_id)
SELECT %s, %s, %s, %s, id FROM event
ON CONFLICT (member_id, purpose_id) DO UPDATE
SET choice = EXCLUDED.choice, chosen_at = EXCLUDED.chosen_at,
    last_event_id = EXCLUDED.last_event_id
RETURNING last_event_id
"""


def _insert_with_preference(event: ConsentEvent, *, choice: Choice | None) -> None:
    """PostgreSQL: the event and the Preference it leaves in one statement."""
    fields = [f for f in ConsentEvent._meta.concrete_fields if not f.primary_key]
    sql = _EVENT_WITH_PREFERENCE_SQL.format(
        event=ConsentEvent._meta.db_table,
        preference=Preference._meta.db_table,
        columns=", ".join(connection.ops.quote_name(f.column) for f in fields),
        values=", ".join(["%s"] * len(fields)),
    )
    values = [f.get_db_prep_save(getattr(event, f.attname), connection) for f in fields]
    chosen_at = connection.ops.adapt_datetimefield_value(event.created_at)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, event.member_id, event.purpose_id, choice, chosen_at])
        (event.pk,) = cursor.fetchone()
    event._state.adding, event._state.db = False, connection.alias


def _apply(
    member: Member, email_status: str, action: Action, purpose: Purpose | None, event: ConsentEvent
) -> None:
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
    elif action == Action.UNSUBSCRIBE and email_status == EmailStatus.OK:
        Member.objects.filter(pk=member.pk).update(
            email_status=EmailStatus.UNSUBSCRIBED,
            email_status_changed_at=event.created_at,
            updated_at=event.created_at,
        )
