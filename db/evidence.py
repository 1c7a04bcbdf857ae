"""The evidence pack's statement over every member of a campaign: one line per member
(members.csv's columns, as text), read through a server-side cursor in chunks, so memory
stays flat however large the campaign.

Two ways of saying it, with the same result (``tests/test_evidence_sql.py`` compares
them on PostgreSQL):

- **plain** (every database): each delivery with its member and the member's first
  acknowledgement, objection and in-app serving of the campaign's notice, ordered by
  member and wave; the member's waves are folded into one line as they stream past;
- **grouped** (PostgreSQL): the database folds the waves itself (``GROUP BY`` member,
  ``string_agg``, times formatted by ``to_char``), so Python only writes lines out: at a
  million members, per-row work in Python is what the build's time is made of.

What counts for a campaign: an event from one of its links (its deliveries), or one
naming a notice version it sent (the app, the API); in-app serving is a "serve" or an
"acknowledge" with source in_app, as the reach report counts it. (The link test is an
EXISTS on the delivery's key: ``delivery_id IN (the campaign's deliveries) OR ...``
cannot be a join, and once the campaign's ids no longer fit in ``work_mem`` PostgreSQL
scans them again for every event.) Only events up to
``head_seq`` count, so the lines agree with a ledger slice cut at the same head.
Times are UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
"""

import itertools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.utils.dateparse import parse_datetime

from accounts.models import Action, ConsentEvent, Member, Source
from campaigns.models import Delivery
from db import placeholders, row_index, table

# members.csv's columns, in order: every function here yields lines in this order.
LINE_COLUMNS = (
    "external_id",
    "jurisdiction",
    "locale",
    "sent_locale",
    "notice_versions",
    "waves",
    "status",
    "sent_at",
    "delivered_at",
    "first_opened_at",
    "acknowledged_at",
    "objected_at",
    "served_in_app_at",
    "channels",
    "esp_message_ids",
)
SEPARATOR = ";"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# The same, for PostgreSQL's to_char.
PG_TIME_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'

_EVENTS_SQL = """
SELECT e.member_id AS member_id,
       MIN(CASE WHEN e.action = %s THEN e.created_at END) AS acknowledged_at,
       MIN(CASE WHEN e.action = %s THEN e.created_at END) AS objected_at,
       MIN(CASE WHEN e.source = %s AND e.action IN (%s, %s) THEN e.created_at END)
           AS served_in_app_at
FROM {event} e
WHERE e.seq <= %s AND e.action IN (%s, %s, %s) AND (
    EXISTS (SELECT 1 FROM {delivery} dd WHERE dd.id = e.delivery_id AND dd.campaign_id = %s)
    OR e.notice_version_id IN ({versions})
)
GROUP BY e.member_id
"""

_PLAIN_SQL = """
SELECT d.member_id AS member_id, m.external_id AS external_id,
       m.jurisdiction AS jurisdiction, m.locale AS member_locale,
       d.wave AS wave, d.status AS status, d.locale AS sent_locale,
       COALESCE(d.notice_version_id, %s) AS version_id,
       d.sent_at AS sent_at, d.delivered_at AS delivered_at, d.opened_at AS opened_at,
       d.esp_message_id AS esp_message_id,
       ev.acknowledged_at AS acknowledged_at, ev.objected_at AS objected_at,
       ev.served_in_app_at AS served_in_app_at
FROM {delivery} d
JOIN {member} m ON m.id = d.member_id
LEFT JOIN ({events}) ev ON ev.member_id = d.member_id
WHERE d.campaign_id = %s
ORDER BY d.member_id, d.wave
"""

_GROUPED_SQL = """
SELECT m.external_id, m.jurisdiction, m.locale, d.sent_locale, d.versions, d.waves,
       d.status, {ts_sent}, {ts_delivered}, {ts_opened},
       {ts_acknowledged}, {ts_objected}, {ts_served_in_app},
       concat_ws(';', CASE WHEN d.emailed THEN 'email' END,
                      CASE WHEN ev.served_in_app_at IS NOT NULL THEN 'in_app' END),
       d.esp_ids
FROM (
    SELECT member_id,
           (array_agg(locale ORDER BY wave))[1] AS sent_locale,
           array_to_string(ARRAY(SELECT DISTINCT v FROM unnest(
               array_agg(COALESCE(notice_version_id, %s))) AS v ORDER BY v), ';') AS versions,
           string_agg(wave::text, ';' ORDER BY wave) AS waves,
           (array_agg(status ORDER BY wave))[1] AS status,
           MIN(sent_at) AS sent_at, MIN(delivered_at) AS delivered_at,
           MIN(opened_at) AS opened_at,
           bool_or(sent_at IS NOT NULL) AS emailed,
           string_agg(NULLIF(esp_message_id, ''), ';' ORDER BY wave) AS esp_ids
    FROM {delivery} WHERE campaign_id = %s GROUP BY member_id
) d
JOIN {member} m ON m.id = d.member_id
LEFT JOIN ({events}) ev ON ev.member_id = d.member_id
ORDER BY d.member_id
"""


def campaign_member_lines(
    *,
    campaign_id: int,
    campaign_version_id: int,
    version_ids: Sequence[int],
    head_seq: int,
    chunk: int,
) -> Iterator[tuple[str, ...]]:
    """One line per member of the campaign (members with a delivery), in member order:
    ``LINE_COLUMNS`` as text ("" for none)."""
    lines = (
        campaign_member_lines_grouped
        if connection.vendor == "postgresql"
        else campaign_member_lines_plain
    )
    return lines(
        campaign_id=campaign_id,
        campaign_version_id=campaign_version_id,
        version_ids=version_ids,
        head_seq=head_seq,
        chunk=chunk,
    )


def _events(campaign_id: int, version_ids: Sequence[int], head_seq: int) -> tuple[str, list]:
    if not version_ids:
        raise ValueError("a campaign sends at least its own notice version")
    sql = _EVENTS_SQL.format(
        event=table(ConsentEvent), delivery=table(Delivery), versions=placeholders(len(version_ids))
    )
    acknowledge, object_, serve = Action.ACKNOWLEDGE, Action.OBJECT, Action.SERVE
    params: list[Any] = [acknowledge, object_, Source.IN_APP, serve, acknowledge]
    params += [head_seq, acknowledge, object_, serve, campaign_id, *version_ids]
    return sql, params


def campaign_member_lines_grouped(
    *,
    campaign_id: int,
    campaign_version_id: int,
    version_ids: Sequence[int],
    head_seq: int,
    chunk: int,
) -> Iterator[tuple[str, ...]]:
    """PostgreSQL: the lines as the database folds them."""
    events, event_params = _events(campaign_id, version_ids, head_seq)
    times = {
        f"ts_{name}": f"to_char({alias}.{name}_at AT TIME ZONE 'UTC', '{PG_TIME_FORMAT}')"
        for alias, name in (
            ("d", "sent"),
            ("d", "delivered"),
            ("d", "opened"),
            ("ev", "acknowledged"),
            ("ev", "objected"),
            ("ev", "served_in_app"),
        )
    }
    sql = _GROUPED_SQL.format(
        delivery=table(Delivery), member=table(Member), events=events, **times
    )
    params = [campaign_version_id, campaign_id, *event_params]
    for row in _stream(sql, params, chunk):
        yield tuple("" if value is None else value for value in row)


def campaign_member_lines_plain(
    *,
    campaign_id: int,
    campaign_version_id: int,
    version_ids: Sequence[int],
    head_seq: int,
    chunk: int,
) -> Iterator[tuple[str, ...]]:
    """Every database: each delivery's row, the member's waves folded here."""
    events, event_params = _events(campaign_id, version_ids, head_seq)
    sql = _PLAIN_SQL.format(delivery=table(Delivery), member=table(Member), events=events)
    params = [campaign_version_id, *event_params, campaign_id]
    rows = _stream(sql, params, chunk, as_dicts=True)
    for _member, waves in itertools.groupby(rows, key=lambda row: row["member_id"]):
        yield _fold(list(waves))


def _fold(waves: list[dict[str, Any]]) -> tuple[str, ...]:
    first = waves[0]  # the lowest wave: rows come in wave order
    emailed = any(w["sent_at"] is not None for w in waves)
    served = first["served_in_app_at"]
    channels = [name for name, yes in (("email", emailed), ("in_app", served)) if yes]
    line = {
        "external_id": first["external_id"],
        "jurisdiction": first["jurisdiction"],
        "locale": first["member_locale"],
        "sent_locale": first["sent_locale"],
        "notice_versions": SEPARATOR.join(str(v) for v in sorted({w["version_id"] for w in waves})),
        "waves": SEPARATOR.join(str(w["wave"]) for w in waves),
        "status": first["status"],
        "sent_at": _earliest(waves, "sent_at"),
        "delivered_at": _earliest(waves, "delivered_at"),
        "first_opened_at": _earliest(waves, "opened_at"),
        "acknowledged_at": _text(first["acknowledged_at"]),
        "objected_at": _text(first["objected_at"]),
        "served_in_app_at": _text(served),
        "channels": SEPARATOR.join(channels),
        "esp_message_ids": SEPARATOR.join(
            w["esp_message_id"] for w in waves if w["esp_message_id"]
        ),
    }
    return tuple(line[name] for name in LINE_COLUMNS)


def _earliest(waves: list[dict[str, Any]], name: str) -> str:
    found = [moment for w in waves if (moment := _aware(w[name])) is not None]
    return min(found).strftime(TIME_FORMAT) if found else ""


def _text(value: Any) -> str:
    moment = _aware(value)
    return "" if moment is None else moment.strftime(TIME_FORMAT)


def _aware(value: Any) -> datetime | None:
    """A timestamp as an aware UTC datetime: SQLite hands aggregates back as text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_datetime(value)
        if value is None:
            raise ValueError("unreadable timestamp in the evidence rows")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stream(sql: str, params: list, chunk: int, *, as_dicts: bool = False) -> Iterator[Any]:
    # A server-side cursor on PostgreSQL (Django's chunked cursor), a plain one elsewhere.
    cursor = connection.chunked_cursor()
    try:
        cursor.execute(sql, params)
        names = list(row_index(cursor))
        while rows := cursor.fetchmany(chunk):
            if as_dicts:
                yield from (dict(zip(names, row, strict=True)) for row in rows)
            else:
                yield from rows
    finally:
        cursor.close()
