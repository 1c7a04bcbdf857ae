"""A wording test from set-up to sending: what is approved is every variant's wording,
each member is sent, shown and recorded against their own variant."""

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from accounts.models import Action, ConsentEvent, Member
from audit.models import StaffAction
from campaigns import tokens
from campaigns.models import (
    Campaign,
    CampaignState,
    CampaignVariant,
    Delivery,
    DeliveryStatus,
    FrozenVersionError,
    NoticeText,
    NoticeVersion,
)
from campaigns.services import lifecycle
from campaigns.services.fanout import campaign_fan_out, deliveries_insert
from campaigns.services.lifecycle import TransitionError
from campaigns.services.sending import campaign_send_chunk
from campaigns.services.variants import VariantError
from tests.factories import MemberFactory, notice_version
from tests.wording import versions_of_one_notice

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model):
    """Alice sets up the test."""
    return django_user_model.objects.create_superuser("alice", "alice@example.com", "pw")


@pytest.fixture
def bob(django_user_model):
    """Bob approves it."""
    return django_user_model.objects.create_superuser("bob", "bob@example.com", "pw")


@pytest.fixture
def versions():
    return versions_of_one_notice(2)


@pytest.fixture
def draft(alice, versions):
    c = lifecycle.campaign_create(
        by=alice, name="Which wording?", notice_version=versions[0], starts_at=timezone.now()
    )
    return lifecycle.campaign_edit(
        campaign=c, by=alice, variants=[(versions[0], 5000), (versions[1], 5000)]
    )


def started(campaign, alice, bob) -> Campaign:
    lifecycle.campaign_submit(campaign=campaign, by=alice)
    lifecycle.campaign_approve(campaign=campaign, by=bob)
    lifecycle.campaign_schedule(campaign=campaign, by=alice)
    return lifecycle.campaign_start(campaign=campaign)


def test_setting_variants_records_them_and_follows_the_first(draft, versions, alice):
    assert list(draft.variants.values_list("notice_version", "share")) == [
        (versions[0].pk, 5000),
        (versions[1].pk, 5000),
    ]
    assert draft.notice_version == versions[0]
    entry = StaffAction.objects.filter(action="edit").latest("pk")
    assert entry.changes["variants"][1] == (
        f"version {versions[0].pk}: 50%, version {versions[1].pk}: 50%"
    )


@pytest.mark.parametrize(
    "shares, problem",
    [
        ((5000, 4000), "add up to 90%, not 100%"),
        ((10000,), "at least two variants"),
        ((0, 10000), "between 0.01% and 99.99%"),
    ],
)
def test_a_split_that_is_not_whole_is_refused_and_changes_nothing(alice, shares, problem):
    versions = versions_of_one_notice(len(shares))
    c = lifecycle.campaign_create(by=alice, name="x", notice_version=versions[0])
    with pytest.raises(VariantError, match=problem):
        lifecycle.campaign_edit(
            campaign=c, by=alice, variants=list(zip(versions, shares, strict=True))
        )
    assert not CampaignVariant.objects.exists()


def test_a_version_of_another_notice_or_twice_the_same_is_refused(alice, versions):
    c = lifecycle.campaign_create(by=alice, name="x", notice_version=versions[0])
    other = notice_version(locales=["en"])
    with pytest.raises(VariantError, match="another notice"):
        lifecycle.campaign_edit(campaign=c, by=alice, variants=[(versions[0], 5000), (other, 5000)])
    with pytest.raises(VariantError, match="only once"):
        lifecycle.campaign_edit(
            campaign=c, by=alice, variants=[(versions[0], 5000), (versions[0], 5000)]
        )
    assert not CampaignVariant.objects.exists()


def test_approval_holds_hashes_and_freezes_every_variant(draft, versions, alice, bob):
    lifecycle.campaign_submit(campaign=draft, by=alice)
    second = versions[1].texts.get()
    second.body_markdown = "Something else"
    with pytest.raises(FrozenVersionError, match="awaiting approval"):
        second.save()  # held: the approver sees exactly this
    lifecycle.campaign_approve(campaign=draft, by=bob)
    hashes = [versions[0].texts.get().sha256, versions[1].texts.get().sha256]
    assert draft.approved_text_hashes == {
        "v1/en": hashes[0],
        "v2/en": hashes[1],
        "split": "v1=5000,v2=5000",
    }
    lifecycle.campaign_schedule(campaign=draft, by=alice)
    assert lifecycle.campaign_start(campaign=draft).state == CampaignState.SENDING
    for version in versions:
        version.refresh_from_db()
        assert version.is_frozen


def test_a_variant_changed_around_the_model_stops_the_start(draft, versions, alice, bob):
    lifecycle.campaign_submit(campaign=draft, by=alice)
    lifecycle.campaign_approve(campaign=draft, by=bob)
    lifecycle.campaign_schedule(campaign=draft, by=alice)
    NoticeText.objects.filter(version=versions[1]).update(body_markdown="Unapproved")
    CampaignVariant.objects.filter(campaign=draft).update(share=5000)  # unchanged
    back = lifecycle.campaign_start(campaign=draft)
    assert back.state == CampaignState.DRAFT and "v2/en" in back.state_reason
    assert not NoticeVersion.objects.filter(frozen_at__isnull=False).exists()


def test_changing_the_split_after_submission_sends_it_back_to_draft(draft, versions, alice, bob):
    lifecycle.campaign_submit(campaign=draft, by=alice)
    lifecycle.campaign_approve(campaign=draft, by=bob)
    changed = lifecycle.campaign_edit(
        campaign=draft, by=alice, variants=[(versions[0], 7000), (versions[1], 3000)]
    )
    assert changed.state == CampaignState.DRAFT
    assert "edited after submission" in changed.state_reason
    entry = StaffAction.objects.filter(action="edit").latest("pk")
    assert entry.detail == {"back_to_draft": True} and "variants" in entry.changes


def test_the_version_of_a_split_campaign_changes_through_its_variants(draft, versions, alice):
    with pytest.raises(TransitionError, match="change its variants instead"):
        lifecycle.campaign_edit(campaign=draft, by=alice, notice_version=versions[1])
    assert Campaign.objects.get(pk=draft.pk).notice_version == versions[0]


def test_the_split_cannot_change_once_sending(draft, versions, alice, bob):
    started(draft, alice, bob)
    with pytest.raises(TransitionError, match="once sending started"):
        lifecycle.campaign_edit(
            campaign=draft, by=alice, variants=[(versions[0], 7000), (versions[1], 3000)]
        )


def test_each_member_is_sent_shown_and_recorded_against_their_variant(
    draft, versions, alice, bob, purpose
):
    for _ in range(12):
        MemberFactory(country="US")
    started(draft, alice, bob)
    campaign_fan_out(campaign=Campaign.objects.get(pk=draft.pk))
    campaign_send_chunk(campaign_id=draft.pk)
    deliveries = {d.member.email: d for d in Delivery.objects.select_related("member")}
    assert {d.notice_version_id for d in deliveries.values()} == {v.pk for v in versions}
    by_number = {v.pk: v.number for v in versions}
    assert len(mail.outbox) == 12
    for message in mail.outbox:
        delivery = deliveries[message.to[0]]
        assert f"Wording {by_number[delivery.notice_version_id]} in en." in message.body
        assert f"Subject v{by_number[delivery.notice_version_id]}" in message.subject
    # The page shows the member's variant, and the ledger names it.
    cache.clear()
    browser = Client(enforce_csrf_checks=True)
    for delivery in list(deliveries.values())[:4]:
        url = f"/n/{tokens.notice_token(delivery.pk)}/"
        page = browser.get(url)
        wording = f"Wording {by_number[delivery.notice_version_id]} in en."
        assert wording in page.content.decode()
        csrf = page.cookies["csrftoken"].value
        browser.post(url, {"csrfmiddlewaretoken": csrf, "action": "acknowledge"})
        browser.post(
            url, {"csrfmiddlewaretoken": csrf, "action": "object", "purpose": purpose.slug}
        )
        events = ConsentEvent.objects.filter(delivery_id=delivery.pk)
        assert {(e.action, e.notice_version_id) for e in events} == {
            (Action.ACKNOWLEDGE, delivery.notice_version_id),
            (Action.OBJECT, delivery.notice_version_id),
        }


def test_a_reminder_carries_the_members_variant(draft, versions, alice, bob):
    for _ in range(6):
        MemberFactory(country="US")
    started(draft, alice, bob)
    c = Campaign.objects.get(pk=draft.pk)
    campaign_fan_out(campaign=c)
    Delivery.objects.update(status=DeliveryStatus.SENT)
    deliveries_insert(campaign=c, wave=1, members=Member.objects.all())
    first = dict(Delivery.objects.filter(wave=0).values_list("member_id", "notice_version_id"))
    campaign_send_chunk(campaign_id=c.pk)
    by_number = {v.pk: v.number for v in versions}
    reminders = Delivery.objects.filter(wave=1).select_related("member")
    assert reminders.count() == 6
    bodies = {m.to[0]: m.body for m in mail.outbox}
    for reminder in reminders:
        assert reminder.notice_version_id == first[reminder.member_id]
        assert f"Wording {by_number[reminder.notice_version_id]}" in bodies[reminder.member.email]


def test_an_unsubscribe_names_the_variant_the_member_was_sent(draft, versions, alice, bob):
    from django.conf import settings

    for _ in range(20):
        MemberFactory(country="US")
    started(draft, alice, bob)
    campaign_fan_out(campaign=Campaign.objects.get(pk=draft.pk))
    second = Delivery.objects.filter(notice_version_id=versions[1].pk).first()
    assert second is not None  # 20 members at 50/50: both versions are sent
    url = tokens.unsubscribe_url(second.pk).removeprefix(settings.SITE_URL)
    assert Client().post(url, {"List-Unsubscribe": "One-Click"}).status_code == 200
    event = ConsentEvent.objects.get(action=Action.UNSUBSCRIBE)
    assert event.notice_version_id == versions[1].pk != draft.notice_version_id


def test_a_campaign_created_with_a_split_records_it_in_one_entry(alice, versions):
    c = lifecycle.campaign_create(
        by=alice,
        name="Born split",
        notice_version=versions[1],  # the first variant's version wins
        variants=[(versions[0], 2500), (versions[1], 7500)],
    )
    assert c.notice_version == versions[0]
    assert list(c.variants.values_list("share", flat=True)) == [2500, 7500]
    [entry] = StaffAction.objects.filter(action="create")
    assert entry.changes["variants"] == [
        None,
        f"version {versions[0].pk}: 25%, version {versions[1].pk}: 75%",
    ]
