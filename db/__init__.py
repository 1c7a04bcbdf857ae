"""The one home of Renotify's raw SQL: one module per concern, each only running
statements.

Raw SQL is used where the ORM cannot say it (COPY, ``unnest``, a data-modifying
``WITH``, ``SKIP LOCKED`` with a ``LIMIT`` that holds) or where building the ORM's
query cost more than running it on a hot path. Every statement here follows one rule:

- **Identifiers** reach the SQL text only through the helpers below, which quote them
  with ``connection.ops.quote_name``: tables always as ``table(Model)`` (from the
  model's ``_meta``, so a renamed table follows), columns as ``column(Model, "field")``
  wherever a list of them is built from fields, and ``name("...")`` for a name the
  models do not own (a temporary table, a function). Column names a statement writes
  out in its own fixed text (``WHERE campaign_id = %s``) are never formatted from
  anything; each statement's comparison test with the ORM fails if one changes.
- **Values** travel only as query parameters, never formatted into the text.
- **Rows** are read by column name, never by offset: ``row_dicts`` / ``row_dict`` for
  the few rows most statements return, ``row_index`` (a name -> offset map computed
  once per statement, not a dict per row) where many rows come back on a hot path.
- **Decisions stay with the services**: which rows, what status, when. A function here
  takes plain values (ids, statuses, times) and runs its statement; the only choices
  it makes are how to say the statement on each database.

Every statement has a test comparing what it does with the ORM's equivalent, on SQLite
and on PostgreSQL (``tests/test_db.py`` and the feature's own tests). ruff's S608
(SQL built from strings) is on everywhere else in the project.
"""

from typing import Any

from django.db import connection
from django.db.models import Field, Model


def name(identifier: str) -> str:
    """``identifier`` quoted for the database in use."""
    return connection.ops.quote_name(identifier)


def table(model: type[Model]) -> str:
    """The model's table, quoted."""
    return name(model._meta.db_table)


def column(model: type[Model], field: str) -> str:
    """The column of the model's ``field`` (a field name or attname), quoted."""
    found = model._meta.get_field(field)
    if not isinstance(found, Field) or not found.column:
        raise TypeError(f"{model.__name__}.{field} is not a column")
    return name(found.column)


def placeholders(count: int) -> str:
    """``%s, %s, ...``: ``count`` parameters."""
    return ", ".join(["%s"] * count)


def row_index(cursor) -> dict[str, int]:
    """Each result column's offset, by name (from ``cursor.description``)."""
    return {column[0]: i for i, column in enumerate(cursor.description)}


def row_dict(cursor) -> dict[str, Any] | None:
    """The next row as ``{column: value}``, None when there is none."""
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip(row_index(cursor), row, strict=True))


def row_dicts(cursor) -> list[dict[str, Any]]:
    """Every remaining row as ``{column: value}``."""
    names = list(row_index(cursor))
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
