"""Evidence packs (console.roles.ROLES): every role sees a campaign's packs; Approvers
and Administrators request and download them. The groups are made to match the table
again."""

from django.db import migrations


def roles_sync_again(apps, schema_editor):
    from console.roles import roles_sync

    roles_sync()


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0002_roles_read_the_audit_trail"),
        ("evidence", "0002_packs_immutable"),
        ("audit", "0005_packs"),
    ]

    operations = [migrations.RunPython(roles_sync_again, migrations.RunPython.noop)]
