"""Demo data for `make demo`: a notice in en/de/fr and an approved campaign to the
demo's UK and EU members that starts a minute after start-up."""

from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.utils import timezone

from campaigns.models import Campaign, CampaignState, Notice, NoticeText, NoticeVersion
from campaigns.services import lifecycle

TEXTS = {
    "en": (
        "How we will use your posts to train AI, and how to say no",
        "From **{effective}** we plan to use your public posts, comments and profile "
        "information to train and improve our generative AI models. Private messages "
        "are never used.\n\n"
        "**You can object.** It takes one tap, you do not need to log in and you do "
        "not need to give a reason. If you object before **{deadline}**, none of your "
        "data will be used. If you object later, we stop using it for future training.\n\n"
        "Your choice applies to all of our products. You can change it at any time.",
    ),
    "de": (
        "Wie wir Ihre Beiträge zum Training von KI nutzen wollen und wie Sie widersprechen",
        "Ab dem **{effective}** wollen wir Ihre öffentlichen Beiträge, Kommentare und "
        "Profilangaben nutzen, um unsere generativen KI-Modelle zu trainieren und zu "
        "verbessern. Private Nachrichten werden nie verwendet.\n\n"
        "**Sie können widersprechen.** Ein Tippen genügt, ohne Anmeldung und ohne "
        "Begründung. Widersprechen Sie vor dem **{deadline}**, werden keine Ihrer Daten "
        "verwendet. Widersprechen Sie später, nutzen wir sie für künftiges Training nicht "
        "mehr.\n\nIhre Wahl gilt für alle unsere Produkte und lässt sich jederzeit ändern.",
    ),
    "fr": (
        "Comment nous voulons utiliser vos publications pour entraîner l'IA, et comment refuser",
        "À partir du **{effective}**, nous prévoyons d'utiliser vos publications, "
        "commentaires et informations de profil publics pour entraîner et améliorer nos "
        "modèles d'IA générative. Les messages privés ne sont jamais utilisés.\n\n"
        "**Vous pouvez vous y opposer.** Un seul geste suffit, sans vous connecter et sans "
        "donner de raison. Si vous vous opposez avant le **{deadline}**, aucune de vos "
        "données ne sera utilisée. Plus tard, nous cessons de les utiliser pour les "
        "entraînements futurs.\n\nVotre choix vaut pour tous nos produits et peut être "
        "modifié à tout moment.",
    ),
}


class Command(BaseCommand):
    help = "Create the demo notice and an approved campaign starting a minute from now."

    def handle(self, *args, **options) -> None:
        if Campaign.objects.exists():
            self._reschedule_if_idle()
            return
        # The demo's staff (`manage.py seed_demo_staff`): the editor writes and submits,
        # the approver, a second person, approves and schedules.
        User = get_user_model()
        editor, approver = (
            User.objects.get(username="editor"),
            User.objects.get(username="approver"),
        )
        version = self._notice(editor)
        campaign = lifecycle.campaign_create(
            by=editor,
            name="AI training notice: UK and EU members",
            notice_version=version,
            jurisdictions=["UK", "EU"],
            starts_at=timezone.now() + timedelta(minutes=1),
            throttle_per_minute=600,
            remind_after_days=7,
            max_reminders=1,
        )
        lifecycle.campaign_submit(campaign=campaign, by=editor)
        lifecycle.campaign_approve(campaign=campaign, by=approver)
        lifecycle.campaign_schedule(campaign=campaign, by=approver)
        self.stdout.write(
            f"demo campaign {campaign.pk} scheduled for {campaign.starts_at:%H:%M} UTC"
        )

    def _notice(self, editor) -> NoticeVersion:
        notice = Notice.objects.create(title="AI training on UK and EU member data")
        effective, deadline = date.today() + timedelta(days=60), date.today() + timedelta(days=45)
        version = NoticeVersion.objects.create(
            notice=notice,
            default_locale="en",
            effective_date=effective,
            objection_deadline=deadline,
            last_edited_by=editor,
        )
        for locale, (subject, body) in TEXTS.items():
            NoticeText.objects.create(
                version=version,
                locale=locale,
                subject=subject,
                body_markdown=body.format(effective=effective, deadline=deadline),
            )
        return version

    def _reschedule_if_idle(self) -> None:
        """A second `make demo` before the first campaign started: start it soon again."""
        Campaign.objects.filter(state=CampaignState.SCHEDULED).update(
            starts_at=timezone.now() + timedelta(minutes=1)
        )
