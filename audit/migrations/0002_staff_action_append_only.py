"""Database triggers that make the staff audit trail append-only, as the consent
ledger is (accounts 0002): the model refuses too, but only the database stops raw SQL,
other clients and bulk operations. Its own PostgreSQL function, so that this app
depends on no other of ours. Reversing the migration drops them.
"""

from django.db import migrations

TABLE = "audit_staffaction"
MESSAGE = "the staff audit trail is append-only"

POSTGRES_CREATE = f"""
CREATE FUNCTION renotify_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE} (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER staff_action_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION renotify_audit_append_only();
CREATE TRIGGER staff_action_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION renotify_audit_append_only();
"""
POSTGRES_DROP = f"""
DROP TRIGGER IF EXISTS staff_action_no_truncate ON {TABLE};
DROP TRIGGER IF EXISTS staff_action_no_update_delete ON {TABLE};
DROP FUNCTION IF EXISTS renotify_audit_append_only();
"""
SQLITE_CREATE = [
    f"CREATE TRIGGER staff_action_no_update BEFORE UPDATE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (UPDATE refused)'); END;",
    f"CREATE TRIGGER staff_action_no_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (DELETE refused)'); END;",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS staff_action_no_update;",
    "DROP TRIGGER IF EXISTS staff_action_no_delete;",
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
    dependencies = [("audit", "0001_staff_action")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": [POSTGRES_CREATE], "sqlite": SQLITE_CREATE}),
            _run({"postgresql": [POSTGRES_DROP], "sqlite": SQLITE_DROP}),
        )
    ]
