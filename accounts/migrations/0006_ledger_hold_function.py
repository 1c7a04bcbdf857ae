"""PostgreSQL: take the ledger for a choice, and read what it needs, in one round trip.

``renotify_ledger_hold(member, purpose, lock)`` locks the member's row (when a member
is given), then the ledger's advisory lock, in the order every ledger writer takes
them; then reads the member's Preference for the purpose and the chain's head. In
READ COMMITTED a statement reads one snapshot, taken when it starts, so a plain
statement that waited for the locks would read what was committed before it waited;
each statement inside a VOLATILE function takes a fresh one, so these reads see every
choice committed before the locks were ours. It replaces two statements (locks, then
the reads) on every ledger write, and one of them ran while the ledger was held.

No row comes back when the member does not exist. SQLite has no such function and
needs none: its IMMEDIATE transactions hold the database's write lock throughout.
"""

from django.db import migrations

CREATE = """
CREATE FUNCTION renotify_ledger_hold(p_member bigint, p_purpose bigint, p_lock bigint)
RETURNS TABLE (member_email_status varchar, pref_id bigint, pref_choice varchar,
               pref_last_event_id bigint, head_seq bigint, head_hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_member IS NOT NULL THEN
        SELECT m.email_status INTO member_email_status
        FROM accounts_member m WHERE m.id = p_member FOR UPDATE;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;
    PERFORM pg_advisory_xact_lock(p_lock);
    SELECT p.id, p.choice, p.last_event_id INTO pref_id, pref_choice, pref_last_event_id
    FROM accounts_preference p WHERE p.member_id = p_member AND p.purpose_id = p_purpose;
    SELECT e.seq, e.hash INTO head_seq, head_hash
    FROM accounts_consentevent e ORDER BY e.seq DESC LIMIT 1;
    RETURN NEXT;
END;
$$;
"""
DROP = "DROP FUNCTION IF EXISTS renotify_ledger_hold(bigint, bigint, bigint);"


def _run(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("accounts", "0005_ledger_write_indexes")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
