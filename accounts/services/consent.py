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
        if action in PREFERENCE_EFFECT:
            # The member's row and the chain, with the preference and head as they stand.
            held = _ledger_hold(member_id=member.pk, purpose_id=purpose.pk)
            if _preference_stands(action, held.preference):
                pref = held.preference
                return Recorded(pref.last_event if pref else None, created=False)
            email_status, head = held.email_status, held.head
        else:
            email_status = _member_lock(member.pk)
            stands, standing = _already_stands(
                member, email_status, action, notice_version_id, delivery_id
            )
            if stands:
                return Recorded(standing, created=False)
            head = _ledger_hold(member_id=None, purpose_id=None).head
        event = _event_new(
            head,
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


# Plain SQL from the member lock to the commit: each statement from the ledger lock on
# holds up every other choice being recorded (the ledger is one chain), and on the
# machines measured the ORM's query building cost more than running the queries.
#
# Lock order, everywhere: the member's row first, then the ledger. (A writer holding the
# ledger and waiting for a member row that another holds while it waits for the ledger
# would deadlock.) On PostgreSQL the function renotify_ledger_hold (migration accounts
# 0006) takes both and reads the preference and head in one round trip; on SQLite the
# IMMEDIATE transaction already holds the database's write lock.
_MEMBER_LOCK_SQL = "SELECT email_status FROM {member} WHERE id = %s{for_update}"
_LEDGER_HOLD_SQL = "SELECT * FROM renotify_ledger_hold(%s, %s, %s)"
_PREFERENCE_AND_HEAD_SQL = """
SELECT p.id, p.choice, p.last_event_id, head.seq, head.hash
FROM (SELECT 1) one
LEFT JOIN {preference} p ON p.member_id = %s AND p.purpose_id = %s
LEFT JOIN (SELECT seq, hash FROM {event} ORDER BY seq DESC LIMIT 1) head ON true
"""


def _member_lock(member_id: int) -> str:
    """Lock the member's row until commit; its email status as it now stands."""
    for_update = " FOR UPDATE" if connection.vendor == "postgresql" else ""
    sql = _MEMBER_LOCK_SQL.format(member=Member._meta.db_table, for_update=for_update)
    with connection.cursor() as cursor:
        cursor.execute(sql, [member_id])
        row = cursor.fetchone()
    if row is None:
        raise Member.DoesNotExist(f"no member {member_id}")
    return row[0]


@dataclass(frozen=True)
class _Held:
    """What a ledger write reads once it holds the member (if any) and the ledger."""

    email_status: str | None
    preference: Preference | None
    head: tuple[int, str] | None  # the chain's last (seq, hash)


def _ledger_hold(*, member_id: int | None, purpose_id: int | None) -> _Held:
    """Hold the member's row (when given) and the ledger until commit; read the
    member's email status, their Preference for the purpose and the chain's head."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_LEDGER_HOLD_SQL, [member_id, purpose_id, LEDGER_LOCK_ID])
            row = cursor.fetchone()
        if row is None:
            raise Member.DoesNotExist(f"no member {member_id}")
        email_status, pref_id, choice, last_event_id, seq, hash_ = row
    else:
        email_status = _member_lock(member_id) if member_id is not None else None
        sql = _PREFERENCE_AND_HEAD_SQL.format(
            preference=Preference._meta.db_table, event=ConsentEvent._meta.db_table
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [member_id, purpose_id])
            pref_id, choice, last_event_id, seq, hash_ = cursor.fetchone()
    pref = None
    if pref_id is not None:
        names, values = ("id", "choice", "last_event_id"), (pref_id, choice, last_event_id)
        pref = Preference.from_db(connection.alias, names, values)
    return _Held(email_status, pref, (seq, hash_) if seq is not None else None)


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


def _event_new(head: tuple[int, str] | None, **fields: Any) -> ConsentEvent:
    """The event after ``head`` in the chain, hashed, not yet saved."""
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
