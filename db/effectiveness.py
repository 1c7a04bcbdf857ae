"""The effectiveness report's two member-level statements the ORM cannot say in one
set-based query (``evidence.reports`` decides what goes in; these only run them):

- ``notice_days_histogram``: each member's first notice (the earliest sent notice
  delivery of the campaigns given) and the days from it to the effective date of the
  notice version that delivery carried, counted per number of days. A histogram, so
  the median and percentiles come exactly from a few hundred rows, not a million.
- ``objection_times``: for each objection, the first "objected" entry of the
  member's feed after it (the partial ``suppression_objected_idx`` index), and for
  each consumer the first position report at or past that entry (the
  ``consumer_report_cursor_idx`` index: reports are appended only when a position
  advances, so the lowest cursor at or past the entry is also the earliest report).

Days and seconds are said per database: PostgreSQL subtracts dates and takes epochs,
SQLite subtracts Julian days. Times are UTC on both.

``without_jit``: the report's statements are estimated as costly (grouped reads over
a campaign's deliveries and the ledger, correlated lookups per objection), so
PostgreSQL compiles them with LLVM first, and on the bench's 100,000 members that
compiling took 770 ms of a 930 ms statement that ran in 150 ms. The report turns JIT
off for its own transaction only.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import NamedTuple

from django.db import connection, transaction

from accounts.models import ConsentEvent, Member, SuppressionChange, SuppressionState
from api.models import ConsumerPositionReport
from campaigns.models import Campaign, CampaignVariant, Delivery, NoticeVersion
from db import placeholders, row_dicts, table

OBJECTED = "objected"  # accounts.selectors.Reason.OBJECTED: the entry an objection makes


@contextmanager
def without_jit() -> Iterator[None]:
    """A transaction whose statements PostgreSQL runs without JIT compilation."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
                cursor.execute("SET LOCAL work_mem = '64MB'")
        yield


def _utc_date(moment: str) -> str:
    if connection.vendor == "postgresql":
        return f"({moment} AT TIME ZONE 'UTC')::date"
    return f"date({moment})"


def _days(later: str, earlier: str) -> str:
    if connection.vendor == "postgresql":
        return f"({later} - {earlier})"
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


def _seconds(later: str, earlier: str) -> str:
    if connection.vendor == "postgresql":
        return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


def notice_days_histogram(*, campaign_ids: list[int], jurisdiction: str) -> list[dict]:
    """Rows ``{"days", "members"}``: members of ``jurisdiction`` by the whole days from
    their first sent notice delivery to its version's effective date (negative: told
    after it). A member has one notice delivery per campaign, so with one campaign no
    member needs ranking; with several, the earliest send wins (then the lowest id).
    The deliveries are counted per (campaign, version, day sent) before the versions
    are joined: joined first, PostgreSQL cannot estimate the COALESCE and tests each
    delivery's member by its primary key, a million probes at a million members."""
    if not campaign_ids:
        return []
    deliveries = (
        f"SELECT d.id, d.campaign_id, d.notice_version_id, d.sent_at, d.member_id"
        f" FROM {table(Delivery)} d"
        f" WHERE d.campaign_id IN ({placeholders(len(campaign_ids))}) AND d.wave = 0"
        " AND d.sent_at IS NOT NULL"
        f" AND d.member_id IN (SELECT m.id FROM {table(Member)} m WHERE m.jurisdiction = %s)"
    )
    if len(campaign_ids) > 1:
        deliveries = (
            "SELECT * FROM (SELECT campaign_id, notice_version_id, sent_at, row_number() OVER"
            f" (PARTITION BY member_id ORDER BY sent_at, id) AS rank FROM ({deliveries}) a) r"
            " WHERE rank = 1"
        )
    sent_day = _utc_date("f.sent_at")
    sql = (
        f"SELECT {_days('v.effective_date', 't.sent_day')} AS days, sum(t.n) AS members"
        f" FROM (SELECT f.campaign_id, f.notice_version_id, {sent_day} AS sent_day,"
        f" count(*) AS n FROM ({deliveries}) f GROUP BY 1, 2, 3) t"
        f" JOIN {table(Campaign)} c ON c.id = t.campaign_id"
        f" JOIN {table(NoticeVersion)} v"
        " ON v.id = COALESCE(t.notice_version_id, c.notice_version_id)"
        " GROUP BY 1 ORDER BY 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*campaign_ids, jurisdiction])
        return [{"days": row["days"], "members": int(row["members"])} for row in row_dicts(cursor)]


def campaign_delivery_groups(
    *, campaign_id: int, in_app_version_id: int, jurisdiction: str
) -> list[dict]:
    """Rows ``{"reminder", "status", "version", "sent_day", "shown", "n", "sent",
    "delivered", "complained"}``: the campaign's deliveries (every wave) to members of
    ``jurisdiction``, counted per reminder or notice, status, the version a delivery
    names (NULL: the campaign's own), the UTC day sent and whether the member was shown
    ``in_app_version_id`` (the campaign's own) or a version of its wording test in the
    app ("shown"); "sent", "delivered" and "complained"
    count those with the time set. One read of the deliveries joined to the members,
    from which ``evidence.reach`` sums a campaign's reach, not-reached statuses,
    reminders and notice days. The members shown in-app are few, joined as a set (a
    subquery in the select list is a hashed subplan PostgreSQL runs per row). The times
    are counted, not grouped on: every grouping key costs a hash per delivery."""
    sent_day = _utc_date("d.sent_at")
    sql = (
        f"SELECT d.wave > 0 AS reminder, d.status, d.notice_version_id AS version,"
        f" {sent_day} AS sent_day, s.member_id IS NOT NULL AS shown, count(*) AS n,"
        " count(d.sent_at) AS sent, count(d.delivered_at) AS delivered,"
        " count(d.complained_at) AS complained"
        f" FROM {table(Delivery)} d JOIN {table(Member)} m ON m.id = d.member_id"
        f" LEFT JOIN (SELECT DISTINCT i.member_id FROM {table(ConsentEvent)} i"
        "  WHERE i.source = 'in_app' AND i.action IN ('serve', 'acknowledge')"
        "  AND (i.notice_version_id = %s OR i.notice_version_id IN"
        f"   (SELECT v.notice_version_id FROM {table(CampaignVariant)} v"
        "    WHERE v.campaign_id = %s))) s ON s.member_id = d.member_id"
        " WHERE d.campaign_id = %s AND m.jurisdiction = %s GROUP BY 1, 2, 3, 4, 5"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [in_app_version_id, campaign_id, campaign_id, jurisdiction])
        return row_dicts(cursor)


class Scope(NamedTuple):
    """Which objections count: for this purpose, by members of this jurisdiction whom
    the campaigns targeted (a notice delivery of theirs, or shown or acknowledged a
    version of theirs in the app), made in [since, until)."""

    purpose_id: int
    jurisdiction: str
    since: datetime
    until: datetime
    campaign_ids: list[int]
    version_ids: list[int]


def _window(scope: Scope) -> list:
    """[since, until) as the database compares them: SQLite keeps times as naive UTC
    text, and an aware datetime passed as such ("...+00:00") sorts after the stored text
    of the same moment, so an event at exactly ``since`` fell outside."""
    return [connection.ops.adapt_datetimefield_value(m) for m in (scope.since, scope.until)]


def _fence() -> str:
    """What keeps a subquery as written: PostgreSQL neither pulls up nor hashes one with
    OFFSET, nor pushes conditions from around it into it; SQLite does not flatten one
    with a LIMIT."""
    return " OFFSET 0" if connection.vendor == "postgresql" else " LIMIT -1 OFFSET 0"


def _targeted(event: str, scope: Scope) -> tuple[str, list]:
    """Whether the ``event``'s member is one the campaigns targeted: a notice delivery
    of theirs, or shown (or acknowledged) one of their versions in the app. The
    delivery is probed per event through ``one_delivery_per_wave`` (fenced): left to
    itself, PostgreSQL hashes every notice delivery of the campaigns (a million at a
    million members) to test the events of one jurisdiction, a sixth of that."""
    sql = (
        f"(EXISTS (SELECT 1 FROM {table(Delivery)} d"
        f"  WHERE d.campaign_id IN ({placeholders(len(scope.campaign_ids))})"
        f"  AND d.member_id = {event}.member_id AND d.wave = 0{_fence()})"
        f" OR EXISTS (SELECT 1 FROM {table(ConsentEvent)} i WHERE i.member_id = {event}.member_id"
        f"  AND i.source = 'in_app' AND i.action IN ('serve', 'acknowledge')"
        f"  AND i.notice_version_id IN ({placeholders(len(scope.version_ids))})))"
    )
    return sql, [*scope.campaign_ids, *scope.version_ids]


def _objections(scope: Scope) -> tuple[str, list]:
    """The objections in scope, as (member_id, created_at)."""
    targeted, targeted_params = _targeted("e", scope)
    sql = (
        f"SELECT e.member_id, e.created_at FROM (SELECT e.member_id, e.created_at"
        f" FROM {table(ConsentEvent)} e JOIN {table(Member)} m ON m.id = e.member_id"
        " WHERE e.action = 'object' AND e.purpose_id = %s AND m.jurisdiction = %s"
        f" AND e.created_at >= %s AND e.created_at < %s{_fence()}) e WHERE {targeted}"
    )
    params = [scope.purpose_id, scope.jurisdiction, *_window(scope), *targeted_params]
    return sql, params


# How ``ledger_counts`` counts the events in scope: (part, grouped by, which events).
LEDGER_PARTS = (
    ("responses", ("action",), ""),
    ("trend", ("day", "action"), ""),
    ("routes", ("action", "source"), " WHERE action IN ('object', 'unsubscribe')"),
)


def ledger_counts(*, scope: Scope, tzname: str) -> list[dict]:
    """Rows ``{"part", "action", "source", "day", "events", "members"}``: the ledger
    events in scope (acknowledgements of the versions, objections and withdrawals for
    the purpose, unsubscribes; by targeted members of the jurisdiction, in the window)
    counted three ways over one reading of them (a CTE; PostgreSQL materialises one
    read more than once): per action ("responses"), per day (in ``tzname``) and action
    ("trend"), per action and source for objections and unsubscribes ("routes").
    ``members`` counts each member once per group. Columns a part does not group by
    are NULL. The events are joined to the jurisdiction's members first (fenced) and
    only those tested as targeted: tested first, every event of the ledger is, and
    PostgreSQL then reads them in member order to merge with the members."""
    if not scope.campaign_ids:
        return []
    targeted, targeted_params = _targeted("e", scope)
    day, day_params = connection.ops.datetime_cast_date_sql("e.created_at", [], tzname)
    events = (
        f"SELECT e.member_id, e.action, e.source, e.day FROM"
        f" (SELECT e.member_id, e.action, e.source, {day} AS day"
        f" FROM {table(ConsentEvent)} e JOIN {table(Member)} m ON m.id = e.member_id"
        f" WHERE (e.action = 'acknowledge'"
        f"  AND e.notice_version_id IN ({placeholders(len(scope.version_ids))})"
        "  OR e.action IN ('object', 'withdraw-objection') AND e.purpose_id = %s"
        "  OR e.action = 'unsubscribe')"
        f" AND m.jurisdiction = %s AND e.created_at >= %s AND e.created_at < %s{_fence()}) e"
        f" WHERE {targeted}"
    )
    parts = []
    for part, keys, where in LEDGER_PARTS:
        columns = ", ".join(
            key if key in keys else f"NULL AS {key}" for key in ("action", "source", "day")
        )
        parts.append(
            f"SELECT '{part}' AS part, {columns}, count(*) AS events,"
            f" count(DISTINCT member_id) AS members FROM scoped{where} GROUP BY {', '.join(keys)}"
        )
    sql = f"WITH scoped AS ({events}) " + " UNION ALL ".join(parts)
    params = [*day_params, *scope.version_ids, scope.purpose_id, scope.jurisdiction,
              *_window(scope), *targeted_params]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return row_dicts(cursor)


def _entry_of(objection: str) -> str:
    """The id of the first "objected" feed entry for the objection's member at or after
    it (NULL if none yet)."""
    return (
        f"(SELECT min(s.id) FROM {table(SuppressionChange)} s"
        f" WHERE s.purpose_id = %s AND s.member_id = {objection}.member_id"
        f" AND s.reason = '{OBJECTED}' AND s.recorded_at >= {objection}.created_at)"
    )


def objection_times(*, scope: Scope, excluded_reason: str, client_ids: list[int]) -> list[dict]:
    """Rows ``{"feed_seconds", "policy_out", "ack_0", "ack_1", ...}``, one per objection:
    seconds from the objection to its feed entry (None: no entry), whether the member's
    feed state is out by the jurisdiction's policy (``excluded_reason``; such an
    objection changes nothing the feed says, so it makes no entry), and for the n-th of
    ``client_ids`` (``ack_n``) seconds from the objection to that consumer's first
    report at or past the entry (None: no entry, or not acknowledged yet). The
    objections in scope are found once, their entries once, for the feed and every
    consumer."""
    if not scope.campaign_ids:
        return []
    objections, objection_params = _objections(scope)
    acks = "".join(
        ", "
        + _seconds(
            f"(SELECT r.reported_at FROM {table(ConsumerPositionReport)} r"
            " WHERE r.client_id = %s AND r.purpose_id = %s AND r.cursor >= f.entry_id"
            " ORDER BY r.cursor LIMIT 1)",
            "f.created_at",
        )
        + f" AS ack_{n}"
        for n in range(len(client_ids))
    )
    sql = (
        f"SELECT {_seconds('s.recorded_at', 'f.created_at')} AS feed_seconds,"
        f" EXISTS (SELECT 1 FROM {table(SuppressionState)} ss WHERE ss.purpose_id = %s"
        f"  AND ss.member_id = f.member_id AND ss.reason = %s) AS policy_out{acks}"
        f" FROM (SELECT o.member_id, o.created_at, {_entry_of('o')} AS entry_id"
        f" FROM ({objections}) o{_fence()}) f"
        f" LEFT JOIN {table(SuppressionChange)} s ON s.id = f.entry_id"
    )
    ack_params = [p for pk in client_ids for p in (pk, scope.purpose_id)]
    params = [scope.purpose_id, excluded_reason, *ack_params, scope.purpose_id, *objection_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return row_dicts(cursor)
