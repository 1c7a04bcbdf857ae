"""Completion after fan-out, approved text hashes, and the breaker's baseline.

Campaigns in flight at the upgrade: one sending or paused with deliveries has been
fanned out (the fan-out ran before this field existed), so it may complete as before;
one approved, or further, records the hashes of its version's texts as they are now
(they were not recorded at its approval), so its start is not refused.
"""

from django.db import migrations, models
from django.utils import timezone

APPROVED_ON = ["approved", "scheduled", "sending", "paused", "completed"]


def in_flight_marked(apps, schema_editor):
    Campaign = apps.get_model("campaigns", "Campaign")
    Delivery = apps.get_model("campaigns", "Delivery")
    NoticeText = apps.get_model("campaigns", "NoticeText")
    Campaign.objects.filter(
        state__in=["sending", "paused"],
        pk__in=Delivery.objects.values("campaign_id"),
    ).update(fanned_out_at=timezone.now())
    approved = Campaign.objects.filter(state__in=APPROVED_ON, approved_at__isnull=False)
    for campaign in approved.only("pk", "notice_version_id").iterator():
        hashes = dict(
            NoticeText.objects.filter(version=campaign.notice_version_id).values_list(
                "locale", "sha256"
            )
        )
        Campaign.objects.filter(pk=campaign.pk).update(approved_text_hashes=hashes)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0007_receipt_sweep"),
    ]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="approved_text_hashes",
            field=models.JSONField(blank=True, default=dict, editable=False),
        ),
        migrations.AddField(
            model_name="campaign",
            name="breaker_base_bounces",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="campaign",
            name="breaker_base_complaints",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="campaign",
            name="breaker_base_sent",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.AddField(
            model_name="campaign",
            name="breaker_reset_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="campaign",
            name="fanned_out_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(in_flight_marked, migrations.RunPython.noop),
    ]
