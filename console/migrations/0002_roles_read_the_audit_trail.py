"""Administrators read the staff audit trail (``audit.view_staffaction``, added to
console.roles.ROLES): the groups are made to match the table again."""

from django.db import migrations


def roles_sync_again(apps, schema_editor):
    from console.roles import roles_sync

    roles_sync()


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0001_roles"),
        ("audit", "0004_two_factor_reset_action"),
    ]

    operations = [migrations.RunPython(roles_sync_again, migrations.RunPython.noop)]
