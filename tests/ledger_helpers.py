"""Tamper with the ledger the way an attacker with database access would: triggers off."""

import importlib
import re
from contextlib import contextmanager

from django.db import connection

SQLITE_TRIGGERS = {
    "ledger_no_update": "BEFORE UPDATE",
    "ledger_no_delete": "BEFORE DELETE",
}


# The append-only tables: the ledger, the record of its checks, the suppression feed,
# the staff audit trail.
LEDGER_TABLES = (
    "accounts_consentevent",
    "accounts_ledgercheck",
    "accounts_suppressionchange",
    "audit_staffaction",
)


@contextmanager
def ledger_triggers_disabled():
    """Run the block with the append-only triggers of both ledger tables off (same
    connection), then restore them."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
            try:
                yield cursor
            finally:
                cursor.execute("SET session_replication_role = DEFAULT")
            return
        cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
            " AND tbl_name IN (%s, %s, %s, %s)",
            LEDGER_TABLES,
        )
        saved = cursor.fetchall()
        for name, _sql in saved:
            cursor.execute(f"DROP TRIGGER {name}")
        try:
            yield cursor
        finally:
            for _name, sql in saved:
                cursor.execute(sql)


def _append_only_migrations():
    """The migrations that create the append-only triggers: the ledger's, the checks',
    the suppression feed's, the staff audit trail's, the evidence packs', a processing
    gate's history."""
    names = (
        "accounts.migrations.0002_ledger_append_only",
        "accounts.migrations.0007_ledger_check_append_only",
        "accounts.migrations.0012_suppression_feed_append_only",
        "audit.migrations.0002_staff_action_append_only",
        "evidence.migrations.0002_packs_immutable",
        "gates.migrations.0002_history_append_only",
    )
    return [importlib.import_module(name) for name in names]


def flush_with_ledger_unlocked(execute_sql_flush):
    """Wrap ``connection.ops.execute_sql_flush`` so that transactional tests can empty the
    ledger, its checks and the suppression feed between tests; the append-only triggers
    are back when the flush commits."""

    def flush(sql_list):
        if connection.vendor == "postgresql":
            sql_list = ["SET LOCAL session_replication_role = replica", *sql_list]
        else:
            migrations = _append_only_migrations()
            drop = [sql for migration in migrations for sql in migration.SQLITE_DROP]
            # A test that migrated back to before a table existed has no triggers to
            # put back on it.
            tables = set(connection.introspection.table_names())
            create = [
                sql
                for migration in migrations
                for sql in migration.SQLITE_CREATE
                if re.search(r" ON (\w+)", sql).group(1) in tables
            ]
            sql_list = [*drop, *sql_list, *create]
        return execute_sql_flush(sql_list)

    return flush
