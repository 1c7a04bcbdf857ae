"""The liveness probe's statement."""

from django.db import connection


def database_answers() -> None:
    """One round trip to the database (raises when it does not answer)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
