"""Seed the purpose every deployment starts with, and its policy per jurisdiction.

UK, EU, EEA and CH start "excluded": regulators paused AI training on their
users' data until users had been told and given a real chance to object.
"""

from django.db import migrations
from django.utils import timezone

SLUG = "ai-training"
EXCLUDED_IN = {"UK", "EU", "EEA", "CH"}
JURISDICTIONS = ["UK", "EU", "EEA", "CH", "US", "OTHER"]


def seed(apps, schema_editor):
    Purpose = apps.get_model("accounts", "Purpose")
    Policy = apps.get_model("accounts", "JurisdictionPolicy")
    Change = apps.get_model("accounts", "JurisdictionPolicyChange")
    if Purpose.objects.filter(slug=SLUG).exists():
        return
    now = timezone.now()
    purpose = Purpose.objects.create(
        slug=SLUG,
        name="Use my posts and profile to train generative AI models",
        description=(
            "Public posts, comments and profile information may be used to train and "
            "improve generative AI models. Private messages are never used."
        ),
        created_at=now,
    )
    for jurisdiction in JURISDICTIONS:
        mode = "excluded" if jurisdiction in EXCLUDED_IN else "opt_out"
        policy = Policy.objects.create(
            purpose=purpose, jurisdiction=jurisdiction, mode=mode, mode_since=now
        )
        Change.objects.create(policy=policy, to_mode=mode, changed_at=now, note="initial policy")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_ledger_append_only")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
