"""Global Privacy Control on the hosted pages: per purpose, staff choose what ``Sec-GPC: 1``
means. Ignored: nothing changes. Offered: the page pre-selects and explains the objection,
and records nothing. Applied: the member's first visit with the signal records their
objection (source gpc), once, never over a choice they made, never at the page's cost."""

import logging

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import Action, ConsentEvent, GpcMode, Preference, Purpose, Source
from accounts.services.policies import purpose_create
from campaigns import tokens
from campaigns.models import NoticeVersion
from tests.factories import sent_delivery, staff_user

pytestmark = pytest.mark.django_db
GPC = {"Sec-GPC": "1"}
EXPLAINED = "Global Privacy Control"
OFFERED_TEXT = "We have prepared your objection to this"
APPLIED_TEXT = "We have recorded it as your objection to this"
KEPT_TEXT = "We do not apply it over a choice you have already made"


@pytest.fixture
def delivery(purpose):
    """Sam, in the US (opt-out: may object), was sent the notice an hour ago."""
    return sent_delivery(email="sam@example.com", locale="en", sent_ago=timezone.timedelta(hours=1))


@pytest.fixture
def browser():
    return Client(enforce_csrf_checks=True)


def notice_url(delivery) -> str:
    return f"/n/{tokens.notice_token(delivery.pk)}/"


def preferences_url(delivery) -> str:
    return f"/p/{tokens.member_token(delivery.member_id)}/"


PAGES = {"notice": notice_url, "preferences": preferences_url}


def gpc_mode_set(purpose: Purpose, mode: GpcMode) -> None:
    purpose.gpc_mode = mode
    purpose.save()  # as the admin does: the pages' copy of the purposes is refreshed


def objections():
    return list(
        ConsentEvent.objects.filter(action=Action.OBJECT).values_list(
            "source", "delivery_id", "notice_version_id", "metadata"
        )
    )


def choice(delivery, purpose):
    row = Preference.objects.filter(member=delivery.member, purpose=purpose).first()
    return row.choice if row else "no row"


def visit(browser, url, *, signal: bool) -> str:
    response = browser.get(url, headers=GPC if signal else {})
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("signal", [True, False], ids=["with-signal", "without"])
def test_ignored_changes_nothing_with_or_without_the_signal(browser, delivery, page, signal):
    url = PAGES[page](delivery)
    plain = visit(browser, url, signal=False)
    html = visit(browser, url, signal=signal)
    assert EXPLAINED not in html and "autofocus" not in html
    assert _without_csrf(html) == _without_csrf(plain)
    assert objections() == [] and choice(delivery, ai()) == "no row"


@pytest.mark.parametrize("page", PAGES)
def test_offered_preselects_and_explains_the_objection_and_records_nothing(
    browser, delivery, purpose, page
):
    gpc_mode_set(purpose, GpcMode.OFFERED)
    url = PAGES[page](delivery)
    without = visit(browser, url, signal=False)  # also keeps the page's skeleton
    assert EXPLAINED not in without and "autofocus" not in without
    html = visit(browser, url, signal=True)
    assert OFFERED_TEXT in html
    assert 'value="object" aria-describedby="gpc-ai-training" autofocus' in html
    assert objections() == [] and choice(delivery, purpose) == "no row"
    assert EXPLAINED not in visit(browser, url, signal=False)  # the skeleton kept apart


@pytest.mark.parametrize("page", PAGES)
def test_offered_is_not_shown_to_a_member_who_already_objected(browser, delivery, purpose, page):
    gpc_mode_set(purpose, GpcMode.OFFERED)
    _object_on_the_page(browser, delivery)
    html = visit(browser, PAGES[page](delivery), signal=True)
    assert OFFERED_TEXT not in html and "Allow again" in html


@pytest.mark.parametrize("page", PAGES)
def test_applied_records_an_objection_from_gpc_on_the_first_visit_with_the_signal(
    browser, delivery, purpose, page
):
    gpc_mode_set(purpose, GpcMode.APPLIED)
    url = PAGES[page](delivery)
    assert EXPLAINED not in visit(browser, url, signal=False)
    assert objections() == []
    html = visit(browser, url, signal=True)
    assert APPLIED_TEXT in html and "Allow again" in html and "You objected." in html
    on_notice = page == "notice"
    assert objections() == [
        (
            Source.GPC,
            delivery.pk if on_notice else None,
            delivery.campaign.notice_version_id if on_notice else None,
            {"gpc": "applied"},
        )
    ]
    assert choice(delivery, purpose) == "out"


@pytest.mark.parametrize("page", PAGES)
def test_applied_records_once_whatever_the_later_visits(browser, delivery, purpose, page):
    gpc_mode_set(purpose, GpcMode.APPLIED)
    for _ in range(3):
        visit(browser, notice_url(delivery), signal=True)
        html = visit(browser, preferences_url(delivery), signal=True)
    assert len(objections()) == 1
    assert KEPT_TEXT in html and APPLIED_TEXT not in html


@pytest.mark.parametrize("page", PAGES)
def test_a_withdrawal_is_not_undone_by_the_next_visit_with_the_signal(
    browser, delivery, purpose, page
):
    gpc_mode_set(purpose, GpcMode.APPLIED)
    url = PAGES[page](delivery)
    visit(browser, url, signal=True)
    withdrawn = _post(browser, url, action="allow", purpose="ai-training")
    assert withdrawn.status_code == 302 and choice(delivery, purpose) is None
    html = visit(browser, url, signal=True)
    assert KEPT_TEXT in html and "You have not objected." in html
    assert len(objections()) == 1 and choice(delivery, purpose) is None
    assert list(ConsentEvent.objects.order_by("seq").values_list("action", "source")) == [
        (Action.OBJECT, Source.GPC),
        (Action.WITHDRAW_OBJECTION, Source.PREFERENCE_PAGE),
    ]


def test_applied_never_overrides_a_choice_made_before_the_first_visit_with_the_signal(
    browser, delivery, purpose
):
    from accounts.services.consent import consent_record

    consent_record(member=delivery.member, action=Action.OPT_IN, source=Source.API, purpose=purpose)
    gpc_mode_set(purpose, GpcMode.APPLIED)
    html = visit(browser, notice_url(delivery), signal=True)
    assert KEPT_TEXT in html and objections() == [] and choice(delivery, purpose) == "in"


@pytest.mark.parametrize("page", PAGES)
def test_a_head_request_with_the_signal_records_nothing(browser, delivery, purpose, page):
    gpc_mode_set(purpose, GpcMode.APPLIED)
    assert browser.head(PAGES[page](delivery), headers=GPC).status_code == 200
    assert objections() == []


@pytest.mark.parametrize("value", ["0", "", "yes", "1, 1"])
def test_only_the_value_1_is_the_signal(browser, delivery, purpose, value):
    gpc_mode_set(purpose, GpcMode.APPLIED)
    browser.get(notice_url(delivery), headers={"Sec-GPC": value})
    assert objections() == []


@pytest.mark.parametrize("page", PAGES)
def test_the_page_still_shows_when_recording_fails_and_offers_the_objection_instead(
    browser, delivery, purpose, page, monkeypatch, caplog
):
    gpc_mode_set(purpose, GpcMode.APPLIED)

    def ledger_down(**kwargs):
        raise RuntimeError("the ledger is unavailable")

    monkeypatch.setattr("pages.services.consent_record", ledger_down)
    with caplog.at_level(logging.ERROR, logger="pages.services"):
        html = visit(browser, PAGES[page](delivery), signal=True)
    assert OFFERED_TEXT in html and APPLIED_TEXT not in html
    assert "GPC objection not recorded (purpose ai-training)" in caplog.text
    assert "sam@example.com" not in caplog.text
    assert objections() == [] and choice(delivery, purpose) == "no row"


@pytest.mark.parametrize("language", ["de", "fr"])
def test_the_explanations_are_translated_as_the_rest_of_the_page(
    browser, delivery, purpose, language
):
    gpc_mode_set(purpose, GpcMode.OFFERED)
    offered = visit(browser, f"{notice_url(delivery)}?lang={language}", signal=True)
    gpc_mode_set(purpose, GpcMode.APPLIED)
    applied = visit(browser, f"{preferences_url(delivery)}?lang={language}", signal=True)
    kept = visit(browser, f"{preferences_url(delivery)}?lang={language}", signal=True)
    for html, english in ((offered, OFFERED_TEXT), (applied, APPLIED_TEXT), (kept, KEPT_TEXT)):
        assert 'class="gpc"' in html and english not in html


def test_a_notice_page_view_takes_no_extra_query_without_the_signal_or_with_nothing_to_do(
    browser, delivery, purpose, django_assert_num_queries
):
    """As tests/test_notice_pages.py pins it: one statement on PostgreSQL, two elsewhere,
    for a page already viewed; GPC in any mode adds none unless it records."""
    postgres = connection.vendor == "postgresql"
    NoticeVersion.objects.filter(pk=delivery.campaign.notice_version_id).update(
        frozen_at=timezone.now()
    )
    gpc_mode_set(purpose, GpcMode.APPLIED)
    url = notice_url(delivery)
    browser.get(url)  # fills the copies and marks the page viewed
    with django_assert_num_queries(1 if postgres else 2):
        browser.get(url)
    browser.get(url, headers=GPC)  # records the objection
    with django_assert_num_queries(1 if postgres else 2):
        assert KEPT_TEXT in browser.get(url, headers=GPC).content.decode()
    gpc_mode_set(purpose, GpcMode.OFFERED)
    browser.get(url)
    with django_assert_num_queries(1 if postgres else 2):
        browser.get(url, headers=GPC)


def test_staff_set_a_purposes_gpc_mode_in_the_admin_with_the_permission_to_change_it(purpose):
    editor = staff_user("pat", "accounts.view_purpose", "accounts.change_purpose")
    viewer = staff_user("vic", "accounts.view_purpose")
    url = f"/admin/accounts/purpose/{purpose.pk}/change/"
    form = {
        "name": purpose.name,
        "description": purpose.description,
        "gpc_mode": "applied",
        "texts-TOTAL_FORMS": "0",
        "texts-INITIAL_FORMS": "0",
        "policies-TOTAL_FORMS": "0",
        "policies-INITIAL_FORMS": "0",
    }
    for user, allowed in ((viewer, False), (editor, True)):
        browser = Client()
        browser.force_login(user)
        page = browser.get(url).content.decode()
        assert "Global Privacy Control" in page and "Art. 21(5)" in page
        response = browser.post(url, form)
        assert response.status_code == (302 if allowed else 403)
        assert Purpose.objects.get(pk=purpose.pk).gpc_mode == ("applied" if allowed else "ignored")


def test_a_purpose_is_created_with_its_gpc_mode(db):
    lead = staff_user("lee", "accounts.add_purpose")
    made = purpose_create(slug="ads", name="Ads", gpc_mode=GpcMode.OFFERED, by=lead)
    assert Purpose.objects.get(pk=made.pk).gpc_mode == GpcMode.OFFERED
    assert purpose_create(slug="recs", name="Recs", by=lead).gpc_mode == GpcMode.IGNORED


def ai() -> Purpose:
    return Purpose.objects.get(slug="ai-training")


def _without_csrf(html: str) -> str:
    import re

    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


def _post(browser, url, **data):
    page = browser.get(url)
    return browser.post(url, {"csrfmiddlewaretoken": page.cookies["csrftoken"].value, **data})


def _object_on_the_page(browser, delivery):
    response = _post(browser, preferences_url(delivery), action="object", purpose="ai-training")
    assert response.status_code == 302
