"""Split the member's unsubscribe from the address's health.

``email_status`` held both, and the last writer won: a bounce after an unsubscribe
overwrote it, and clearing the bounce mailed the member again. From here on
``email_status`` is the address's health (ok, bounced, complained) and
``unsubscribed_at`` the member's own choice, set only by their ledger events.

Existing rows: every member whose ledger holds an unsubscribe (the ledger has no
re-subscribe action, so the latest one stands) gets its time, whatever their status
says now (bounced, complained, or ok after staff cleared a bounce); an "unsubscribed"
status becomes health ok plus ``unsubscribed_at`` (the status's own time when no event
stands behind it, so no recorded choice is dropped). Plain AddField (a nullable column)
and choices-only AlterFields: SQLite adds the column in place, rebuilding nothing.
"""

from django.db import migrations, models
from django.db.models import Exists, OuterRef, Subquery
from django.db.models.functions import Coalesce, Now

HEALTH = [("ok", "OK"), ("bounced", "Bounced"), ("complained", "Complained")]


def unsubscribes_split(apps, schema_editor):
    Member = apps.get_model("accounts", "Member")
    ConsentEvent = apps.get_model("accounts", "ConsentEvent")
    unsubscribes = ConsentEvent.objects.filter(member=OuterRef("pk"), action="unsubscribe")
    latest = unsubscribes.order_by("-seq").values("created_at")[:1]
    Member.objects.filter(Exists(unsubscribes)).update(unsubscribed_at=Subquery(latest))
    Member.objects.filter(email_status="unsubscribed").update(
        email_status="ok",
        unsubscribed_at=Coalesce("unsubscribed_at", "email_status_changed_at", Now()),
    )


def unsubscribes_join(apps, schema_editor):
    Member = apps.get_model("accounts", "Member")
    Member.objects.filter(unsubscribed_at__isnull=False, email_status="ok").update(
        email_status="unsubscribed", email_status_changed_at=models.F("unsubscribed_at")
    )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0008_purpose_texts")]

    operations = [
        migrations.AddField(
            model_name="member",
            name="unsubscribed_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(unsubscribes_split, unsubscribes_join),
        migrations.AlterField(
            model_name="member",
            name="email_status",
            field=models.CharField(choices=HEALTH, default="ok", max_length=16),
        ),
        migrations.AlterField(
            model_name="emailstatuschange",
            name="from_status",
            field=models.CharField(choices=HEALTH, max_length=16),
        ),
        migrations.AlterField(
            model_name="emailstatuschange",
            name="to_status",
            field=models.CharField(choices=HEALTH, max_length=16),
        ),
    ]
