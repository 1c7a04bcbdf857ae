"""Ledger checks become append-only, as the ledger is; checks say what kind they were
and whether their head reached the sink.

A check records the head it verified, so that a later check notices a cut tail. If
checks could be deleted, whoever cuts the tail would delete them too: the same
triggers as the ledger's (migration 0002, whose PostgreSQL function they reuse)
refuse UPDATE, DELETE and TRUNCATE.

The fields are added before the triggers are created: on SQLite, adding a NOT NULL
column rebuilds the table, which would drop triggers created earlier. A later
AlterField on this model has the same effect on SQLite (see migration 0005).
"""

from django.db import migrations, models

TABLE = "accounts_ledgercheck"
MESSAGE = "consent ledger is append-only"

POSTGRES_CREATE = f"""
CREATE TRIGGER ledger_check_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION renotify_ledger_append_only();
CREATE TRIGGER ledger_check_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION renotify_ledger_append_only();
"""
POSTGRES_DROP = f"""
DROP TRIGGER IF EXISTS ledger_check_no_truncate ON {TABLE};
DROP TRIGGER IF EXISTS ledger_check_no_update_delete ON {TABLE};
"""
SQLITE_CREATE = [
    f"CREATE TRIGGER ledger_check_no_update BEFORE UPDATE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (UPDATE refused)'); END;",
    f"CREATE TRIGGER ledger_check_no_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (DELETE refused)'); END;",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS ledger_check_no_update;",
    "DROP TRIGGER IF EXISTS ledger_check_no_delete;",
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
    dependencies = [("accounts", "0006_ledger_hold_function")]

    operations = [
        migrations.AddField(
            model_name="ledgercheck",
            name="kind",
            field=models.CharField(
                choices=[("full", "Whole chain"), ("head", "Since the last verified head")],
                default="full",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="ledgercheck",
            name="sink_error",
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddIndex(
            model_name="ledgercheck",
            index=models.Index(
                condition=models.Q(("intact", True)),
                fields=["-head_seq", "-id"],
                name="ledgercheck_head_idx",
            ),
        ),
        migrations.RunPython(
            _run({"postgresql": [POSTGRES_CREATE], "sqlite": SQLITE_CREATE}),
            _run({"postgresql": [POSTGRES_DROP], "sqlite": SQLITE_DROP}),
        ),
    ]
