"""Linked accounts: one person's accounts share a person key, and a choice made through
any of them applies to all of them, each with its own ledger event naming the account
it came through."""

import io

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Action, ConsentEvent, Member, Preference, Purpose, Source
from accounts.services.consent import consent_record
from accounts.services.member_import import members_import
from campaigns import tokens
from campaigns.models import ObjectionReceipt
from campaigns.services import receipts
from tests.factories import MemberFactory, sent_delivery

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _receipts_inline(receipts_inline):
    cache.clear()  # the POST rate limits count per link and address in the cache


@pytest.fixture
def noor(purpose):
    """Noor has a shop account (sent the notice), a forum account and a work account,
    all under one person key; Pia, unrelated, has none."""
    delivery = sent_delivery(email="noor@example.com", locale="en", sent_ago=timezone.timedelta(1))
    Member.objects.filter(pk=delivery.member_id).update(external_id="shop-1", person_key="p-noor")
    forum = MemberFactory(external_id="forum-9", country="US", person_key="p-noor")
    work = MemberFactory(external_id="work-3", country="DE", person_key="p-noor")
    MemberFactory(external_id="pia", country="US", person_key="")
    return delivery, forum, work


def ai() -> Purpose:
    return Purpose.objects.get(slug="ai-training")


def page_choose(delivery, action: str):
    client = Client(enforce_csrf_checks=True)
    url = f"/n/{tokens.notice_token(delivery.pk)}/"
    csrf = client.get(url).cookies["csrftoken"].value
    data = {"csrfmiddlewaretoken": csrf, "action": action, "purpose": "ai-training"}
    return client.post(url, data)


def events_by_account() -> list[tuple]:
    return list(
        ConsentEvent.objects.order_by("seq").values_list(
            "member__external_id", "action", "source", "delivery_id", "metadata"
        )
    )


def choices() -> dict[str, str | None]:
    return dict(Preference.objects.values_list("member__external_id", "choice"))


def test_an_objection_on_the_notice_page_applies_to_every_linked_account(noor):
    delivery, forum, _ = noor
    assert page_choose(delivery, "object").status_code == 302

    version = delivery.campaign.notice_version_id
    assert events_by_account() == [
        ("shop-1", Action.OBJECT, Source.PREFERENCE_PAGE, delivery.pk, {}),
        ("forum-9", Action.OBJECT, Source.PREFERENCE_PAGE, None, {"via": "shop-1"}),
        ("work-3", Action.OBJECT, Source.PREFERENCE_PAGE, None, {"via": "shop-1"}),
    ]
    assert set(ConsentEvent.objects.values_list("notice_version_id", flat=True)) == {version}
    assert choices() == {"shop-1": "out", "forum-9": "out", "work-3": "out"}

    # Withdrawn through another account: withdrawn for all of them.
    consent_record(
        member=Member.objects.get(pk=forum.pk),
        action=Action.WITHDRAW_OBJECTION,
        source=Source.API,
        purpose=ai(),
    )
    withdrawals = [e for e in events_by_account() if e[1] == Action.WITHDRAW_OBJECTION]
    assert withdrawals == [
        ("forum-9", Action.WITHDRAW_OBJECTION, Source.API, None, {}),
        ("shop-1", Action.WITHDRAW_OBJECTION, Source.API, None, {"via": "forum-9"}),
        ("work-3", Action.WITHDRAW_OBJECTION, Source.API, None, {"via": "forum-9"}),
    ]
    assert choices() == {"shop-1": None, "forum-9": None, "work-3": None}
    verdict = io.StringIO()
    call_command("verify_ledger", stdout=verdict)
    assert "intact" in verdict.getvalue().lower()


def test_a_repeated_objection_records_nothing_twice(noor):
    delivery, *_ = noor
    member = Member.objects.get(pk=delivery.member_id)
    for _ in range(2):
        consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=ai())
    assert ConsentEvent.objects.filter(action=Action.OBJECT).count() == 3


def test_a_retry_reaches_an_account_the_first_objection_missed(noor):
    delivery, _, work = noor
    Member.objects.filter(pk=work.pk).update(person_key="")
    member = Member.objects.get(pk=delivery.member_id)
    purpose = ai()
    consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=purpose)
    assert "work-3" not in choices()

    Member.objects.filter(pk=work.pk).update(person_key="p-noor")
    consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=purpose)
    assert choices() == {"shop-1": "out", "forum-9": "out", "work-3": "out"}
    assert ConsentEvent.objects.filter(action=Action.OBJECT).count() == 3


def test_only_the_account_used_gets_a_receipt(noor, settings, monkeypatch):
    from campaigns import enqueue

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    monkeypatch.setattr(enqueue, "quick_publish", lambda name, **kw: True)
    delivery, *_ = noor
    page_choose(delivery, "object")
    receipts.receipts_send()
    [receipt] = ObjectionReceipt.objects.all()
    assert ConsentEvent.objects.get(pk=receipt.consent_event_id).member_id == delivery.member_id


def test_an_unlinked_members_objection_reads_no_linked_accounts(purpose):
    delivery = sent_delivery(email="pia@example.com", locale="en", sent_ago=timezone.timedelta(1))
    with CaptureQueriesContext(connection) as queries:
        assert page_choose(delivery, "object").status_code == 302
    person_key = connection.ops.quote_name("person_key")
    assert not [q["sql"] for q in queries if f"{person_key} =" in q["sql"]]
    assert ConsentEvent.objects.filter(action=Action.OBJECT).count() == 1


def test_an_import_sets_person_keys_and_a_file_without_the_column_keeps_them(purpose):
    MemberFactory(external_id="a", email="a@example.com", country="US", person_key="p-1")
    members_import(
        stream=io.StringIO("external_id,email,country\na,a2@example.com,US\n"), fmt="csv"
    )
    assert Member.objects.get(external_id="a").person_key == "p-1"
    members_import(
        stream=io.StringIO(
            "external_id,email,country,person_key\na,a2@example.com,US,\nb,b@example.com,US,p-2\n"
        ),
        fmt="csv",
    )
    assert dict(Member.objects.values_list("external_id", "person_key")) == {"a": "", "b": "p-2"}
    members_import(
        stream=io.StringIO(
            '{"external_id": "b", "email": "b@example.com", "country": "US", "person_key": "p-3"}\n'
        ),
        fmt="jsonl",
    )
    assert Member.objects.get(external_id="b").person_key == "p-3"
