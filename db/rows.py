"""One UPDATE for many rows, each with its own values.

Django's ``bulk_update`` writes ``SET col = CASE id WHEN ... END`` for every
column, which PostgreSQL plans and evaluates per row in O(rows x columns), and
it can only assign values, never merge them with what the row holds now. Here
the rows travel as a relation ``v`` (``unnest`` of one array per column on
PostgreSQL, a ``VALUES`` list elsewhere) and the caller (a module of this package)
writes the assignments in SQL, so they can be conditional (``CASE WHEN d.status =
...``) and commute with concurrent writers (keep the earlier of two timestamps, the
higher rank).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Model

from db import column, name, placeholders

SQLITE_MAX_PARAMETERS = 30_000


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str  # the PostgreSQL array element type: bigint, integer, text, boolean, timestamptz


def update_from_rows(
    *,
    model: type[Model],
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    assignments: Mapping[str, str],
    params: Sequence[Any] = (),
) -> int:
    """``UPDATE table AS d SET <assignments> FROM <rows> AS v WHERE d.id = v.id``.

    ``columns`` name the values of each row; the first is the primary key ``id``.
    ``assignments`` map a field of ``model`` to an SQL expression over ``d`` (the
    row as it is) and ``v`` (the values given for it), whose own values are
    ``params``, in the order the expressions name them. Returns the rows updated.
    """
    if not rows:
        return 0
    if columns[0].name != "id":
        raise ValueError("the first column must be the primary key, id")
    # Rows in id order, so that two statements on overlapping rows (a sender recording
    # its batch while the events processor merges the same deliveries) lock them in the
    # same order: in arbitrary orders they deadlocked (bench/e2e.py, 2 senders + events).
    rows = sorted(rows, key=lambda row: row[0])
    sets = ", ".join(
        f"{column(model, target)} = {expression}" for target, expression in assignments.items()
    )
    if connection.vendor == "postgresql":
        batches = [_unnest(columns, rows)]
    else:
        # SQLite caps the parameters of one statement (32,766 since 3.32).
        size = max(1, (SQLITE_MAX_PARAMETERS - len(params)) // len(columns))
        batches = [_values(columns, rows[i : i + size]) for i in range(0, len(rows), size)]
    table = name(model._meta.db_table)
    updated = 0
    with connection.cursor() as cursor:
        for source, values in batches:
            # The statement starts with UPDATE (not WITH): SQLite reports the rowcount
            # of plain DML statements only.
            cursor.execute(
                f"UPDATE {table} AS d SET {sets} FROM {source} WHERE d.id = v.id",
                [*params, *values],
            )
            updated += cursor.rowcount
    return updated


def _unnest(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> tuple[str, list]:
    arrays = [list(values) for values in zip(*rows, strict=True)]
    casts = ", ".join(f"%s::{column.pg_type}[]" for column in columns)
    names = ", ".join(name(column.name) for column in columns)
    return f"unnest({casts}) AS v ({names})", arrays


def _values(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> tuple[str, list]:
    adapt = [_adapter(column) for column in columns]
    row_sql = f"({placeholders(len(columns))})"
    params = [adapt[i](value) for row in rows for i, value in enumerate(row)]
    # A VALUES list names its columns column1, column2, ...
    names = ", ".join(f"column{i} AS {name(column.name)}" for i, column in enumerate(columns, 1))
    values = ", ".join([row_sql] * len(rows))
    return f"(SELECT {names} FROM (VALUES {values})) AS v", params


def _adapter(column: Column):
    # Raw SQL on SQLite: datetimes must be the strings the ORM stores, or comparisons
    # with stored values are between different formats.
    if column.pg_type == "timestamptz":
        return connection.ops.adapt_datetimefield_value
    return lambda value: value
