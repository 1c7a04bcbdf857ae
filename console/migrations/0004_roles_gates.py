"""Processing gates in the roles (console.roles.ROLES): everyone reads them, Approvers
propose, confirm and close them and record the consumers' confirmation,
Administrators define, change and close them. The groups are made to match again."""

from django.db import migrations


def roles_sync_again(apps, schema_editor):
    from console.roles import roles_sync

    roles_sync()


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0003_roles_packs"),
        ("gates", "0002_history_append_only"),
        ("audit", "0006_gates"),
    ]

    operations = [migrations.RunPython(roles_sync_again, migrations.RunPython.noop)]
