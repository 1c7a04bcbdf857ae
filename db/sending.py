"""The send loop's statements: claim due deliveries, hand claimed ones over, record sends."""

from collections.abc import Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

from django.db import connection

from campaigns.models import Delivery
from db import placeholders, row_index, table
from db.rows import Column, update_from_rows


class ClaimedRow(NamedTuple):
    id: int
    wave: int
    attempts: int
    member_id: int
    notice_version_id: int | None


def deliveries_claim(
    *,
    campaign_id: int,
    due_status: str,
    due_at: datetime,
    limit: int,
    claimed_status: str,
    lease: datetime,
) -> list[ClaimedRow]:
    """Move up to ``limit`` of the campaign's ``due_status`` rows due by ``due_at`` (id
    order) to ``claimed_status``, counting the attempt and leasing them until ``lease``;
    each a ``ClaimedRow``. Rows locked by another claim are
    skipped on PostgreSQL (SQLite has one writer at a time)."""
    deliveries = table(Delivery)
    skip_locked = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    # Raw SQL: adapt datetimes as the ORM does, or SQLite compares differing strings.
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        # MATERIALIZED: the LIMIT holds only if the subquery runs once. Inlined, PostgreSQL
        # may plan a nested loop that re-runs it per row (e.g. on fresh statistics right
        # after a fan-out) and claim every pending row of the campaign.
        cursor.execute(
            f"WITH due AS MATERIALIZED (SELECT id FROM {deliveries} WHERE campaign_id = %s"
            " AND status = %s AND (not_before IS NULL OR not_before <= %s)"
            f" ORDER BY id LIMIT %s{skip_locked})"
            f" UPDATE {deliveries} SET status = %s, attempts = attempts + 1,"
            " lease_expires_at = %s"
            " WHERE id IN (SELECT id FROM due) AND status = %s"
            " RETURNING id, wave, attempts, member_id, notice_version_id",
            [
                campaign_id,
                due_status,
                adapt(due_at),
                limit,
                claimed_status,
                adapt(lease),
                due_status,
            ],
        )
        rows = cursor.fetchall()
        at = row_index(cursor)
    pick = itemgetter(*(at[field] for field in ClaimedRow._fields))
    return [ClaimedRow._make(pick(row)) for row in rows]


def deliveries_hand_over(
    *, ids: Sequence[int], from_status: str, lease: datetime, to_status: str
) -> set[int]:
    """``from_status`` -> ``to_status`` for the rows of ``ids`` still leased until
    ``lease`` (the lease is the fence); the ids moved."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table(Delivery)} SET status = %s WHERE id IN ({placeholders(len(ids))})"
            " AND status = %s AND lease_expires_at = %s RETURNING id",
            [to_status, *ids, from_status, connection.ops.adapt_datetimefield_value(lease)],
        )
        at = row_index(cursor)["id"]
        return {row[at] for row in cursor.fetchall()}


RECORD_COLUMNS = [
    Column("id", "bigint"),
    Column("status", "text"),
    Column("sent_at", "timestamptz"),
    Column("not_before", "timestamptz"),
    Column("esp_message_id", "text"),
    Column("locale", "text"),
    Column("error", "text"),
]
# The status only from the one given (an ESP webhook can be faster than this write,
# and a delivery never moves back from "delivered" to "sent"); the rest as given.
_RECORD_ASSIGNMENTS = {
    "status": "CASE WHEN d.status = %s THEN v.status ELSE d.status END",
    "lease_expires_at": "NULL",
    "sent_at": "v.sent_at",
    "not_before": "v.not_before",
    "esp_message_id": "v.esp_message_id",
    "locale": "v.locale",
    "error": "v.error",
}


def deliveries_record(*, rows: Sequence[Sequence[Any]], status_only_from: str) -> int:
    """Write each row of ``RECORD_COLUMNS`` to its delivery and end its lease; the
    status changes only on rows whose status is ``status_only_from``."""
    return update_from_rows(
        model=Delivery,
        columns=RECORD_COLUMNS,
        rows=rows,
        assignments=_RECORD_ASSIGNMENTS,
        params=[status_only_from],
    )
