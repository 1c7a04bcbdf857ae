"""The evidence pack's one statement over every member of a campaign: each delivery
with its member and the member's first acknowledgement, objection and in-app serving
of the campaign's notice, read through a server-side cursor in chunks, so memory stays
flat however large the campaign.

Rows come ordered by member, then wave, so the caller folds each member's waves into
one line as they stream past (``evidence.selectors.pack_members``).
"""

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.utils.dateparse import parse_datetime

from accounts.models import Action, ConsentEvent, Member, Source
from campaigns.models import Campaign, Delivery
from db import placeholders, row_index, table

# What counts for a campaign: an event from one of its links (its deliveries), or one
# naming a notice version it sent (the app, the API). In-app serving is a "serve" or
# an "acknowledge" shown in the app, as the reach report counts it.
_MEMBERS_SQL = """
SELECT d.member_id AS member_id, m.external_id AS external_id,
       m.jurisdiction AS jurisdiction, m.locale AS member_locale,
       d.wave AS wave, d.status AS status, d.locale AS sent_locale,
       COALESCE(d.notice_version_id, c.notice_version_id) AS version_id,
       d.sent_at AS sent_at, d.delivered_at AS delivered_at, d.opened_at AS opened_at,
       d.esp_message_id AS esp_message_id,
       ev.acknowledged_at AS acknowledged_at, ev.objected_at AS objected_at,
       ev.served_in_app_at AS served_in_app_at
FROM {delivery} d
JOIN {campaign} c ON c.id = d.campaign_id
JOIN {member} m ON m.id = d.member_id
LEFT JOIN (
    SELECT e.member_id AS member_id,
           MIN(CASE WHEN e.action = %s THEN e.created_at END) AS acknowledged_at,
           MIN(CASE WHEN e.action = %s THEN e.created_at END) AS objected_at,
           MIN(CASE WHEN e.source = %s AND e.action IN (%s, %s) THEN e.created_at END)
               AS served_in_app_at
    FROM {event} e
    WHERE e.seq <= %s AND e.action IN (%s, %s, %s) AND (
        e.delivery_id IN (SELECT id FROM {delivery} WHERE campaign_id = %s)
        OR e.notice_version_id IN ({versions})
    )
    GROUP BY e.member_id
) ev ON ev.member_id = d.member_id
WHERE d.campaign_id = %s
ORDER BY d.member_id, d.wave
"""

DATETIME_COLUMNS = (
    "sent_at",
    "delivered_at",
    "opened_at",
    "acknowledged_at",
    "objected_at",
    "served_in_app_at",
)


def campaign_member_rows(
    *, campaign_id: int, version_ids: Sequence[int], head_seq: int, chunk: int
) -> Iterator[dict[str, Any]]:
    """Every delivery of the campaign with its member and the member's first
    acknowledgement, objection and in-app serving (ledger events up to ``head_seq``
    only, so the rows agree with a ledger slice cut at the same head), ordered by
    member and wave. Times come back as aware datetimes (UTC) or None."""
    if not version_ids:
        raise ValueError("a campaign sends at least its own notice version")
    sql = _MEMBERS_SQL.format(
        delivery=table(Delivery),
        campaign=table(Campaign),
        member=table(Member),
        event=table(ConsentEvent),
        versions=placeholders(len(version_ids)),
    )
    params: list[str | int] = [
        Action.ACKNOWLEDGE,
        Action.OBJECT,
        Source.IN_APP,
        Action.SERVE,
        Action.ACKNOWLEDGE,
        head_seq,
        Action.ACKNOWLEDGE,
        Action.OBJECT,
        Action.SERVE,
        campaign_id,
        *version_ids,
        campaign_id,
    ]
    # A server-side cursor on PostgreSQL (Django's chunked cursor), a plain one elsewhere.
    cursor = connection.chunked_cursor()
    try:
        cursor.execute(sql, params)
        index = row_index(cursor)
        times = [(name, index[name]) for name in DATETIME_COLUMNS]
        while rows := cursor.fetchmany(chunk):
            for row in rows:
                found = {name: row[i] for name, i in index.items()}
                for name, i in times:
                    found[name] = _aware(row[i])
                yield found
    finally:
        cursor.close()


def _aware(value: Any) -> datetime | None:
    """A timestamp as an aware UTC datetime: SQLite hands aggregates back as text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_datetime(value)
        if value is None:
            raise ValueError("unreadable timestamp in the evidence rows")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
