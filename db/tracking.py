"""Tracking's statements: store ESP events in one statement, merge folded deliveries,
mark events processed."""

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from campaigns.models import Delivery, DeliveryEvent
from db import column, name, row_dicts, table
from db.rows import Column, update_from_rows


def events_insert_json(*, document: str, columns: Mapping[str, str]) -> None:
    """PostgreSQL: insert the events of ``document`` (a JSON array of objects with the
    fields ``columns`` names, each with its PostgreSQL type), received now, not yet
    processed; an event whose (esp, event_key) is stored already is left out."""
    with connection.cursor() as cursor:
        cursor.execute(_insert_json_sql(tuple(columns.items())), [document])


@functools.cache
def _insert_json_sql(columns: tuple[tuple[str, str], ...]) -> str:
    # Built once per process: quoting the columns on every webhook request cost a tenth
    # of the request's own time.
    names = ", ".join(column(DeliveryEvent, field) for field, _ in columns)
    record = ", ".join(f"{column(DeliveryEvent, field)} {kind}" for field, kind in columns)
    return (
        f"INSERT INTO {table(DeliveryEvent)}"
        f" ({names}, received_at, is_orphan, is_machine)"
        f" SELECT {names}, now(), false, false"
        f" FROM jsonb_to_recordset(%s::jsonb) AS event ({record})"
        " ON CONFLICT (esp, event_key) DO NOTHING"
    )


def _rank_sql(value: str, ranks: Mapping[str, int]) -> tuple[str, list]:
    whens = " ".join("WHEN %s THEN %s" for _ in ranks)
    return f"CASE {value} {whens} ELSE 0 END", [v for pair in ranks.items() for v in pair]


def _earliest_sql(field: str) -> str:
    c = name(field)
    return (
        f"CASE WHEN v.{c} IS NOT NULL AND (d.{c} IS NULL OR v.{c} < d.{c})"
        f" THEN v.{c} ELSE d.{c} END"
    )


def deliveries_merge(
    *, rows: Sequence[Sequence[Any]], ranks: Mapping[str, int], milestones: Sequence[str]
) -> int:
    """Merge each row ``(id, status, soft bounces added, sent_at, *milestones)`` into its
    delivery: the status of the higher rank (``ranks``; unknown statuses rank 0), the soft
    bounces added to those stored, the send time only where the sender recorded none,
    each milestone the earlier of the two. Merged with the row as
    it is now, not assigned: two processors (or a sender recording its send) touching
    the same delivery at once cannot undo each other's progress."""
    new_rank, new_params = _rank_sql("v.status", ranks)
    old_rank, old_params = _rank_sql("d.status", ranks)
    return update_from_rows(
        model=Delivery,
        columns=[
            Column("id", "bigint"),
            Column("status", "text"),
            Column("soft_bounces_added", "integer"),
            Column("sent_at", "timestamptz"),
            *(Column(field, "timestamptz") for field in milestones),
        ],
        rows=rows,
        assignments={
            "status": f"CASE WHEN {new_rank} > {old_rank} THEN v.status ELSE d.status END",
            "soft_bounces": "d.soft_bounces + v.soft_bounces_added",
            "sent_at": "COALESCE(d.sent_at, v.sent_at)",
            **{field: _earliest_sql(field) for field in milestones},
        },
        params=[*new_params, *old_params],
    )


_EVENT_COLUMNS = [
    Column("id", "bigint"),
    Column("delivery_id", "bigint"),
    Column("is_orphan", "boolean"),
    Column("is_machine", "boolean"),
    Column("processed_at", "timestamptz"),
    Column("ledger_due_at", "timestamptz"),
]


def events_mark_processed(*, rows: Sequence[tuple[int, Any, bool, bool, datetime, Any]]) -> int:
    """Write each row ``(id, delivery_id, is_orphan, is_machine, processed_at,
    ledger_due_at)`` to its event."""
    return update_from_rows(
        model=DeliveryEvent,
        columns=_EVENT_COLUMNS,
        rows=rows,
        assignments={c.name: f"v.{name(c.name)}" for c in _EVENT_COLUMNS[1:]},
    )


def events_claim(*, limit: int, now: datetime) -> list[dict[str, Any]]:
    """PostgreSQL: claim up to ``limit`` unprocessed events (oldest first, skipping those
    another processor holds), match each with its delivery (by ``metadata_delivery_id``
    when that names one of ours, else by ESP message id) and mark them processed at
    ``now`` with their delivery or as orphans, in one statement. Returns a dict per event:
    what the batch processor reads of it and of its delivery (None when it is an orphan);
    its raw payload only where a rule reads it (a bounce, soft or hard), so the batch
    does not decode JSON it never looks at. The caller's transaction holds the events
    until it commits; a rollback leaves them unprocessed."""
    events, deliveries = table(DeliveryEvent), table(Delivery)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH claimed AS ("
            f"  SELECT id, metadata_delivery_id, message_id FROM {events}"
            "   WHERE processed_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
            # Materialised: each event's match is looked up once, not again for the
            # join, the assignment and what is returned.
            "), matched AS MATERIALIZED ("
            "  SELECT c.id, coalesce("
            f"    (SELECT d.id FROM {deliveries} AS d WHERE d.id = c.metadata_delivery_id),"
            # Both sides say <> '': the partial index on esp_message_id holds only those.
            f"    (SELECT d.id FROM {deliveries} AS d WHERE c.message_id <> ''"
            "       AND d.esp_message_id <> '' AND d.esp_message_id = c.message_id"
            "       ORDER BY d.id LIMIT 1)"
            "  ) AS delivery_id FROM claimed AS c"
            f") UPDATE {events} AS e"
            " SET processed_at = %s, delivery_id = m.delivery_id,"
            " is_orphan = m.delivery_id IS NULL"
            # Each event's delivery by its primary key: OFFSET 0 keeps the subquery from
            # being flattened into a join, which the planner may answer by hashing the
            # whole deliveries table (millions of rows) for a batch of 2,000 events.
            " FROM matched AS m LEFT JOIN LATERAL ("
            "  SELECT status, soft_bounces, sent_at, member_id, campaign_id, delivered_at,"
            "   opened_at, clicked_at, bounced_at, complained_at"
            f"  FROM {deliveries} WHERE id = m.delivery_id OFFSET 0"
            ") AS d ON true"
            " WHERE e.id = m.id"
            " RETURNING e.id, e.esp, e.event_type, e.timestamp, e.received_at, e.user_agent,"
            " CASE WHEN e.event_type = 'bounced' THEN e.raw END AS raw, m.delivery_id, d.status,"
            " d.soft_bounces, d.sent_at, d.member_id, d.campaign_id, d.delivered_at,"
            " d.opened_at, d.clicked_at, d.bounced_at, d.complained_at",
            [limit, now],
        )
        return row_dicts(cursor)
