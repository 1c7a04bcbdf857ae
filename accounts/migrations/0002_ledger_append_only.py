"""Database triggers that make the consent ledger append-only.

The model refuses save-on-existing and delete too, but only the database can stop
raw SQL, other clients and bulk operations. Reversing the migration drops them.
"""

from django.db import migrations

TABLE = "accounts_consentevent"
MESSAGE = "consent ledger is append-only"

POSTGRES_CREATE = f"""
CREATE FUNCTION renotify_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE} (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION renotify_ledger_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION renotify_ledger_append_only();
"""
POSTGRES_DROP = f"""
DROP TRIGGER IF EXISTS ledger_no_truncate ON {TABLE};
DROP TRIGGER IF EXISTS ledger_no_update_delete ON {TABLE};
DROP FUNCTION IF EXISTS renotify_ledger_append_only();
"""
SQLITE_CREATE = [
    f"CREATE TRIGGER ledger_no_update BEFORE UPDATE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (UPDATE refused)'); END;",
    f"CREATE TRIGGER ledger_no_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (DELETE refused)'); END;",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS ledger_no_update;",
    "DROP TRIGGER IF EXISTS ledger_no_delete;",
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
    dependencies = [("accounts", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": [POSTGRES_CREATE], "sqlite": SQLITE_CREATE}),
            _run({"postgresql": [POSTGRES_DROP], "sqlite": SQLITE_DROP}),
        )
    ]
