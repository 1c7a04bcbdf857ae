"""The member import's statements: stage rows in temporary tables (COPY on PostgreSQL,
executemany on SQLite), reject repeated external_ids, count or upsert the changes.

The vendors differ only in bulk load and change counting; ``stager(vendor)`` gives the
one for the database in use.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from datetime import datetime

from django.db import connection

from accounts.models import Member
from db import name, placeholders, row_index, table

# The temporary tables (one import at a time per connection: each starts by dropping them).
STAGING = "renotify_member_import"
REJECTED = "renotify_member_import_rejected"
STAGED_COLUMNS = ("line", "external_id", "email", "locale", "country", "jurisdiction")
# A staged row: (line, external_id, email, locale, country, jurisdiction).
StagedRow = tuple[int, str, str, str, str, str]


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
                " country text NOT NULL, jurisdiction text NOT NULL)"
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
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE m.id IS NULL) AS created,"
                f" count(*) FILTER (WHERE m.id IS NOT NULL AND {self._changed('s')}) AS updated"
                f" FROM {name(STAGING)} s LEFT JOIN {table(Member)} m"
                " ON m.external_id = s.external_id"
            )
            row = cursor.fetchone()
            at = row_index(cursor)
        return row[at["created"]], row[at["updated"]]

    @abstractmethod
    def _changed(self, new: str) -> str:
        """SQL true when member ``m`` differs from the row aliased ``new``."""

    def _upsert_sql(self) -> str:
        """Parameters: the status of a new member, created_at, updated_at, then the
        health of a new address twice."""
        members = table(Member)
        return (
            f"INSERT INTO {members} AS m (external_id, email, locale, country, jurisdiction,"
            " email_status, email_status_changed_at, created_at, updated_at)"
            " SELECT external_id, email, locale, country, jurisdiction, %s, NULL, %s, %s"
            f" FROM {name(STAGING)} s"
            # Unchanged rows never reach ON CONFLICT, which would lock (and so write)
            # every conflicting row before looking at its WHERE.
            f" WHERE NOT EXISTS (SELECT 1 FROM {members} o WHERE o.external_id = s.external_id"
            " AND o.email = s.email AND o.locale = s.locale AND o.country = s.country)"
            # In index order: inserts into the unique index stay local.
            " ORDER BY s.external_id"
            " ON CONFLICT (external_id) DO UPDATE SET email = excluded.email,"
            " locale = excluded.locale, country = excluded.country,"
            " jurisdiction = excluded.jurisdiction, updated_at = excluded.updated_at, "
            # A new address's health starts again; the unsubscribe (``unsubscribed_at``)
            # is untouched.
            + _address_health_sql(old="m", new="excluded")
            # Still checked here: a concurrent writer may have changed the row since.
            + f" WHERE {self._changed('excluded')}"
        )

    @abstractmethod
    def upsert(self, *, status: str, new_address_health: str, now: datetime) -> tuple[int, int]:
        """Write the staged rows (new members with ``status``, a changed address's
        health ``new_address_health``, both written at ``now``); return (created,
        updated). Unchanged rows are not written."""


_COPY_SPECIAL = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_escape(value: str) -> str:
    return value.translate(_COPY_SPECIAL)


class _PostgresStager(Stager):
    def write(self, rows: Sequence[StagedRow]) -> None:
        if not rows:
            return
        # COPY text format, one write per batch. Only external_id can hold a character
        # COPY treats specially: the other fields were validated to exclude them.
        text = "".join(
            f"{line}\t{_copy_escape(external_id)}\t{email}\t{locale}\t{country}\t{place}\n"
            for line, external_id, email, locale, country, place in rows
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

    def _changed(self, new: str) -> str:
        return (
            "(m.email, m.locale, m.country)"
            f" IS DISTINCT FROM ({new}.email, {new}.locale, {new}.country)"
        )

    def upsert(self, *, status: str, new_address_health: str, now: datetime) -> tuple[int, int]:
        with connection.cursor() as cursor:
            # xmax = 0 on a row version that INSERT created, non-zero on one ON CONFLICT updated.
            cursor.execute(
                f"WITH up AS ({self._upsert_sql()} RETURNING (xmax = 0) AS inserted)"
                " SELECT count(*) FILTER (WHERE inserted) AS created,"
                " count(*) FILTER (WHERE NOT inserted) AS updated"
                " FROM up",
                [status, now, now, new_address_health, new_address_health],
            )
            row = cursor.fetchone()
            at = row_index(cursor)
        return row[at["created"]], row[at["updated"]]


class _SqliteStager(Stager):
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

    def _changed(self, new: str) -> str:
        return f"(m.email, m.locale, m.country) IS NOT ({new}.email, {new}.locale, {new}.country)"

    def upsert(self, *, status: str, new_address_health: str, now: datetime) -> tuple[int, int]:
        # SQLite has one writer at a time, so the count difference is exact.
        at = connection.ops.adapt_datetimefield_value(now)  # as the ORM stores it
        with connection.cursor() as cursor:
            before = self._members(cursor)
            cursor.execute(
                self._upsert_sql(), [status, at, at, new_address_health, new_address_health]
            )
            written = cursor.rowcount
            created = self._members(cursor) - before
        return created, written - created

    def _members(self, cursor) -> int:
        cursor.execute(f"SELECT count(*) AS members FROM {table(Member)}")
        return cursor.fetchone()[row_index(cursor)["members"]]


def stager(vendor: str) -> Stager:
    """The staging statements for ``vendor``'s database."""
    return {"postgresql": _PostgresStager, "sqlite": _SqliteStager}[vendor]()
