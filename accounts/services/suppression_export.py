"""Stream the suppression list (members whose effective state is "out") to a file.

Memory is constant in the number of members: rows are fetched in chunks from a
server-side cursor and written as they come. On PostgreSQL the CSV format is
produced by the database itself (``COPY (query) TO STDOUT``), which is what a
hand-written export would do; both paths write the same bytes.
"""

import csv
import io
import json
from datetime import UTC, datetime
from typing import IO

from django.conf import settings
from django.db import connection

from accounts.models import Purpose
from accounts.selectors import SUPPRESSION_COLUMNS, suppressions
from db import suppression_export as db_suppression_export

FORMATS = ("csv", "jsonl")
SINCE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
PG_SINCE_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS"Z"'


def suppressions_export(*, purpose: Purpose, out: IO[bytes], fmt: str = "csv") -> int:
    """Write the suppression list for ``purpose`` to ``out``; return the number of rows."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "csv" and connection.vendor == "postgresql":
        return _copy_csv(purpose, out)
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
    try:
        write = _csv_writer(text) if fmt == "csv" else _jsonl_writer(text)
        count = 0
        chunk = settings.RENOTIFY_EXPORT_CHUNK_SIZE
        for external_id, jurisdiction, reason, since in suppressions(purpose=purpose).iterator(
            chunk_size=chunk
        ):
            write((external_id, jurisdiction, reason, _utc(since).strftime(SINCE_FORMAT)))
            count += 1
    finally:
        text.flush()
        text.detach()  # leave ``out`` open for the caller
    return count


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _csv_writer(text: IO[str]):
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(SUPPRESSION_COLUMNS)
    return writer.writerow


def _jsonl_writer(text: IO[str]):
    def write(row: tuple) -> None:
        text.write(json.dumps(dict(zip(SUPPRESSION_COLUMNS, row, strict=True))) + "\n")

    return write


def _copy_csv(purpose: Purpose, out: IO[bytes]) -> int:
    query_sql, query_params = suppressions(purpose=purpose).query.sql_with_params()
    out.write((",".join(SUPPRESSION_COLUMNS) + "\n").encode())
    return db_suppression_export.suppressions_copy_csv(
        query_sql=query_sql, query_params=query_params, since_format=PG_SINCE_FORMAT, out=out
    )
