"""Tamper with the ledger the way an attacker with database access would: triggers off."""

import importlib
from contextlib import contextmanager

from django.db import connection

SQLITE_TRIGGERS = {
    "ledger_no_update": "BEFORE UPDATE",
    "ledger_no_delete": "BEFORE DELETE",
}


@contextmanager
def ledger_triggers_disabled():
    """Run the block with the append-only triggers off (same connection), then restore them."""
    table = "accounts_consentevent"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
            try:
                yield cursor
            finally:
                cursor.execute("SET session_replication_role = DEFAULT")
            return
        cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
            [table],
        )
        saved = cursor.fetchall()
        for name, _sql in saved:
            cursor.execute(f"DROP TRIGGER {name}")
        try:
            yield cursor
        finally:
            for _name, sql in saved:
                cursor.execute(sql)


def _append_only_migration():
    return importlib.import_module("accounts.migrations.0002_ledger_append_only")


def flush_with_ledger_unlocked(execute_sql_flush):
    """Wrap ``connection.ops.execute_sql_flush`` so that transactional tests can empty the
    ledger between tests; the append-only triggers are back when the flush commits."""

    def flush(sql_list):
        migration = _append_only_migration()
        if connection.vendor == "postgresql":
            sql_list = ["SET LOCAL session_replication_role = replica", *sql_list]
        else:
            sql_list = [*migration.SQLITE_DROP, *sql_list, *migration.SQLITE_CREATE]
        return execute_sql_flush(sql_list)

    return flush
