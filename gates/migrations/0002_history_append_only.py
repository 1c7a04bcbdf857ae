"""A gate's history (its steps and the consumer confirmations standing in for the
feed's consumers) becomes append-only, as the ledger is: the models refuse too, but
only the database stops raw SQL, other clients and bulk operations. The same
PostgreSQL function as the ledger's (accounts 0002). Reversing drops the triggers."""

from django.db import migrations

TABLES = {
    "gates_gateevent": "gate_event",
    "gates_consumerconfirmation": "consumer_confirmation",
}
MESSAGE = "the history of processing gates is append-only"

POSTGRES_CREATE = [
    f"""
CREATE TRIGGER {name}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION renotify_ledger_append_only();
CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION renotify_ledger_append_only();
"""
    for table, name in TABLES.items()
]
POSTGRES_DROP = [
    f"""
DROP TRIGGER IF EXISTS {name}_no_truncate ON {table};
DROP TRIGGER IF EXISTS {name}_no_update_delete ON {table};
"""
    for table, name in TABLES.items()
]
SQLITE_CREATE = [
    statement
    for table, name in TABLES.items()
    for statement in (
        f"CREATE TRIGGER {name}_no_update BEFORE UPDATE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (UPDATE refused)'); END;",
        f"CREATE TRIGGER {name}_no_delete BEFORE DELETE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (DELETE refused)'); END;",
    )
]
SQLITE_DROP = [
    statement
    for name in TABLES.values()
    for statement in (
        f"DROP TRIGGER IF EXISTS {name}_no_update;",
        f"DROP TRIGGER IF EXISTS {name}_no_delete;",
    )
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
    dependencies = [
        ("gates", "0001_initial"),
        ("accounts", "0002_ledger_append_only"),
    ]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRES_CREATE, "sqlite": SQLITE_CREATE}),
            _run({"postgresql": POSTGRES_DROP, "sqlite": SQLITE_DROP}),
        )
    ]
