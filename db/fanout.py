"""Fan-out's statements: hold a campaign while a slice is added, and add the slice."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from accounts.models import Member
from campaigns import variants as rules
from campaigns.models import Campaign, Delivery
from db import placeholders, row_dict, row_dicts, table


def campaign_state_hold(*, campaign_id: int) -> str | None:
    """The campaign's state (None if it is gone), its row held (``FOR KEY SHARE`` on
    PostgreSQL; SQLite has one writer at a time) until the caller's transaction ends."""
    lock = " FOR KEY SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT state FROM {table(Campaign)} WHERE id = %s{lock}", [campaign_id])
        row = row_dict(cursor)
    return row["state"] if row else None


def variant_bucket_sql(member_id: str) -> str:
    """SQL for ``campaigns.variants.variant_bucket`` of the integer expression
    ``member_id`` (a column), with the campaign's seed as each of its four parameters.

    Integers only (the constants are the module's own, never input), each step reduced
    modulo the prime so no product reaches 2^62: SQLite and PostgreSQL compute the same
    value, and SQLite never falls back to floating point. The squarings name the value
    twice, so the member's expression appears four times (the fan-out computes the
    first step once instead: ``_bucketed``). ``%%`` is the modulo operator in a
    statement with parameters."""
    return _bucket_of_first(_first_step(member_id))


def _first_step(member_id: str) -> str:
    """The hash's first, affine step (one seed parameter)."""
    p = rules.PRIME
    return f"((({member_id}) %% {p}) * {rules.MEMBER_MULTIPLIER} + CAST(%s AS BIGINT)) %% {p}"


def _bucket_of_first(first: str) -> str:
    """The rest of the hash, from the first step's value ``first``."""
    p = rules.PRIME
    squared = f"(({first}) * ({first}) + {rules.ADDENDS[0]}) %% {p}"
    mixed = f"(({squared}) * {rules.MIX_MULTIPLIER} + {rules.ADDENDS[1]}) %% {p}"
    return f"(((({mixed}) * ({mixed}) + {rules.ADDENDS[2]}) %% {p}) %% {rules.BUCKETS})"


def _fence() -> str:
    """What keeps a derived table from being merged into the query around it, so its
    columns are computed once per row rather than copied into every expression that
    names them (PostgreSQL pulls up subqueries without OFFSET, SQLite flattens those
    without one)."""
    return " OFFSET 0" if connection.vendor == "postgresql" else " LIMIT -1 OFFSET 0"


def _bucketed(audience_sql: str) -> str:
    """The audience with each member's ``bucket``: the hash's first step computed once
    per row, the rest from it, each in a fenced derived table (the CASE then names the
    bucket once per variant). One seed parameter, before the audience's."""
    first = (
        f"SELECT audience_member_id, {_first_step('audience_member_id')} AS first_step"
        f" FROM ({audience_sql}) members{_fence()}"
    )
    return (
        f"SELECT audience_member_id, {_bucket_of_first('hashed.first_step')} AS bucket"
        f" FROM ({first}) hashed{_fence()}"
    )


def _version_sql(ranges: Sequence[tuple[int, int]]) -> tuple[str, list[Any]]:
    """The delivery's notice version: NULL (the campaign's own) without a split, else the
    variant whose cumulative bucket range covers the member's bucket."""
    if not ranges:
        return "NULL", []
    cases = " ".join("WHEN audience.bucket < %s THEN %s" for _ in ranges[:-1])
    params: list[Any] = [
        value for version_id, bound in ranges[:-1] for value in (bound, version_id)
    ]
    return f"CASE {cases} ELSE %s END", [*params, ranges[-1][0]]


def deliveries_insert_missing(
    *,
    campaign_id: int,
    wave: int,
    status: str,
    created_at: datetime,
    audience_sql: str,
    audience_params: Sequence[Any],
    member_id_range: tuple[int, int],
    variant_ranges: Sequence[tuple[int, int]] = (),
) -> int:
    """INSERT one delivery of ``wave`` with ``status`` for each member of the audience
    (``audience_sql``: the ORM's SELECT of one column, ``audience_member_id``) that has
    none yet; the audience lies within ``member_id_range`` (low exclusive, high
    inclusive). ``variant_ranges``: a wording test's (version id, exclusive bucket
    bound) in order, each member's delivery carrying the version of their bucket
    (``variant_bucket_sql``); empty for none. Returns the rows added."""
    deliveries = table(Delivery)
    version_sql, version_params = _version_sql(variant_ranges)
    audience = audience_sql
    bucket_params: list[Any] = []
    if variant_ranges:
        audience = _bucketed(audience_sql)
        bucket_params = [rules.campaign_seed(campaign_id)]
    with connection.cursor() as cursor:
        # NOT EXISTS rather than ON CONFLICT DO NOTHING: the same result (rows already
        # there are left alone), and faster on a large first fan-out, where
        # ON CONFLICT checks the unique index once more for every row it inserts. The
        # member-id range keeps the anti-join to this slice's rows: without it, every
        # slice would read all the rows the slices before it inserted.
        cursor.execute(
            f"INSERT INTO {deliveries} (campaign_id, member_id, wave, status, created_at,"
            " attempts, locale, esp_message_id, error, notice_version_id)"
            f" SELECT %s, audience.audience_member_id, %s, %s, %s, 0, '', '', '', {version_sql}"
            f" FROM ({audience}) audience"
            f" WHERE NOT EXISTS (SELECT 1 FROM {deliveries} existing"
            " WHERE existing.campaign_id = %s AND existing.wave = %s"
            " AND existing.member_id > %s AND existing.member_id <= %s"
            " AND existing.member_id = audience.audience_member_id)",
            [
                campaign_id,
                wave,
                status,
                connection.ops.adapt_datetimefield_value(created_at),
                *version_params,
                *bucket_params,
                *audience_params,
                campaign_id,
                wave,
                *member_id_range,
            ],
        )
        return cursor.rowcount


def member_buckets_read(*, campaign_id: int, member_ids: Sequence[int]) -> dict[int, int]:
    """``{member id: bucket}`` as the fan-out computes it (``variant_bucket_sql``), for
    the given members: how a wording test's assignment is checked against its reference."""
    members = table(Member)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, {variant_bucket_sql('id')} AS bucket FROM {members}"
            f" WHERE id IN ({placeholders(len(member_ids))})",
            [*[rules.campaign_seed(campaign_id)] * 4, *member_ids],
        )
        return {row["id"]: row["bucket"] for row in row_dicts(cursor)}
