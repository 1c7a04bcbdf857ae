"""Fan-out's statements: hold a campaign while a slice is added, and add the slice."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from campaigns.models import Campaign, Delivery
from db import row_dict, table


def campaign_state_hold(*, campaign_id: int) -> str | None:
    """The campaign's state (None if it is gone), its row held (``FOR KEY SHARE`` on
    PostgreSQL; SQLite has one writer at a time) until the caller's transaction ends."""
    lock = " FOR KEY SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT state FROM {table(Campaign)} WHERE id = %s{lock}", [campaign_id])
        row = row_dict(cursor)
    return row["state"] if row else None


def deliveries_insert_missing(
    *,
    campaign_id: int,
    wave: int,
    status: str,
    created_at: datetime,
    audience_sql: str,
    audience_params: Sequence[Any],
    member_id_range: tuple[int, int],
) -> int:
    """INSERT one delivery of ``wave`` with ``status`` for each member of the audience
    (``audience_sql``: the ORM's SELECT of one column, ``audience_member_id``) that has
    none yet; the audience lies within ``member_id_range`` (low exclusive, high
    inclusive). Returns the rows added."""
    deliveries = table(Delivery)
    with connection.cursor() as cursor:
        # NOT EXISTS rather than ON CONFLICT DO NOTHING: the same result (rows already
        # there are left alone), and faster on a large first fan-out, where
        # ON CONFLICT checks the unique index once more for every row it inserts. The
        # member-id range keeps the anti-join to this slice's rows: without it, every
        # slice would read all the rows the slices before it inserted.
        cursor.execute(
            f"INSERT INTO {deliveries} (campaign_id, member_id, wave, status, created_at,"
            " attempts, locale, esp_message_id, error)"
            " SELECT %s, audience.audience_member_id, %s, %s, %s, 0, '', '', ''"
            f" FROM ({audience_sql}) audience"
            f" WHERE NOT EXISTS (SELECT 1 FROM {deliveries} existing"
            " WHERE existing.campaign_id = %s AND existing.wave = %s"
            " AND existing.member_id > %s AND existing.member_id <= %s"
            " AND existing.member_id = audience.audience_member_id)",
            [
                campaign_id,
                wave,
                status,
                connection.ops.adapt_datetimefield_value(created_at),
                *audience_params,
                campaign_id,
                wave,
                *member_id_range,
            ],
        )
        return cursor.rowcount
