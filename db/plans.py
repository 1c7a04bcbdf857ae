"""Planning a statement for the values it runs with, where one plan cannot serve all.

Connections prepare the statements they repeat (``prepare_threshold`` in settings), and
PostgreSQL may then keep one generic plan for every value. For a search by part of a
name that is wrong both ways: a rare pattern wants the trigram index, a common one the
id order; the generic plan cannot tell which and picks the id walk, which reads the
whole table when nothing matches (a second at a million staff actions)."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def custom_plans() -> Iterator[None]:
    """Statements run in the block are planned for their own values (PostgreSQL; a
    no-op elsewhere). The setting holds for the block's transaction only."""
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        yield
