"""The suppression export's statement on PostgreSQL: the CSV made by the database
itself (``COPY (query) TO STDOUT``), streamed as it comes, in constant memory."""

from collections.abc import Sequence
from typing import IO, Any

from django.db import connection

from db import name


def suppressions_copy_csv(
    *, query_sql: str, query_params: Sequence[Any], since_format: str, out: IO[bytes]
) -> int:
    """Write the rows of ``query_sql`` (the ORM's SELECT of external id, jurisdiction,
    reason and since) to ``out`` as CSV without a header, ``since`` in UTC as
    ``since_format`` (``to_char``'s); return the rows written."""
    c0, c1, c2, c3 = (name(f"c{i}") for i in range(4))
    # COPY takes no parameters: they are bound into the text by the driver's own quoting.
    # PostgreSQL's DatabaseOperations (COPY runs there only); the stubs type the base class.
    query = connection.ops.compose_sql(  # type: ignore[attr-defined]
        f"SELECT {c0}, {c1}, {c2}, to_char({c3} AT TIME ZONE 'UTC', %s)"
        f" FROM ({query_sql}) AS s ({c0}, {c1}, {c2}, {c3})",
        [since_format, *query_params],
    )
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy:
            for block in copy:
                out.write(block)
        return cursor.cursor.rowcount
