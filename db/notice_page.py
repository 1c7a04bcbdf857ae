"""The notice page's read: a link's delivery, with its member and notice version and,
for a page to show, the member's responses, in one statement.

Every view and objection of a notice page starts here, so this is plain SQL: building
the same query with the ORM (select_related, only, Exists) costs more than running it.
The result's columns are named ``<part>_<field>`` (``delivery_id``, ``member_locale``,
...) and read through an index map computed once per form of the statement, never a
dict per row.
"""

import functools
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from django.db import connection

from accounts.models import ConsentEvent, Member, Preference
from campaigns.models import Campaign, Delivery, NoticeVersion
from db import column, name, table

# The fields read of each part, in the order the caller gets their values.
DELIVERY_FIELDS = ("id", "campaign_id", "member_id", "locale", "sent_at", "viewed_at")
# In the model's field order (``Model.from_db`` takes the values in that order). person_key:
# an objection applies to the member's linked accounts, and reading it here spares the
# page a query for it when there are none.
MEMBER_FIELDS = ("id", "locale", "jurisdiction", "email_status", "person_key", "created_at")
VERSION_FIELDS = (
    "id",
    "notice_id",
    "number",
    "default_locale",
    "effective_date",
    "objection_deadline",
    "frozen_at",
)
PREFERENCE_FIELDS = ("id", "purpose_id", "choice", "chosen_at", "last_event_id")


@dataclass(frozen=True)
class NoticePageRow:
    """The values of each part's fields (``*_FIELDS``, in order)."""

    delivery: tuple
    member: tuple
    version: tuple
    # For a page: whether the member acknowledged this version; None otherwise.
    acknowledged: bool | None
    # For a page on PostgreSQL: each of the member's preferences as PREFERENCE_FIELDS'
    # values; None when not read here (the caller reads them).
    preferences: list[list] | None
    # Whether the statement noted the first view (PostgreSQL, when asked).
    viewed_noted: bool


@dataclass(frozen=True)
class _Statement:
    sql: str
    delivery: Any  # itemgetters over the row, from the columns' names
    member: Any
    version: Any
    acknowledged: int | None
    preferences: int | None


def _select(alias: str, part: str, model, fields: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(f"{alias}.{column(model, f)}", f"{part}_{f}") for f in fields]


@functools.cache
def _statement(*, page: bool, with_preferences: bool, viewed: bool, vendor: str) -> _Statement:
    """The statement for one combination of what is read (built once per process; per
    vendor, as quoting is the backend's)."""
    selected = [
        *_select("d", "delivery", Delivery, DELIVERY_FIELDS),
        *_select("m", "member", Member, MEMBER_FIELDS),
        *_select("v", "version", NoticeVersion, VERSION_FIELDS),
    ]
    if page:
        # Whether the member acknowledged this version.
        selected.append(
            (
                f"EXISTS (SELECT 1 FROM {table(ConsentEvent)} e"
                " WHERE e.member_id = d.member_id"
                " AND e.action = %(acknowledge)s AND e.notice_version_id = v.id)",
                "acknowledged",
            )
        )
    if with_preferences:
        # PostgreSQL: the member's preferences in the same statement (elsewhere one
        # more query).
        fields = ", ".join(f"p.{column(Preference, f)}" for f in PREFERENCE_FIELDS)
        selected.append(
            (
                f"(SELECT json_agg(json_build_array({fields}))"
                f" FROM {table(Preference)} p WHERE p.member_id = d.member_id)",
                "preferences",
            )
        )
    sql = (
        "SELECT "
        + ", ".join(f"{expression} AS {name(alias)}" for expression, alias in selected)
        + f" FROM {table(Delivery)} d"
        f" JOIN {table(Member)} m ON m.id = d.member_id"
        f" JOIN {table(Campaign)} c ON c.id = d.campaign_id"
        # The version this delivery carries: a wording test's variant, else (rows from
        # before wording tests, campaigns without one) the campaign's own.
        f" JOIN {table(NoticeVersion)} v"
        " ON v.id = COALESCE(d.notice_version_id, c.notice_version_id)"
        " WHERE d.id = %(delivery)s"
    )
    if viewed:
        # PostgreSQL: a data-modifying WITH runs once, whatever the query reads of it;
        # the SELECT sees the row as it was before. One round trip per page view.
        sql = (
            f"WITH viewed AS (UPDATE {table(Delivery)} SET viewed_at = %(now)s"
            " WHERE id = %(delivery)s AND viewed_at IS NULL RETURNING id) " + sql
        )
    at = {alias: i for i, (_expression, alias) in enumerate(selected)}

    def pick(part: str, fields: tuple[str, ...]):
        return itemgetter(*(at[f"{part}_{f}"] for f in fields))

    return _Statement(
        sql=sql,
        delivery=pick("delivery", DELIVERY_FIELDS),
        member=pick("member", MEMBER_FIELDS),
        version=pick("version", VERSION_FIELDS),
        acknowledged=at.get("acknowledged"),
        preferences=at.get("preferences"),
    )


def notice_delivery_read(
    *, delivery_id: int, page: bool, acknowledge: str, viewed_at: datetime | None
) -> NoticePageRow | None:
    """The delivery ``delivery_id`` as a notice page reads it (None if there is none);
    for a ``page``, with the member's responses (``acknowledge``: the action that
    acknowledges a version). ``viewed_at``: the first view to note, which PostgreSQL
    does in the same statement (``viewed_noted``)."""
    one_statement = connection.vendor == "postgresql"
    statement = _statement(
        page=page,
        with_preferences=one_statement and page,
        viewed=one_statement and viewed_at is not None,
        vendor=connection.vendor,
    )
    params: dict[str, Any] = {"delivery": delivery_id}
    if page:
        params["acknowledge"] = acknowledge
    if one_statement and viewed_at is not None:
        params["now"] = viewed_at
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return NoticePageRow(
        delivery=statement.delivery(row),
        member=statement.member(row),
        version=statement.version(row),
        acknowledged=bool(row[statement.acknowledged]) if page else None,
        preferences=(
            (row[statement.preferences] or []) if statement.preferences is not None else None
        ),
        viewed_noted=one_statement and viewed_at is not None,
    )


def delivery_viewed_mark(*, delivery_id: int, at: datetime) -> None:
    """Note the delivery's first view at ``at`` (nothing if one is noted already)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table(Delivery)} SET viewed_at = %s WHERE id = %s AND viewed_at IS NULL",
            [connection.ops.adapt_datetimefield_value(at), delivery_id],
        )
