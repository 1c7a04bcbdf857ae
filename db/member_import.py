"""The member import's statements: stage rows in temporary tables (COPY on PostgreSQL,
executemany on SQLite), reject repeated external_ids and erased members, count or upsert
the changes; and the same upsert for a batch of rows given as parameters (the API's bulk
upsert, ``rows_upsert``), so both write members by one rule.

The vendors differ only in bulk load, the batch's source and change counting;
``stager(vendor)`` gives the one for the database in use.

A staged row's ``person_key`` is NULL when the source did not say (a CSV file without
the column, a JSON object without the key): the member keeps the key they have (a new
member gets none). An empty string unlinks the member.
"""

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from datetime import datetime

from django.db import connection

from accounts.models import Member
from db import name, placeholders, row_index, table

# The temporary tables (one import at a time per connection: each starts by dropping them).
STAGING = "renotify_member_import"
REJECTED = "renotify_member_import_rejected"
STAGED_COLUMNS = (
    "line",
    "external_id",
    "email",
    "locale",
    "country",
    "jurisdiction",
    "person_key",
)
# A staged row: (line, external_id, email, locale, country, jurisdiction, person_key),
# person_key None when the source did not say.
StagedRow = tuple[int, str, str, str, str, str, str | None]
# The columns a batch's source (``s``) offers the upsert: all but the line.
SOURCE_COLUMNS = STAGED_COLUMNS[1:]
# A row of a batch given as parameters: a StagedRow without its line.
SourceRow = tuple[str, str, str, str, str, str | None]
ERASED_REASON = "member erased: their personal data cannot be written again"


def _address_health_sql(*, old: str, new: str) -> str:
    """SQL assigning (email_status, email_status_changed_at) after an upsert of the row
    aliased ``old`` (as stored) with ``new`` (as written): the health of a new address
    is the first parameter, noted as changed only when it was something else (the
    second parameter, the same value)."""
    changed = f"{old}.email <> {new}.email"
    reset = f"{changed} AND {old}.email_status <> %s"
    return (
        f"email_status = CASE WHEN {changed} THEN %s ELSE {old}.email_status END,"
        f" email_status_changed_at = CASE WHEN {reset} THEN {new}.updated_at"
        f" ELSE {old}.email_status_changed_at END"
    )


class Stager(ABC):
    """The staging tables' statements."""

    def create(self) -> None:
        """(Re)create both temporary tables, empty."""
        staging, rejected = name(STAGING), name(REJECTED)
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {staging}")
            cursor.execute(
                f"CREATE TEMPORARY TABLE {staging} (line integer NOT NULL,"
                " external_id text NOT NULL, email text NOT NULL, locale text NOT NULL,"
                " country text NOT NULL, jurisdiction text NOT NULL, person_key text)"
            )
            cursor.execute(f"DROP TABLE IF EXISTS {rejected}")
            cursor.execute(
                f"CREATE TEMPORARY TABLE {rejected} (line integer NOT NULL, reason text NOT NULL)"
            )

    def drop(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {name(STAGING)}")
            cursor.execute(f"DROP TABLE IF EXISTS {name(REJECTED)}")

    def staged_count(self) -> int:
        """The rows staged so far (the tables must exist)."""
        return self._count(STAGING)

    def rejected_count(self) -> int:
        """The rows rejected so far (the tables must exist)."""
        return self._count(REJECTED)

    def _count(self, temporary_table: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) AS n FROM {name(temporary_table)}")
            return cursor.fetchone()[row_index(cursor)["n"]]

    @abstractmethod
    def write(self, rows: Sequence[StagedRow]) -> None:
        """Append rows to the staging table, each vendor its fastest way."""

    @abstractmethod
    def write_rejected(self, rows: Sequence[tuple[int, str]]) -> None:
        """Append (line, reason) rows to the rejected table."""

    def reject_duplicates(self) -> int:
        """Move every repeat of an external_id after its first line to the rejected table."""
        staging, rejected = name(STAGING), name(REJECTED)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {rejected} (line, reason)"
                " SELECT s.line, 'duplicate external_id (first seen on line '"
                f" || f.first_line || ')' FROM {staging} s JOIN ("
                f" SELECT external_id, min(line) AS first_line FROM {staging}"
                " GROUP BY external_id HAVING count(*) > 1"
                ") f ON f.external_id = s.external_id AND s.line > f.first_line"
            )
            duplicates = cursor.rowcount
            if duplicates:
                # Rows rejected while reading were never staged: the staged lines that
                # are in the rejected table now are exactly the duplicates.
                cursor.execute(f"DELETE FROM {staging} WHERE line IN (SELECT line FROM {rejected})")
        return duplicates

    def reject_erased(self) -> int:
        """Move every staged row of an erased member to the rejected table."""
        staging, rejected = name(STAGING), name(REJECTED)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {rejected} (line, reason) SELECT s.line, %s"
                f" FROM {table(Member)} m JOIN {staging} s ON s.external_id = m.external_id"
                " WHERE m.erased_at IS NOT NULL",
                [ERASED_REASON],
            )
            erased = cursor.rowcount
            if erased:
                cursor.execute(
                    f"DELETE FROM {staging} WHERE line IN"
                    f" (SELECT line FROM {rejected} WHERE reason = %s)",
                    [ERASED_REASON],
                )
        return erased

    def rejected(self, *, chunk: int) -> Iterator[tuple[int, str]]:
        """Every rejected (line, reason) in line order, fetched ``chunk`` rows at a time."""
        with connection.chunked_cursor() as cursor:
            cursor.execute(f"SELECT line, reason FROM {name(REJECTED)} ORDER BY line")
            at = row_index(cursor)
            line, reason = at["line"], at["reason"]
            while rows := cursor.fetchmany(chunk):
                for row in rows:
                    yield row[line], row[reason]

    def count_changes(self) -> tuple[int, int]:
        """(rows that would be created, rows that would be updated)."""
        changed = self._differs("m", "s", person_key="COALESCE(s.person_key, m.person_key)")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE m.id IS NULL) AS created,"
                " count(*) FILTER (WHERE m.id IS NOT NULL AND m.erased_at IS NULL"
                f" AND {changed}) AS updated"
                f" FROM {name(STAGING)} s LEFT JOIN {table(Member)} m"
                " ON m.external_id = s.external_id"
            )
            row = cursor.fetchone()
            at = row_index(cursor)
        return row[at["created"]], row[at["updated"]]

    @abstractmethod
    def _differs(self, old: str, new: str, *, person_key: str) -> str:
        """SQL true when the member aliased ``old`` differs from the row aliased ``new``
        whose person key is the expression ``person_key``."""

    def _upsert_sql(self, source: str, *, lookup: str | None = None) -> str:
        """Upsert the rows of ``source`` (a FROM item aliased ``s`` with
        ``SOURCE_COLUMNS``), each joined to its member as ``o`` by ``lookup`` (by
        default a plain LEFT JOIN, the planner's to choose). Parameters: the status of
        a new member, created_at, updated_at, then the source's own, then the health of
        a new address twice."""
        members = table(Member)
        lookup = lookup or f"LEFT JOIN {members} o ON o.external_id = s.external_id"
        # The key the member keeps when the row does not say (NULL): resolved here, so
        # the row the upsert writes (``excluded``) holds the key as it will be.
        person_key = "COALESCE(s.person_key, o.person_key, '')"
        return (
            f"INSERT INTO {members} AS m (external_id, email, locale, country, jurisdiction,"
            " person_key, email_status, email_status_changed_at, created_at, updated_at)"
            " SELECT s.external_id, s.email, s.locale, s.country, s.jurisdiction,"
            f" {person_key}, %s, NULL, %s, %s"
            f" FROM {source} {lookup}"
            # Unchanged rows never reach ON CONFLICT, which would lock (and so write)
            # every conflicting row before looking at its WHERE; nor do erased members.
            " WHERE o.id IS NULL OR (o.erased_at IS NULL AND "
            + self._differs("o", "s", person_key=person_key)
            + ")"
            # In index order: inserts into the unique index stay local.
            " ORDER BY s.external_id"
            " ON CONFLICT (external_id) DO UPDATE SET email = excluded.email,"
            " locale = excluded.locale, country = excluded.country,"
            " jurisdiction = excluded.jurisdiction, person_key = excluded.person_key,"
            " updated_at = excluded.updated_at, "
            # A new address's health starts again; the unsubscribe (``unsubscribed_at``)
            # is untouched.
            + _address_health_sql(old="m", new="excluded")
            # Still checked here: a concurrent writer may have changed (or erased) the
            # row since.
            + " WHERE m.erased_at IS NULL AND "
            + self._differs("m", "excluded", person_key="excluded.person_key")
        )

    def _staged_upsert_sql(self) -> str:
        return self._upsert_sql(f"{name(STAGING)} s")

    @abstractmethod
    def upsert(self, *, status: str, new_address_health: str, now: datetime) -> tuple[int, int]:
        """Write the staged rows (new members with ``status``, a changed address's
        health ``new_address_health``, both written at ``now``); return (created,
        updated). Unchanged rows are not written."""

    def rows_upsert(
        self,
        rows: Sequence[SourceRow],
        *,
        status: str,
        new_address_health: str,
        now: datetime,
    ) -> dict[str, bool]:
        """The staged upsert for ``rows`` given as parameters (no staging table), in one
        statement: the external ids written, each True when it was created. Unchanged
        rows and erased members are not written. The rows' external ids are distinct."""
        if not rows:
            return {}
        source, params = self._rows_source(rows)
        created_at = connection.ops.adapt_datetimefield_value(now)
        with connection.cursor() as cursor:
            existing = self._existing(cursor, [row[0] for row in rows])
            cursor.execute(
                f"{self._upsert_sql(source, lookup=self._batch_lookup())}"
                f" RETURNING external_id{self._inserted_column()}",
                [status, created_at, created_at, *params, new_address_health, new_address_health],
            )
            at = row_index(cursor)
            written = cursor.fetchall()
        return {
            row[at["external_id"]]: (
                bool(row[at["inserted"]])
                if "inserted" in at
                else row[at["external_id"]] not in existing
            )
            for row in written
        }

    @abstractmethod
    def _rows_source(self, rows: Sequence[SourceRow]) -> tuple[str, list]:
        """A FROM item aliased ``s`` with ``SOURCE_COLUMNS`` holding ``rows``, and its
        parameters."""

    def _inserted_column(self) -> str:
        """A RETURNING column ``inserted`` when the database can tell (else ``""``)."""
        return ""

    def _batch_lookup(self) -> str | None:
        """How a batch's rows find their members (None: as a staged import does)."""
        return None

    def _existing(self, cursor, external_ids: list[str]) -> set[str]:
        """The external ids that are members already, when ``_inserted_column`` cannot
        tell inserted rows from updated ones (else nothing is read)."""
        return set()


_COPY_SPECIAL = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_NULL = "\\N"


def _copy_escape(value: str) -> str:
    return value.translate(_COPY_SPECIAL)


class _PostgresStager(Stager):
    def _rows_source(self, rows: Sequence[SourceRow]) -> tuple[str, list]:
        # One JSON document (as db.tracking's events): one parameter however many rows,
        # where an array per column is dumped value by value in Python.
        record = ", ".join(f"{column} text" for column in SOURCE_COLUMNS)
        document = json.dumps([dict(zip(SOURCE_COLUMNS, row, strict=True)) for row in rows])
        return f"jsonb_to_recordset(%s::jsonb) AS s ({record})", [document]

    def _inserted_column(self) -> str:
        # xmax = 0 on a row version that INSERT created, non-zero on one ON CONFLICT updated.
        return ", (xmax = 0) AS inserted"

    def _batch_lookup(self) -> str:
        # Each of at most a few thousand rows by the unique index, whatever the
        # statistics say: on a table growing from empty (a first sync), stale ones make
        # a plain join read the whole table for every batch. OFFSET 0 keeps the
        # planner from turning the lookup back into a join.
        return (
            f"LEFT JOIN LATERAL (SELECT * FROM {table(Member)} o"
            " WHERE o.external_id = s.external_id OFFSET 0) o ON true"
        )

    def write(self, rows: Sequence[StagedRow]) -> None:
        if not rows:
            return
        # COPY text format, one write per batch. Only external_id and person_key can hold
        # a character COPY treats specially: the other fields were validated to exclude
        # them. A person key the row does not give is NULL (\N).
        text = "".join(
            f"{line}\t{_copy_escape(external_id)}\t{email}\t{locale}\t{country}\t{place}"
            f"\t{_COPY_NULL if person_key is None else _copy_escape(person_key)}\n"
            for line, external_id, email, locale, country, place, person_key in rows
        )
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(
                f"COPY {name(STAGING)} ({', '.join(STAGED_COLUMNS)}) FROM STDIN"
            ) as copy,
        ):
            copy.write(text)

    def write_rejected(self, rows: Sequence[tuple[int, str]]) -> None:
        if not rows:
            return
        # A reason may quote part of a value (a locale, a country code), never a NUL.
        text = "".join(f"{line}\t{_copy_escape(reason)}\n" for line, reason in rows)
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {name(REJECTED)} (line, reason) FROM STDIN") as copy,
        ):
            copy.write(text)

    def _differs(self, old: str, new: str, *, person_key: str) -> str:
        return (
            f"({old}.email, {old}.locale, {old}.country, {old}.person_key)"
            f" IS DISTINCT FROM ({new}.email, {new}.locale, {new}.country, {person_key})"
        )

    def upsert(self, *, status: str, new_address_health: str, now: datetime) -> tuple[int, int]:
        with connection.cursor() as cursor:
            # xmax = 0 on a row version that INSERT created, non-zero on one ON CONFLICT updated.
            cursor.execute(
                f"WITH up AS ({self._staged_upsert_sql()} RETURNING (xmax = 0) AS inserted)"
                " SELECT count(*) FILTER (WHERE inserted) AS created,"
                " count(*) FILTER (WHERE NOT inserted) AS updated"
                " FROM up",
                [status, now, now, new_address_health, new_address_health],
            )
            row = cursor.fetchone()
            at = row_index(cursor)
        return row[at["created"]], row[at["updated"]]


class _SqliteStager(Stager):
    def _rows_source(self, rows: Sequence[SourceRow]) -> tuple[str, list]:
        # SQLite names a VALUES list's columns column1, column2, ...
        named = ", ".join(f"column{i} AS {c}" for i, c in enumerate(SOURCE_COLUMNS, start=1))
        values = ", ".join([f"({placeholders(len(SOURCE_COLUMNS))})"] * len(rows))
        return f"(SELECT {named} FROM (VALUES {values})) s", [v for row in rows for v in row]

    def _existing(self, cursor, external_ids: list[str]) -> set[str]:
        # One writer at a time (the caller's transaction holds it): exact until commit.
        cursor.execute(
            f"SELECT external_id FROM {table(Member)}"
            f" WHERE external_id IN ({placeholders(len(external_ids))})",
            external_ids,
        )
        at = row_index(cursor)["external_id"]
        return {row[at] for row in cursor.fetchall()}

    def write(self, rows: Sequence[StagedRow]) -> None:
        if not rows:
            return
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {name(STAGING)} ({', '.join(STAGED_COLUMNS)})"
                f" VALUES ({placeholders(len(STAGED_COLUMNS))})",
                rows,
            )

    def write_rejected(self, rows: Sequence[tuple[int, str]]) -> None:
        if not rows:
            return
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {name(REJECTED)} (line, reason) VALUES (%s, %s)", rows)

    def _differs(self, old: str, new: str, *, person_key: str) -> str:
        return (
            f"({old}.email, {old}.locale, {old}.country, {old}.person_key)"
            f" IS NOT ({new}.email, {new}.locale, {new}.country, {person_key})"
        )

    def upsert(self, *, status: str, new_address_health: str, now: datetime) -> tuple[int, int]:
        # SQLite has one writer at a time, so the count difference is exact.
        at = connection.ops.adapt_datetimefield_value(now)  # as the ORM stores it
        with connection.cursor() as cursor:
            before = self._members(cursor)
            cursor.execute(
                self._staged_upsert_sql(),
                [status, at, at, new_address_health, new_address_health],
            )
            written = cursor.rowcount
            created = self._members(cursor) - before
        return created, written - created

    def _members(self, cursor) -> int:
        cursor.execute(f"SELECT count(*) AS members FROM {table(Member)}")
        return cursor.fetchone()[row_index(cursor)["members"]]


def members_erased(*, external_ids: Sequence[str]) -> set[str]:
    """Which of ``external_ids`` name erased members, each looked up by the unique index
    (as a batch's upsert does: see ``_PostgresStager._batch_lookup``)."""
    if not external_ids:
        return set()
    members = table(Member)
    if connection.vendor == "postgresql":
        sql = (
            "SELECT s.external_id FROM jsonb_array_elements_text(%s::jsonb) AS s (external_id)"
            f" WHERE EXISTS (SELECT 1 FROM {members} o WHERE o.external_id = s.external_id"
            " AND o.erased_at IS NOT NULL OFFSET 0)"
        )
        params: list = [json.dumps(list(external_ids))]
    else:  # SQLite looks an IN list up by the index anyway
        sql = (
            f"SELECT external_id FROM {members}"
            f" WHERE external_id IN ({placeholders(len(external_ids))})"
            " AND erased_at IS NOT NULL"
        )
        params = list(external_ids)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        at = row_index(cursor)["external_id"]
        return {row[at] for row in cursor.fetchall()}


def stager(vendor: str) -> Stager:
    """The staging statements for ``vendor``'s database."""
    return {"postgresql": _PostgresStager, "sqlite": _SqliteStager}[vendor]()
