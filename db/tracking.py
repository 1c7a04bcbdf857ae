"""Tracking's statements: store ESP events in one statement, merge folded deliveries,
mark events processed."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from campaigns.models import Delivery, DeliveryEvent
from db import column, name, table
from db.rows import Column, update_from_rows


def events_insert_json(*, document: str, columns: Mapping[str, str]) -> None:
    """PostgreSQL: insert the events of ``document`` (a JSON array of objects with the
    fields ``columns`` names, each with its PostgreSQL type), received now, not yet
    processed; an event whose (esp, event_key) is stored already is left out."""
    names = ", ".join(column(DeliveryEvent, field) for field in columns)
    record = ", ".join(f"{column(DeliveryEvent, field)} {kind}" for field, kind in columns.items())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table(DeliveryEvent)}"
            f" ({names}, received_at, is_orphan, is_machine)"
            f" SELECT {names}, now(), false, false"
            f" FROM jsonb_to_recordset(%s::jsonb) AS event ({record})"
            " ON CONFLICT (esp, event_key) DO NOTHING",
            [document],
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
    """Merge each row ``(id, status, soft bounces added, *milestones)`` into its delivery:
    the status of the higher rank (``ranks``; unknown statuses rank 0), the soft bounces
    added to those stored, each milestone the earlier of the two. Merged with the row as
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
            *(Column(field, "timestamptz") for field in milestones),
        ],
        rows=rows,
        assignments={
            "status": f"CASE WHEN {new_rank} > {old_rank} THEN v.status ELSE d.status END",
            "soft_bounces": "d.soft_bounces + v.soft_bounces_added",
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
