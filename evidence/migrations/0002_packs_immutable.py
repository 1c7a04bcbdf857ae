"""Database triggers that keep evidence as it was built: a ready pack cannot change,
no pack can be deleted, and parts can neither change nor be deleted (the models refuse
too, but only the database stops raw SQL, other clients and bulk operations).
Reversing the migration drops them."""

from django.db import migrations

PACKS = "evidence_evidencepack"
PARTS = "evidence_evidencepackpart"
MESSAGE = "evidence packs are immutable once built"

POSTGRES_CREATE = f"""
CREATE FUNCTION renotify_evidence_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE} (% on % refused)', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER evidence_pack_ready_no_update BEFORE UPDATE ON {PACKS}
    FOR EACH ROW WHEN (OLD.state = 'ready') EXECUTE FUNCTION renotify_evidence_immutable();
CREATE TRIGGER evidence_pack_no_delete BEFORE DELETE ON {PACKS}
    FOR EACH ROW EXECUTE FUNCTION renotify_evidence_immutable();
CREATE TRIGGER evidence_part_no_update_delete BEFORE UPDATE OR DELETE ON {PARTS}
    FOR EACH ROW EXECUTE FUNCTION renotify_evidence_immutable();
CREATE TRIGGER evidence_no_truncate BEFORE TRUNCATE ON {PARTS}
    FOR EACH STATEMENT EXECUTE FUNCTION renotify_evidence_immutable();
"""
POSTGRES_DROP = f"""
DROP TRIGGER IF EXISTS evidence_no_truncate ON {PARTS};
DROP TRIGGER IF EXISTS evidence_part_no_update_delete ON {PARTS};
DROP TRIGGER IF EXISTS evidence_pack_no_delete ON {PACKS};
DROP TRIGGER IF EXISTS evidence_pack_ready_no_update ON {PACKS};
DROP FUNCTION IF EXISTS renotify_evidence_immutable();
"""
SQLITE_CREATE = [
    f"CREATE TRIGGER evidence_pack_ready_no_update BEFORE UPDATE ON {PACKS} "
    f"WHEN OLD.state = 'ready' BEGIN SELECT RAISE(ABORT, '{MESSAGE} (UPDATE refused)'); END;",
    f"CREATE TRIGGER evidence_pack_no_delete BEFORE DELETE ON {PACKS} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (DELETE refused)'); END;",
    f"CREATE TRIGGER evidence_part_no_update BEFORE UPDATE ON {PARTS} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (UPDATE refused)'); END;",
    f"CREATE TRIGGER evidence_part_no_delete BEFORE DELETE ON {PARTS} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE} (DELETE refused)'); END;",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS evidence_part_no_delete;",
    "DROP TRIGGER IF EXISTS evidence_part_no_update;",
    "DROP TRIGGER IF EXISTS evidence_pack_no_delete;",
    "DROP TRIGGER IF EXISTS evidence_pack_ready_no_update;",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor)
        if statements is None:
            raise RuntimeError(f"no evidence triggers for {schema_editor.connection.vendor}")
        for statement in statements:
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("evidence", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": [POSTGRES_CREATE], "sqlite": SQLITE_CREATE}),
            _run({"postgresql": [POSTGRES_DROP], "sqlite": SQLITE_DROP}),
        )
    ]
