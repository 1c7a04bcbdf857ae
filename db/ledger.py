"""The ledger write's statements: lock the member, hold the ledger, read the
preference and the chain's head, append an event with the Preference it leaves.

Plain SQL from the member lock to the commit: each statement from the ledger lock on
holds up every other choice being recorded (the ledger is one chain), and building
these queries with the ORM costs more than running them.

Lock order, everywhere: the member's row first, then the ledger. (A writer holding the
ledger and waiting for a member row that another holds while it waits for the ledger
would deadlock.) On PostgreSQL the function renotify_ledger_hold (migration accounts
0006) takes both and reads the preference and head in one round trip; on SQLite the
IMMEDIATE transaction already holds the database's write lock.

The preference and head come back with the names the function gives them:
``pref_id``, ``pref_choice``, ``pref_last_event_id``, ``head_seq``, ``head_hash``.
"""

import functools
from datetime import datetime
from typing import Any

from django.db import connection

from accounts.models import ConsentEvent, Member, Preference
from db import column, name, placeholders, row_dict, row_dicts, table


def member_lock(*, member_id: int) -> dict[str, Any] | None:
    """Lock the member's row until commit (``FOR UPDATE`` on PostgreSQL; SQLite's
    IMMEDIATE transaction holds the database) and read ``unsubscribed_at`` as it now
    stands; None when there is no such member."""
    for_update = " FOR UPDATE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column(Member, 'unsubscribed_at')} FROM {table(Member)}"
            f" WHERE id = %s{for_update}",
            [member_id],
        )
        return row_dict(cursor)


def ledger_hold(*, member_id: int | None, purpose_id: int | None, lock_id: int) -> dict | None:
    """PostgreSQL: lock the member's row (when given), then the ledger (advisory lock
    ``lock_id``), until commit; read the member's Preference for the purpose and the
    chain's head. None when the member does not exist."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT * FROM {name('renotify_ledger_hold')}(%s, %s, %s)",
            [member_id, purpose_id, lock_id],
        )
        return row_dict(cursor)


def preference_and_head(*, member_id: int | None, purpose_id: int | None) -> dict[str, Any]:
    """The member's Preference for the purpose (all None when there is none) and the
    chain's head (None when the ledger is empty), in one snapshot, without locks."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.id AS pref_id, p.choice AS pref_choice,"
            " p.last_event_id AS pref_last_event_id,"
            " head.seq AS head_seq, head.hash AS head_hash"
            " FROM (SELECT 1) one"
            f" LEFT JOIN {table(Preference)} p ON p.member_id = %s AND p.purpose_id = %s"
            f" LEFT JOIN (SELECT seq, hash FROM {table(ConsentEvent)}"
            " ORDER BY seq DESC LIMIT 1) head ON true",
            [member_id, purpose_id],
        )
        return row_dicts(cursor)[0]  # always one row: the joins hang off (SELECT 1)


# The member's row (KEY SHARE: what the event's foreign key takes anyway), then the
# ledger, as every writer takes them; then the event, unless its seq exists already
# (appended since the head was read, or in flight: the insert waits for that one's
# commit, then does nothing); then the Preference it leaves. Nothing is written when the
# member is gone or the event was not inserted.
_EVENT_WITH_PREFERENCE_SQL = """
WITH member AS MATERIALIZED (
    SELECT id FROM {member} WHERE id = %s FOR KEY SHARE
), ledger AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(%s) FROM member
), event AS (
    INSERT INTO {event} ({columns}) SELECT {values} FROM ledger
    ON CONFLICT DO NOTHING RETURNING id
)
INSERT INTO {preference} (member_id, purpose_id, choice, chosen_at, last_event_id)
SELECT %s, %s, %s, %s, id FROM event
ON CONFLICT (member_id, purpose_id) DO UPDATE
SET choice = EXCLUDED.choice, chosen_at = EXCLUDED.chosen_at,
    last_event_id = EXCLUDED.last_event_id
RETURNING last_event_id
"""


@functools.cache
def _event_with_preference_sql() -> tuple[str, list]:
    """The statement, and the event's fields in its column order (built once)."""
    fields = [f for f in ConsentEvent._meta.concrete_fields if not f.primary_key]
    sql = _EVENT_WITH_PREFERENCE_SQL.format(
        member=table(Member),
        event=table(ConsentEvent),
        preference=table(Preference),
        columns=", ".join(name(f.column) for f in fields),
        values=placeholders(len(fields)),
    )
    return sql, fields


def event_with_preference_insert(
    *, event: ConsentEvent, lock_id: int, choice: str | None, chosen_at: datetime
) -> int | None:
    """PostgreSQL: insert ``event`` (unsaved, its seq the head's next) holding the
    member's row and the ledger (advisory lock ``lock_id``), and the member's Preference
    for its purpose as ``choice``; the event's id, None when its seq was taken (the
    chain moved on since its head was read) or the member is gone."""
    sql, fields = _event_with_preference_sql()
    values = [f.get_db_prep_save(getattr(event, f.attname), connection) for f in fields]
    chosen = connection.ops.adapt_datetimefield_value(chosen_at)
    params = [event.member_id, lock_id, *values]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, event.member_id, event.purpose_id, choice, chosen])
        row = row_dict(cursor)
    return row["last_event_id"] if row else None
