import importlib

import factory
from django.utils import timezone

from accounts.jurisdictions import jurisdiction_for
from accounts.models import Member, Purpose, PurposeText
from accounts.services.policies import purpose_create


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    external_id = factory.Sequence(lambda n: f"user-{n:06d}")
    email = factory.LazyAttribute(lambda m: f"{m.external_id}@example.com")
    locale = "en"
    country = "GB"
    jurisdiction = factory.LazyAttribute(lambda m: jurisdiction_for(m.country))
    created_at = factory.LazyFunction(timezone.now)


def ai_training() -> Purpose:
    """The purpose seeded by migration 0003 (UK/EU/EEA/CH excluded, elsewhere opt-out),
    with its German and French texts (migration 0007).

    A transactional test's flush empties every table, seeds included: seed it again.
    """
    seed = importlib.import_module("accounts.migrations.0003_seed_ai_training")
    existing = Purpose.objects.filter(slug=seed.SLUG).first()
    if existing:
        return existing
    modes = {j: "excluded" if j in seed.EXCLUDED_IN else "opt_out" for j in seed.JURISDICTIONS}
    purpose = purpose_create(slug=seed.SLUG, name="AI training", modes=modes)
    texts = importlib.import_module("accounts.migrations.0008_purpose_texts").TEXTS
    for locale, (name, description) in texts.items():
        PurposeText.objects.create(
            purpose=purpose, locale=locale, name=name, description=description
        )
    return purpose


def notice_version(*, locales=("en", "de", "fr"), default_locale="en", **fields):
    """A notice version with a text per locale; subjects say which locale they are."""
    from datetime import date

    from campaigns.models import Notice, NoticeText, NoticeVersion

    notice = Notice.objects.create(title="AI training notice")
    version = NoticeVersion.objects.create(
        notice=notice,
        default_locale=default_locale,
        effective_date=fields.pop("effective_date", date(2027, 3, 1)),
        objection_deadline=fields.pop("objection_deadline", date(2027, 2, 15)),
        **fields,
    )
    for locale in locales:
        NoticeText.objects.create(
            version=version,
            locale=locale,
            subject=f"Subject [{locale}]",
            body_markdown=f"Body in **{locale}** with [a link](https://example.com/{locale}).",
        )
    return version


def campaign(*, version=None, state="draft", **fields):
    """A campaign in ``state`` (written directly: lifecycle tests go through the services)."""
    from campaigns.models import Campaign

    return Campaign.objects.create(
        name=fields.pop("name", "Notice campaign"),
        notice_version=version or notice_version(),
        state=state,
        **fields,
    )


def sent_delivery(*, email: str, locale: str, sent_ago: timezone.timedelta, country="US"):
    """A member in ``country`` who was sent the notice in ``locale`` ``sent_ago`` ago:
    their one delivery of a sending campaign, status "sent"."""
    from campaigns.models import CampaignState, Delivery, DeliveryStatus
    from campaigns.services.fanout import campaign_fan_out

    MemberFactory(country=country, locale=locale, email=email)
    campaign_fan_out(campaign=campaign(state=CampaignState.SENDING))
    delivery = Delivery.objects.get()
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENT, locale=locale, sent_at=timezone.now() - sent_ago
    )
    return Delivery.objects.select_related("member").get(pk=delivery.pk)


# Staff roles as permission sets ("app_label.codename"); docs/staff-permissions.md.
CAMPAIGN_EDITOR = (
    "campaigns.view_campaign",
    "campaigns.add_campaign",
    "campaigns.change_campaign",
    "campaigns.view_noticeversion",
    "campaigns.add_noticeversion",
    "campaigns.change_noticeversion",
)
CAMPAIGN_APPROVER = (
    "campaigns.view_campaign",
    "campaigns.view_noticeversion",
    "campaigns.approve_campaign",
    "campaigns.operate_campaign",
)


def staff_user(username: str, *perms: str, **fields):
    """A staff member (not a superuser) holding exactly ``perms``."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    fields.setdefault("email", f"{username}@example.com")
    user = get_user_model().objects.create_user(username, is_staff=True, **fields)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user
