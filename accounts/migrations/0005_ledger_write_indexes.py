"""Drop the single-column indexes that every ledger write maintained and no read uses.

ConsentEvent(member) is served by (member, seq); Preference(member) and
Preference(purpose) by the unique (member, purpose); Preference(last_event) only by the
deletion of events, which the ledger refuses. Each was one more index entry (and WAL
record) per objection, written while the ledger is held.

The indexes are dropped by name (Django's names for them), not with AlterField: on
SQLite AlterField rebuilds the table, which would drop the ledger's append-only
triggers with it.
"""

import django.db.models.deletion
from django.db import migrations, models

# (table, column, index name) as Django created them
INDEXES = [
    ("accounts_consentevent", "member_id", "accounts_consentevent_member_id_70f3f04a"),
    ("accounts_preference", "member_id", "accounts_preference_member_id_64a8441d"),
    ("accounts_preference", "purpose_id", "accounts_preference_purpose_id_41786260"),
    ("accounts_preference", "last_event_id", "accounts_preference_last_event_id_2d772ff0"),
]


class Migration(migrations.Migration):
    dependencies = [("accounts", "0004_email_status_audit")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX "{name}" ON "{table}" ("{column}")',
                )
                for table, column, name in INDEXES
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="consentevent",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="consent_events",
                        to="accounts.member",
                    ),
                ),
                migrations.AlterField(
                    model_name="preference",
                    name="last_event",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="accounts.consentevent",
                    ),
                ),
                migrations.AlterField(
                    model_name="preference",
                    name="member",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="preferences",
                        to="accounts.member",
                    ),
                ),
                migrations.AlterField(
                    model_name="preference",
                    name="purpose",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="preferences",
                        to="accounts.purpose",
                    ),
                ),
            ],
        )
    ]
