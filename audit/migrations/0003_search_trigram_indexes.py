"""Trigram indexes for the console's search (part of a username or of a target's
name) on PostgreSQL: without them, a search that matches little reads the whole trail
(0.7 s at a million entries). The ORM's ``icontains`` compares ``UPPER(col::text)``,
so the indexes are on that expression.

pg_trgm ships with PostgreSQL and is a trusted extension (13+): the database's owner
may create it. SQLite has no such index: the search reads the table there.
"""

from django.db import migrations

COLUMNS = ("username", "target_label")
CREATE = ["CREATE EXTENSION IF NOT EXISTS pg_trgm"] + [
    f"CREATE INDEX staffaction_{column}_trgm ON audit_staffaction "
    f"USING gin ((UPPER(({column})::text)) gin_trgm_ops)"
    for column in COLUMNS
]
DROP = [f"DROP INDEX IF EXISTS staffaction_{column}_trgm" for column in COLUMNS]


def _on_postgresql(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_staff_action_append_only")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
