"""Record a member's choice: one ledger event and the Preference, in one transaction.

Every source (preference page, one-click, API, admin, import, ESP) records
choices through ``consent_record``; nothing else writes ConsentEvent rows, and nothing
else sets or clears ``Member.unsubscribed_at`` (the member's unsubscribe, written in the
event's own transaction). The suppression feed follows the ledger on its own
(``accounts.services.suppression_feed.suppression_feed_catch_up``): recording a choice
does nothing more.

Linked accounts: members sharing a non-empty ``person_key`` are one person. A preference
choice (object, withdraw the objection, opt in) made through any of them applies to
each of them, as an event of its own whose metadata names the account it came through
(``{"via": "<external id>"}``), each a ledger write of its own. A member without a
person key costs no query for it.

A ledger write owns its transaction and refuses, loudly, to run inside a caller's
(``RuntimeError``, as Django's durable atomic blocks do): inside one it would hold the
ledger, which every choice waits for, until the caller commits, and take member rows
after locks the caller already holds, against the lock order below. Callers record
consequences after their own commit (the ESP event processor does).

The ledger is one hash chain: each event names the one before it, so events are
appended one at a time, in ``seq`` order, each committed before the next is read.
Two ways of writing keep it so:

- **Held** (every choice on SQLite, acknowledgements and unsubscribes everywhere, and
  any choice that found the chain moved): in a transaction, lock the member's row and
  the ledger, read the preference and the chain's head, append, commit.
- **Unlocked first** (objections and their withdrawal on PostgreSQL, the notice page's
  one tap): read the preference and head without locks, then append in one
  autocommitted statement that takes the locks, inserts the next ``seq`` unless one
  exists (``ON CONFLICT DO NOTHING`` on the unique ``seq``) and writes the Preference.
  If another choice was appended since the read, nothing is written and the held way
  runs instead. The read and the write are two round trips, where the held way needs
  four (BEGIN, locks and reads, append, COMMIT), and the ledger is held only during
  the one statement.
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
    Member,
    Preference,
    Purpose,
    Source,
)
from config.fields import clipped
from db import ledger as db_ledger

# What each preference action leaves as the member's explicit choice. Withdrawing
# an objection clears the choice (back to the jurisdiction's default) rather than
# opting in, which matters where the default is opt-in.
PREFERENCE_EFFECT: dict[str, Choice | None] = {
    Action.OBJECT: Choice.OUT,
    Action.OPT_IN: Choice.IN,
    Action.WITHDRAW_OBJECTION: None,
}

# The metadata key of an event applied to a linked account: the external id of the
# account the choice was made through.
LINKED_VIA = "via"

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

    A preference choice of a member with a person key applies to each of the person's
    other accounts too (see the module docstring); the event returned is the member's own.
    """
    action, source = Action(action), Source(source)
    recorded = _record(
        member=member,
        action=action,
        source=source,
        purpose=purpose,
        notice_version_id=notice_version_id,
        delivery_id=delivery_id,
        ip=ip,
        user_agent=user_agent,
        comment=comment,
        metadata=metadata,
    )
    if action in PREFERENCE_EFFECT and member.person_key:
        _linked_apply(
            member=member,
            action=action,
            source=source,
            purpose=purpose,
            notice_version_id=notice_version_id,
            ip=ip,
            user_agent=user_agent,
            metadata=metadata,
        )
    return recorded


def _linked_apply(
    *,
    member: Member,
    action: Action,
    source: Source,
    purpose: Purpose | None,
    notice_version_id: int | None,
    ip: str | None,
    user_agent: str,
    metadata: dict[str, Any] | None,
) -> None:
    """The choice for each other account with the member's person key: its own event,
    in its own ledger write, naming the account it came through (``via``).

    Applied whether or not the member's own event was new, so a retry finishes a
    propagation that was cut short; an account where the choice stands records
    nothing. No delivery (the link was the other account's) and no comment (the
    person's words stay with the event they wrote them in)."""
    accounts = dict(
        Member.objects.filter(person_key=member.person_key).values_list("pk", "external_id")
    )
    via = accounts.pop(member.pk, None) or member.external_id
    for pk in sorted(accounts):
        _record(
            member=Member(pk=pk),
            action=action,
            source=source,
            purpose=purpose,
            notice_version_id=notice_version_id,
            delivery_id=None,
            ip=ip,
            user_agent=user_agent,
            comment="",
            metadata={**(metadata or {}), LINKED_VIA: via},
        )


def _record(
    *,
    member: Member,
    action: Action,
    source: Source,
    purpose: Purpose | None,
    notice_version_id: int | None,
    delivery_id: int | None,
    ip: str | None,
    user_agent: str,
    comment: str,
    metadata: dict[str, Any] | None,
) -> Recorded:
    """One member's event (see ``consent_record``)."""
    if (action in PREFERENCE_EFFECT) != (purpose is not None):
        raise ValueError(
            f"{action} {'needs' if action in PREFERENCE_EFFECT else 'takes no'} purpose"
        )
    fields = {
        "member_id": member.pk,
        "purpose_id": purpose.pk if purpose else None,
        "action": action.value,
        "source": source.value,
        "notice_version_id": notice_version_id,
        "delivery_id": delivery_id,
        "ip_hash": ledger.hash_ip(ip),
        "user_agent": clipped(ConsentEvent, "user_agent", user_agent or ""),
        "comment": comment or "",
        "metadata": metadata or {},
    }
    _outer_transaction_refuse()
    recorded = None
    if action in PREFERENCE_EFFECT and connection.vendor == "postgresql":
        recorded = _preference_record_unlocked(action, fields)
    if recorded is None:
        recorded = _record_held(member, action, purpose, fields)
    return recorded


def _outer_transaction_refuse() -> None:
    """The check ``transaction.atomic(durable=True)`` makes (the held way's block is
    durable too), made before either way runs: the unlocked way's one autocommitted
    statement has no block around it (one would add BEGIN and COMMIT round trips). A test
    case's own transaction, as with durable blocks, does not count."""
    blocks = connection.atomic_blocks
    if blocks and not getattr(blocks[-1], "_from_testcase", False):
        raise RuntimeError("A ledger write cannot run inside another transaction.")


def _preference_record_unlocked(action: Action, fields: dict[str, Any]) -> Recorded | None:
    """PostgreSQL: read without locks, append in one statement. None when the chain
    moved on since the read (or the member is gone): the caller holds it and retries."""
    pref, head = _preference_and_head(fields["member_id"], fields["purpose_id"])
    if _preference_stands(action, pref):
        return Recorded(pref.last_event if pref else None, created=False)
    event = _event_new(head, **fields)
    if _insert_with_preference(event, choice=PREFERENCE_EFFECT[action]):
        return Recorded(event, created=True)
    return None


def _record_held(
    member: Member, action: Action, purpose: Purpose | None, fields: dict[str, Any]
) -> Recorded:
    # Durable: never inside a caller's transaction (see the module docstring). No
    # savepoint: the only block it may sit in is a test case's, where one would add two
    # statements that production never runs.
    with transaction.atomic(savepoint=False, durable=True):
        if action in PREFERENCE_EFFECT:
            # The member's row and the chain, with the preference and head as they stand.
            held = _ledger_hold(member_id=member.pk, purpose_id=fields["purpose_id"])
            if _preference_stands(action, held.preference):
                pref = held.preference
                return Recorded(pref.last_event if pref else None, created=False)
            head = held.head
        else:
            unsubscribed_at = _member_lock(member.pk)
            stands, standing = _already_stands(
                member,
                unsubscribed_at,
                action,
                fields["notice_version_id"],
                fields["delivery_id"],
            )
            if stands:
                return Recorded(standing, created=False)
            head = _ledger_hold(member_id=None, purpose_id=None).head
        event = _event_new(head, **fields)
        if action in PREFERENCE_EFFECT and connection.vendor == "postgresql":
            if not _insert_with_preference(event, choice=PREFERENCE_EFFECT[action]):
                raise RuntimeError(f"ledger event {event.seq} exists though the ledger is held")
        else:
            event.save(force_insert=True)
            _apply(member, action, purpose, event)
    return Recorded(event, created=True)


# The statements run in db.ledger (lock order, plain SQL: see there).


def _member_lock(member_id: int) -> Any:
    """Lock the member's row until commit; when they unsubscribed, as it now stands."""
    row = db_ledger.member_lock(member_id=member_id)
    if row is None:
        raise Member.DoesNotExist(f"no member {member_id}")
    return row["unsubscribed_at"]


@dataclass(frozen=True)
class _Held:
    """What a ledger write reads once it holds the member (if any) and the ledger."""

    preference: Preference | None
    head: tuple[int, str] | None  # the chain's last (seq, hash)


def _ledger_hold(*, member_id: int | None, purpose_id: int | None) -> _Held:
    """Hold the member's row (when given) and the ledger until commit; read the
    member's Preference for the purpose and the chain's head."""
    if connection.vendor != "postgresql":
        if member_id is not None:
            _member_lock(member_id)
        return _Held(*_preference_and_head(member_id, purpose_id))
    row = db_ledger.ledger_hold(member_id=member_id, purpose_id=purpose_id, lock_id=LEDGER_LOCK_ID)
    if row is None:
        raise Member.DoesNotExist(f"no member {member_id}")
    return _Held(*_read(row))


def _preference_and_head(
    member_id: int | None, purpose_id: int | None
) -> tuple[Preference | None, tuple[int, str] | None]:
    """The member's Preference for the purpose and the chain's head, in one snapshot."""
    return _read(db_ledger.preference_and_head(member_id=member_id, purpose_id=purpose_id))


def _read(row: dict[str, Any]) -> tuple[Preference | None, tuple[int, str] | None]:
    preference = _preference(row["pref_id"], row["pref_choice"], row["pref_last_event_id"])
    return preference, _head(row["head_seq"], row["head_hash"])


def _preference(pref_id: int | None, choice: str | None, last_event_id: int | None):
    if pref_id is None:
        return None
    names, values = ("id", "choice", "last_event_id"), (pref_id, choice, last_event_id)
    return Preference.from_db(connection.alias, names, values)


def _head(seq: int | None, hash_: str | None) -> tuple[int, str] | None:
    return (seq, hash_) if seq is not None and hash_ is not None else None


def _preference_stands(action: Action, pref: Preference | None) -> bool:
    current = pref.choice if pref else None
    return current == PREFERENCE_EFFECT[action] or (
        action == Action.WITHDRAW_OBJECTION and current != Choice.OUT
    )


def _already_stands(
    member: Member,
    unsubscribed_at: Any,
    action: Action,
    notice_version_id: int | None,
    delivery_id: int | None,
) -> tuple[bool, ConsentEvent | None]:
    """Whether recording ``action`` (not a preference) would change nothing, and the
    event standing for it."""
    same = ConsentEvent.objects.filter(member=member, action=action)
    if action == Action.UNSUBSCRIBE:
        # Stands while the member is unsubscribed: only their own events change that, so
        # a bounce, a complaint, staff or a new address never make a repeat count again.
        if unsubscribed_at is None:
            return False, None
        return True, same.order_by("-seq").first()
    acknowledged = same.filter(notice_version_id=notice_version_id, delivery_id=delivery_id).first()
    return acknowledged is not None, acknowledged


def _event_new(head: tuple[int, str] | None, **fields: Any) -> ConsentEvent:
    """The event after ``head`` in the chain, hashed, not yet saved."""
    seq, prev_hash = (head[0] + 1, head[1]) if head else (1, ledger.GENESIS_HASH)
    fields.update(seq=seq, prev_hash=prev_hash, created_at=timezone.now())
    fields["hash"] = ledger.event_hash(fields, prev_hash=prev_hash)
    return ConsentEvent(**fields)


def _insert_with_preference(event: ConsentEvent, *, choice: Choice | None) -> bool:
    """PostgreSQL: the event and the Preference it leaves in one statement; False when
    the event's seq was taken (the chain moved on since its head was read)."""
    event_id = db_ledger.event_with_preference_insert(
        event=event, lock_id=LEDGER_LOCK_ID, choice=choice, chosen_at=event.created_at
    )
    if event_id is None:
        return False
    event.pk = event_id
    event._state.adding, event._state.db = False, connection.alias
    return True


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
    elif action == Action.UNSUBSCRIBE:
        # Whatever the address's health: a bounce or complaint is a separate fact.
        Member.objects.filter(pk=member.pk).update(
            unsubscribed_at=event.created_at, updated_at=event.created_at
        )
