"""The suppression feed becomes append-only, as the ledger is.

Downstream pipelines apply the feed's entries by cursor: an entry changed or removed
after a pipeline read it would leave the pipeline and the feed disagreeing, with
nothing to show it. The same triggers as the ledger's (migration 0002, whose
PostgreSQL function these reuse) refuse UPDATE, DELETE and TRUNCATE.
"""

from django.db import migrations

TABLE = "accounts_suppressionchange"
MESSAGE = "the suppression feed is append-only"

POSTGRES_CREATE = f"""
CREATE TRIGGER suppression_feed_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION renotify_ledger_append_only();
CREATE TRIGGER suppression_feed_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION renotify_ledger_append_only();
"""
POSTGRES_DROP = f"""
DROP TRIGGER IF EXISTS suppression_feed_no_truncate ON {TABLE};
DROP TRIGGER IF EXISTS suppression_feed_no_update_delete ON {TABLE};
"""
SQLITE_CREATE = [
    f"CREATE TRIGGER suppression_feed_no_update BEFORE UPDATE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (UPDATE refused)'); END;",
    f"CREATE TRIGGER suppression_feed_no_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (DELETE refused)'); END;",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS suppression_feed_no_update;",
    "DROP TRIGGER IF EXISTS suppression_feed_no_delete;",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            raise RuntimeError(f"no append-only triggers for {schema_editor.connection.vendor}")
        for statement in statements:
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("accounts", "0011_api_channels_person_key_feed")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": [POSTGRES_CREATE], "sqlite": SQLITE_CREATE}),
            _run({"postgresql": [POSTGRES_DROP], "sqlite": SQLITE_DROP}),
        )
    ]
