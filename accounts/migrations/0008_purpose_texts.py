"""Purposes in the members' languages: a name and description per locale, and German and
French texts for the built-in ``ai-training`` purpose (its own wording is the English)."""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models

SLUG = "ai-training"
# locale -> (name, description)
TEXTS = {
    "de": (
        "Meine Beiträge und mein Profil zum Training generativer KI-Modelle verwenden",
        "Öffentliche Beiträge, Kommentare und Profilangaben können verwendet werden, um "
        "generative KI-Modelle zu trainieren und zu verbessern. Private Nachrichten werden "
        "nie verwendet.",
    ),
    "fr": (
        "Utiliser mes publications et mon profil pour entraîner des modèles d'IA générative",
        "Les publications publiques, les commentaires et les informations de profil peuvent "
        "être utilisés pour entraîner et améliorer des modèles d'IA générative. Les messages "
        "privés ne sont jamais utilisés.",
    ),
}


def seed(apps, schema_editor):
    Purpose = apps.get_model("accounts", "Purpose")
    PurposeText = apps.get_model("accounts", "PurposeText")
    purpose = Purpose.objects.filter(slug=SLUG).first()
    if purpose is None:
        return
    for locale, (name, description) in TEXTS.items():
        # Never overwrite a text staff already wrote.
        PurposeText.objects.get_or_create(
            purpose=purpose, locale=locale, defaults={"name": name, "description": description}
        )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0007_ledger_check_append_only")]

    operations = [
        migrations.CreateModel(
            name="PurposeText",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "locale",
                    models.CharField(
                        help_text=(
                            "e.g. de, fr, de-AT. A member whose locale has no text of its own "
                            "gets the text of its language (de-AT: de), else the purpose's own "
                            "name and description."
                        ),
                        max_length=16,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[a-zA-Z]{2,3}([-_][a-zA-Z0-9]{2,8})*$",
                                "A locale, e.g. de or de-AT.",
                            )
                        ],
                    ),
                ),
                ("name", models.CharField(max_length=200)),
                (
                    "description",
                    models.TextField(
                        blank=True, help_text="Shown with this name; blank shows no description."
                    ),
                ),
                (
                    "purpose",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="texts",
                        to="accounts.purpose",
                    ),
                ),
            ],
            options={
                "ordering": ["locale"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("purpose", "locale"), name="one_purpose_text_per_locale"
                    )
                ],
            },
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
