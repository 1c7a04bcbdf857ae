"""The staff roles as groups (console.roles.ROLES): Viewer, Editor, Approver,
Administrator. A later change to the table adds a migration that runs this again."""

from django.db import migrations


def roles_create(apps, schema_editor):
    # The live module on purpose: the table is data that migrations replay, and the
    # groups and permissions it touches are Django's own, stable models.
    from console.roles import roles_sync

    roles_sync()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("accounts", "0013_suppression_feed_catch_up"),
        ("api", "0003_webhook_endpoint_after_seq"),
        ("campaigns", "0015_campaign_created_by"),
        ("axes", "0010_accessattemptexpiration"),
    ]

    operations = [migrations.RunPython(roles_create, migrations.RunPython.noop)]
