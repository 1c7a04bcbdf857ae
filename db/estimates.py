"""The planner's row estimate of a table, where an exact count(*) costs too much."""

from django.db import connection
from django.db.models import Model

from db import row_dict


def table_row_estimate(model: type[Model]) -> int | None:
    """PostgreSQL's estimate of the rows in ``model``'s table (``pg_class.reltuples``,
    as of the last ANALYZE or VACUUM; -1 or 0 before one ran); None elsewhere or when
    the table is not found."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        # The table's name as a value: pg_class stores it unquoted.
        cursor.execute(
            "SELECT reltuples::bigint AS estimate FROM pg_class WHERE relname = %s",
            [model._meta.db_table],
        )
        row = row_dict(cursor)
    return row["estimate"] if row else None
