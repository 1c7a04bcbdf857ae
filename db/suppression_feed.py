"""The suppression feed's statements: serialize the feed's writers, append the entries
where the effective state differs from the feed's last word, bring that last word up
to date, and read a purpose's snapshot.

The effective state comes in as the ORM's SELECT (``query_sql``, from
``accounts.selectors.members_with_effective_state``), so the rule is written in one
place: its columns are read by the names the ORM gives them (``id``, ``external_id``,
``effective_state``, ``effective_reason``, ``effective_since``).
"""

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from django.db import connection

from accounts.models import Choice, SuppressionChange, SuppressionState
from db import column, row_dict, row_index, table

# Bytes of NDJSON handed on at once: one write per row would cost more than the row.
SNAPSHOT_BLOCK = 64 * 1024
SNAPSHOT_FETCH = 10_000
# PostgreSQL's to_char: the same text as ``accounts.services.suppression_snapshot``'s
# strftime, so both databases write the same ``since``.
PG_SINCE_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def feed_lock(*, lock_id: int) -> None:
    """PostgreSQL: hold the feed's advisory lock ``lock_id`` until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id])


def feed_head(*, purpose_id: int) -> int:
    """The purpose's last cursor (0 when its feed is empty)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COALESCE(MAX(id), 0) AS head FROM {table(SuppressionChange)}"
            " WHERE purpose_id = %s",
            [purpose_id],
        )
        row = row_dict(cursor)
    return int(row["head"]) if row else 0


def changes_append(
    *, purpose_id: int, query_sql: str, query_params: Sequence[Any], recorded_at: datetime
) -> int:
    """Append an entry for every member of ``query_sql`` whose state or reason differs
    from the feed's last word (or who has none yet), in member order; return how many."""
    change, state = table(SuppressionChange), table(SuppressionState)
    recorded = connection.ops.adapt_datetimefield_value(recorded_at)
    with connection.cursor() as cursor:
        cursor.execute(
            _changes_insert_sql(change, state, query_sql),
            [purpose_id, recorded, *query_params, purpose_id],
        )
        return cursor.rowcount


def _changes_insert_sql(change: str, state: str, query_sql: str) -> str:
    """The diff both ways append with: an entry for every member of ``query_sql`` whose
    effective state or reason differs from the feed's last word, or who has none.
    Parameters: purpose id, recorded at, the query's own, purpose id."""
    return (
        f"INSERT INTO {change}"
        " (purpose_id, member_id, external_id, state, reason, changed_at, recorded_at)"
        " SELECT %s, e.id, e.external_id, e.effective_state, e.effective_reason,"
        " e.effective_since, %s"
        f" FROM ({query_sql}) AS e"
        f" LEFT JOIN {state} AS s ON s.purpose_id = %s AND s.member_id = e.id"
        " WHERE s.id IS NULL OR s.state <> e.effective_state"
        " OR s.reason <> e.effective_reason"
        " ORDER BY e.id"
    )


def changes_append_with_states(
    *, purpose_id: int, query_sql: str, query_params: Sequence[Any], recorded_at: datetime
) -> int:
    """PostgreSQL: ``changes_append`` and ``states_upsert`` in one statement (the entries
    appended are the rows the upsert reads), one round trip on the choice's path;
    return the entries appended."""
    change, state = table(SuppressionChange), table(SuppressionState)
    cursor_column = column(SuppressionState, "cursor")
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH appended AS ({_changes_insert_sql(change, state, query_sql)}"
            " RETURNING id, purpose_id, member_id, external_id, state, reason, changed_at)"
            f" INSERT INTO {state}"
            f" (purpose_id, member_id, external_id, state, reason, changed_at, {cursor_column})"
            " SELECT purpose_id, member_id, external_id, state, reason, changed_at, id"
            " FROM appended"
            " ON CONFLICT (purpose_id, member_id) DO UPDATE SET"
            " external_id = excluded.external_id, state = excluded.state,"
            " reason = excluded.reason, changed_at = excluded.changed_at,"
            f" {cursor_column} = excluded.{cursor_column}",
            [purpose_id, recorded_at, *query_params, purpose_id],
        )
        return cursor.rowcount


def states_upsert(*, purpose_id: int, after: int) -> int:
    """Make the purpose's entries after cursor ``after`` the feed's last word on their
    members (one entry per member: they come from one ``changes_append``)."""
    target = table(SuppressionState)
    cursor_column = column(SuppressionState, "cursor")
    with connection.cursor() as cursor:
        # The WHERE clause is what lets SQLite read ON CONFLICT as the upsert's.
        cursor.execute(
            f"INSERT INTO {target}"
            f" (purpose_id, member_id, external_id, state, reason, changed_at, {cursor_column})"
            " SELECT purpose_id, member_id, external_id, state, reason, changed_at, id"
            f" FROM {table(SuppressionChange)} WHERE purpose_id = %s AND id > %s"
            " ON CONFLICT (purpose_id, member_id) DO UPDATE SET"
            " external_id = excluded.external_id, state = excluded.state,"
            " reason = excluded.reason, changed_at = excluded.changed_at,"
            f" {cursor_column} = excluded.{cursor_column}",
            [purpose_id, after],
        )
        return cursor.rowcount


def changes_page_json(*, purpose_id: int, after: int, limit: int) -> dict[str, Any]:
    """PostgreSQL: up to ``limit`` of the purpose's entries after cursor ``after`` as one
    JSON array made by the database (``entries``: cursor, external_id, state, reason,
    changed_at in UTC), the last cursor in it (``last_cursor``, None when empty), and
    whether more follow (``has_more``): one keyset read of ``limit + 1`` entries."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT '[' || COALESCE(string_agg('{\"cursor\": ' || id"
            " || ', \"external_id\": ' || to_json(external_id)::text"
            " || ', \"state\": ' || to_json(state)::text"
            " || ', \"reason\": ' || to_json(reason)::text"
            " || ', \"changed_at\": \"' || to_char(changed_at AT TIME ZONE 'UTC', %s)"
            " || '\"}', ', ' ORDER BY id) FILTER (WHERE n <= %s), '') || ']' AS entries,"
            " MAX(id) FILTER (WHERE n <= %s) AS last_cursor, COUNT(*) > %s AS has_more"
            " FROM (SELECT id, external_id, state, reason, changed_at,"
            "  row_number() OVER (ORDER BY id) AS n"
            f"  FROM {table(SuppressionChange)} WHERE purpose_id = %s AND id > %s"
            "  ORDER BY id LIMIT %s) AS s",
            [PG_SINCE_FORMAT, limit, limit, limit, purpose_id, after, limit + 1],
        )
        row = row_dict(cursor)
    assert row is not None  # an aggregate always returns its one row
    return row


def snapshot_isolate() -> None:
    """PostgreSQL, first statement of a transaction: every later statement of it reads
    one snapshot (the head and the rows agree)."""
    with connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def snapshot_ndjson_copy(*, purpose_id: int) -> Iterator[bytes]:
    """PostgreSQL: the purpose's suppressed members as NDJSON lines
    (``{"external_id", "reason", "since"}``), made by the database itself and streamed
    in blocks of about ``SNAPSHOT_BLOCK`` bytes."""
    block = bytearray()
    statement = snapshot_ndjson_copy_sql(purpose_id=purpose_id)
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for row in copy:
            block += row
            if len(block) >= SNAPSHOT_BLOCK:
                yield bytes(block)
                block.clear()
    if block:
        yield bytes(block)


def snapshot_ndjson_copy_sql(*, purpose_id: int) -> str:
    """The COPY statement ``snapshot_ndjson_copy`` runs (the benchmark's floor runs it
    too), its values bound into the text: COPY takes no parameters."""
    # COPY's CSV format writes a value as it is unless it holds the delimiter, the
    # quote character or a line break; JSON text escapes every control character, so
    # with \x01 and \x02 as those characters each line is the JSON object, untouched.
    # Concatenated rather than json_build_object (a quarter faster), the strings
    # escaped by to_json; laid out as Python's json.dumps lays out the SQLite lines.
    query = connection.ops.compose_sql(  # type: ignore[attr-defined]
        "SELECT '{\"external_id\": ' || to_json(external_id)::text"
        " || ', \"reason\": ' || to_json(reason)::text"
        " || ', \"since\": \"' || to_char(changed_at AT TIME ZONE 'UTC', %s) || '\"}'"
        f" FROM {table(SuppressionState)} WHERE purpose_id = %s AND state = %s",
        [PG_SINCE_FORMAT, purpose_id, Choice.OUT.value],
    )
    return f"COPY ({query}) TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02')"


def snapshot_rows(*, purpose_id: int) -> Iterator[tuple[int, str | None, str | None, Any]]:
    """The purpose's head and suppressed members read by one statement (so one
    snapshot on any database): ``(head, external_id, reason, changed_at)`` per member;
    one row ``(head, None, None, None)`` when none is suppressed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT h.head, s.external_id, s.reason, s.changed_at"
            f" FROM (SELECT COALESCE(MAX(id), 0) AS head FROM {table(SuppressionChange)}"
            "  WHERE purpose_id = %s) AS h"
            f" LEFT JOIN {table(SuppressionState)} AS s"
            " ON s.purpose_id = %s AND s.state = %s",
            [purpose_id, purpose_id, Choice.OUT.value],
        )
        at = row_index(cursor)
        head, ext, reason, since = at["head"], at["external_id"], at["reason"], at["changed_at"]
        while rows := cursor.fetchmany(SNAPSHOT_FETCH):
            for row in rows:
                yield row[head], row[ext], row[reason], row[since]
