"""Leave room in each page of campaigns_delivery for the rows' later versions.

A delivery row is updated several times after fan-out (sent, delivered, opened, viewed).
With full pages (PostgreSQL's default fillfactor of 100) every such update moves the row
to another page and adds an entry to each of the table's six indexes; with room on the
page, an update that changes no indexed column (viewed_at, opened_at, ...) is a
heap-only (HOT) update that touches no index. Applies to pages written from now on.
"""

from django.db import migrations

FILLFACTOR = 85


def fillfactor_set(apps, schema_editor, value=FILLFACTOR):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE campaigns_delivery SET (fillfactor = {int(value)})")


def fillfactor_reset(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE campaigns_delivery RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0005_receipt_outbox")]

    operations = [migrations.RunPython(fillfactor_set, fillfactor_reset)]
