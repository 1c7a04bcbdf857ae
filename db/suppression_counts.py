"""Members whose feed state for a purpose is ``state``, counted per purpose and
jurisdiction: the feed's state table joined to the members it names (``member_id`` is a
plain id there, not a foreign key the ORM could follow). One grouped statement."""

from django.db import connection

from accounts.models import Member, SuppressionState
from db import row_dicts, table


def suppression_state_counts(*, state: str) -> list[dict]:
    """Rows ``{"purpose_id", "jurisdiction", "n"}``."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s.purpose_id AS purpose_id, m.jurisdiction AS jurisdiction,"
            f" count(*) AS n FROM {table(SuppressionState)} s"
            f" JOIN {table(Member)} m ON m.id = s.member_id"
            " WHERE s.state = %s GROUP BY s.purpose_id, m.jurisdiction",
            [state],
        )
        return row_dicts(cursor)
