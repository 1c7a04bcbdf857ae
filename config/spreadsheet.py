"""CSV files meant for people, who open them in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
read as a formula by Excel, LibreOffice and Google Sheets (``=HYPERLINK(...)``
sends the reader somewhere; ``+cmd|...`` once ran commands). Following OWASP's
guidance on CSV injection, such a cell is written with a leading single quote,
which the spreadsheet shows as text. Exports meant for machines
(``export_suppressions``, the API) keep the exact values and never pass through here.
"""

import csv
from collections.abc import Iterable, Iterator
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell_neutralised(value: Any) -> Any:
    """``value`` as a spreadsheet will show it, never run it."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    """A file-like object whose write returns the line: csv.writer into a stream."""

    def write(self, value: str) -> str:
        return value


def csv_lines_for_people(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """The CSV text of ``header`` and ``rows``, a line at a time (for streaming),
    every cell neutralised."""
    writer = csv.writer(_Echo())
    yield writer.writerow(list(header))
    for row in rows:
        yield writer.writerow([cell_neutralised(value) for value in row])
