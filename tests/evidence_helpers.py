"""A sent campaign with every kind of outcome, and ways to open the pack built for it."""

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from accounts.models import Action, Member, Source
from accounts.services.consent import consent_record
from campaigns.models import Campaign, Delivery, NoticeText, NoticeVersion
from campaigns.services import lifecycle
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.sending import campaign_send_chunk
from evidence.models import EvidencePack, PackState
from evidence.selectors import pack_bytes
from tests.factories import (
    CAMPAIGN_APPROVER,
    CAMPAIGN_EDITOR,
    MemberFactory,
    ai_training,
    notice_version,
    staff_user,
)

PACK_PERMS = (
    "evidence.view_evidencepack",
    "evidence.request_evidencepack",
    "evidence.download_evidencepack",
)


@dataclass
class Sent:
    """The campaign, its people and what each member did (by external id)."""

    campaign: Campaign
    alice: User  # wrote and submitted it
    bob: User  # approved it, and asks for packs
    members: dict[str, Member]
    second_version: NoticeVersion
    outsider: Member
    expected: dict[str, dict] = field(default_factory=dict)


def sent_campaign() -> Sent:
    """Six members in three jurisdictions and locales, sent a notice by a campaign Alice
    wrote and Bob approved:

    - uk-en: delivered, opened, acknowledged from the link, reminded (wave 1);
    - de-de: delivered, objected from the link;
    - fr-fr: bounced, then shown the notice in the app and acknowledged it there;
    - us-en: sent, nothing more; given the second (wording test) version;
    - at-de: delivered, opened, reminded, objected in the app;
    - ie-en: sent, unsubscribed by one click.

    An outsider (not in the audience) has ledger events of their own."""
    purpose = ai_training()
    alice = staff_user("alice", *CAMPAIGN_EDITOR, "campaigns.operate_campaign")
    bob = staff_user("bob", *CAMPAIGN_APPROVER, *PACK_PERMS)
    version = notice_version(locales=["en", "de", "fr"])
    second = notice_version(locales=["en"])
    NoticeText.objects.filter(version=second).update(
        subject="Plainer subject", body_markdown="We will **train AI** on your posts."
    )
    second.save()  # the texts' hashes follow
    people = {
        "uk-en": ("GB", "en"),
        "de-de": ("DE", "de"),
        "fr-fr": ("FR", "fr"),
        "us-en": ("US", "en"),
        "at-de": ("AT", "de"),
        "ie-en": ("IE", "en"),
    }
    members = {
        key: MemberFactory(external_id=key, country=country, locale=locale)
        for key, (country, locale) in people.items()
    }
    c = lifecycle.campaign_create(
        by=alice, name="UK and EU notice", notice_version=version, starts_at=timezone.now()
    )
    lifecycle.campaign_submit(campaign=c, by=alice)
    lifecycle.campaign_approve(campaign=c, by=bob)
    lifecycle.campaign_schedule(campaign=c, by=alice)
    lifecycle.campaign_start(campaign=c)
    campaign_fan_out(campaign=Campaign.objects.get(pk=c.pk))
    Delivery.objects.filter(campaign=c, member=members["us-en"]).update(notice_version_id=second.pk)
    campaign_send_chunk(campaign_id=c.pk)
    outsider = MemberFactory(external_id="outsider", country="GB")  # joined after the fan-out
    _outcomes(c, members, purpose, second)
    consent_record(member=outsider, action=Action.OBJECT, source=Source.API, purpose=purpose)
    return Sent(Campaign.objects.get(pk=c.pk), alice, bob, members, second, outsider)


def _outcomes(c: Campaign, members: dict[str, Member], purpose, second: NoticeVersion) -> None:
    now = timezone.now()
    mine = Delivery.objects.filter(campaign=c, wave=0)

    def delivery(key: str) -> Delivery:
        return mine.get(member=members[key])

    mine.exclude(member__external_id__in=["fr-fr", "us-en", "ie-en"]).update(
        delivered_at=now, status="delivered"
    )
    mine.filter(member__external_id__in=["uk-en", "at-de"]).update(
        opened_at=now + timedelta(minutes=5), status="opened"
    )
    mine.filter(member=members["fr-fr"]).update(bounced_at=now, status="bounced")
    for key in ("uk-en", "at-de"):
        Delivery.objects.create(
            campaign=c,
            member=members[key],
            wave=1,
            status="sent",
            locale=delivery(key).locale,
            sent_at=now + timedelta(days=7),
            esp_message_id=f"<reminder-{key}@esp>",
        )
    version = c.notice_version_id
    page = {"source": Source.PREFERENCE_PAGE, "notice_version_id": version}
    consent_record(
        member=members["uk-en"], action=Action.ACKNOWLEDGE, delivery_id=delivery("uk-en").pk, **page
    )
    consent_record(
        member=members["de-de"],
        action=Action.OBJECT,
        purpose=purpose,
        delivery_id=delivery("de-de").pk,
        **page,
    )
    app = {"source": Source.IN_APP, "notice_version_id": version}
    consent_record(member=members["fr-fr"], action=Action.SERVE, **app)
    consent_record(member=members["fr-fr"], action=Action.ACKNOWLEDGE, **app)
    consent_record(member=members["at-de"], action=Action.OBJECT, purpose=purpose, **app)
    consent_record(
        member=members["ie-en"],
        action=Action.UNSUBSCRIBE,
        source=Source.ONE_CLICK,
        delivery_id=delivery("ie-en").pk,
    )


def pack_zip(pack: EvidencePack) -> zipfile.ZipFile:
    pack.refresh_from_db()
    assert pack.state == PackState.READY, (pack.state, pack.error)
    return zipfile.ZipFile(io.BytesIO(b"".join(pack_bytes(pack=pack))))


def csv_rows(archive: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(archive.read(name).decode())))


def manifest(archive: zipfile.ZipFile) -> dict:
    return json.loads(archive.read("manifest.json"))


def texts_of(version: NoticeVersion) -> list[NoticeText]:
    return list(NoticeText.objects.filter(version=version).order_by("locale"))
