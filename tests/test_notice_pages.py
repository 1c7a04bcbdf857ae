"""The hosted notice page: read, acknowledge, object in one tap; GET never acts."""

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Action, ConsentEvent, Preference, Source
from campaigns import tokens
from campaigns.models import Delivery, ObjectionReceipt
from tests.factories import MemberFactory, sent_delivery

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _receipts_inline(receipts_inline):
    cache.clear()  # the POST rate limits count per link and address in the cache


@pytest.fixture
def delivery(purpose):
    """Sam, in the US (opt-out: may object), was sent the notice in German an hour ago."""
    return sent_delivery(email="sam@example.com", locale="de", sent_ago=timezone.timedelta(hours=1))


@pytest.fixture
def browser():
    return Client(enforce_csrf_checks=True)


def notice_url(d):
    return f"/n/{tokens.notice_token(d.pk)}/"


def post_form(client, url, **data):
    """GET the page for its CSRF cookie and token, then POST the form as a browser would."""
    page = client.get(url)
    token = page.cookies["csrftoken"].value
    return client.post(url, {"csrfmiddlewaretoken": token, **data})


def snapshot():
    return (
        list(ConsentEvent.objects.values_list("seq", "action")),
        list(Preference.objects.values_list("member", "purpose", "choice")),
        list(Delivery.objects.values_list("status", "member__email_status")),
    )


def test_page_shows_the_sent_version_in_the_sent_locale(browser, delivery):
    page = browser.get(notice_url(delivery)).content.decode()
    assert "Subject [de]" in page and "Body in <strong>de</strong>" in page
    assert 'lang="de"' in page
    assert "Widersprechen: meine Daten nicht dafür verwenden" in page  # the UI speaks German too
    english = browser.get(notice_url(delivery) + "?lang=en").content.decode()
    assert "Subject [en]" in english


@pytest.mark.parametrize("method", ["get", "head"])
def test_get_and_head_change_nothing_but_the_viewed_mark(browser, delivery, method):
    before = snapshot()
    getattr(browser, method)(notice_url(delivery))
    getattr(browser, method)(f"/u/{tokens.unsubscribe_token(delivery.pk)}/")
    getattr(browser, method)(f"/p/{tokens.member_token(delivery.member_id)}/")
    assert snapshot() == before
    delivery.refresh_from_db()
    assert (delivery.viewed_at is not None) == (method == "get")


def test_acknowledge_records_the_notice_version_and_delivery(browser, delivery):
    response = post_form(browser, notice_url(delivery), action="acknowledge")
    assert response.status_code == 302 and response["Location"].endswith("#result")
    event = ConsentEvent.objects.get()
    assert (event.action, event.source, event.notice_version_id, event.delivery_id) == (
        Action.ACKNOWLEDGE,
        Source.PREFERENCE_PAGE,
        delivery.campaign.notice_version_id,
        delivery.pk,
    )
    assert event.ip_hash and "127.0.0.1" not in event.ip_hash


def test_objecting_takes_one_post_records_once_and_sends_one_receipt(
    browser, delivery, purpose, django_capture_on_commit_callbacks
):
    url = notice_url(delivery)
    for _ in range(2):  # a double tap
        with django_capture_on_commit_callbacks(execute=True):
            post_form(browser, url, action="object", purpose="ai-training")
    event = ConsentEvent.objects.get()
    assert (event.action, event.purpose, event.delivery_id) == (Action.OBJECT, purpose, delivery.pk)
    assert Preference.objects.get(member=delivery.member).choice == "out"
    [receipt] = mail.outbox
    assert receipt.to == ["sam@example.com"]
    assert str(event.seq) in receipt.subject and str(event.seq) in receipt.body
    assert ObjectionReceipt.objects.get().sent_at is not None
    page = browser.get(url + "?done=object&purpose=ai-training").content.decode()
    assert 'role="status"' in page


def test_objection_can_be_undone_and_redone(browser, delivery, django_capture_on_commit_callbacks):
    url = notice_url(delivery)
    with django_capture_on_commit_callbacks(execute=True):
        post_form(browser, url, action="object", purpose="ai-training")
        post_form(browser, url, action="allow", purpose="ai-training")
        post_form(browser, url, action="object", purpose="ai-training", comment="no thanks")
    actions = list(ConsentEvent.objects.order_by("seq").values_list("action", "comment"))
    assert actions == [("object", ""), ("withdraw-objection", ""), ("object", "no thanks")]
    assert len(mail.outbox) == 2  # one receipt per objection


@pytest.mark.parametrize(
    ("comment", "stored"),
    [
        ("no\x00 thanks", "no thanks"),
        ("\x00", ""),
        ("bell\x07 and escape\x1b[31m, line\nbreak and\ttab kept", None),
    ],
    ids=["nul-inside", "nul-only", "other-controls"],
)
def test_a_comment_with_nul_or_control_characters_still_records_the_objection(
    browser, delivery, purpose, comment, stored
):
    response = post_form(
        browser, notice_url(delivery), action="object", purpose="ai-training", comment=comment
    )
    assert response.status_code == 302
    event = ConsentEvent.objects.get()
    assert (event.action, event.purpose) == (Action.OBJECT, purpose)
    expected = stored if stored is not None else "bell and escape[31m, line\nbreak and\ttab kept"
    assert event.comment == expected
    assert Preference.objects.get(member=delivery.member).choice == "out"


def test_forms_need_csrf_but_one_click_does_not(delivery):
    client = Client(enforce_csrf_checks=True)
    assert client.post(notice_url(delivery), {"action": "acknowledge"}).status_code == 403
    assert not ConsentEvent.objects.exists()


def test_rfc8058_one_click_unsubscribe_as_a_mail_client_sends_it(delivery):
    client = Client(enforce_csrf_checks=True)  # no cookie, no referer, no token
    url = f"/u/{tokens.unsubscribe_token(delivery.pk)}/"
    for _ in range(2):
        response = client.post(
            url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code == 200
        assert "Location" not in response
    delivery.member.refresh_from_db()
    event = ConsentEvent.objects.get()
    assert delivery.member.unsubscribed_at == event.created_at
    assert (event.action, event.source, event.delivery_id) == (
        Action.UNSUBSCRIBE,
        Source.ONE_CLICK,
        delivery.pk,
    )
    assert not Preference.objects.exists()  # unsubscribing is not objecting


def test_unsubscribe_page_says_it_is_not_an_objection_and_links_to_one(browser, delivery):
    page = browser.get(f"/u/{tokens.unsubscribe_token(delivery.pk)}/").content.decode()
    assert "Das ist kein Widerspruch" in page
    assert "/n/" in page


def test_standing_preference_page_changes_the_member_choice(browser, delivery):
    url = f"/p/{tokens.member_token(delivery.member_id)}/"
    post_form(browser, url, action="object", purpose="ai-training")
    event = ConsentEvent.objects.get()
    assert (event.action, event.delivery_id, event.notice_version_id) == (Action.OBJECT, None, None)


def test_tokens_for_one_use_do_not_work_for_another(browser, delivery):
    unsubscribe_token = tokens.unsubscribe_token(delivery.pk)
    assert browser.get(f"/n/{unsubscribe_token}/").status_code == 400
    assert browser.get(f"/p/{tokens.notice_token(delivery.pk)}/").status_code == 400


def test_unknown_and_tampered_links_get_the_same_friendly_page(browser, delivery):
    unknown = browser.get(f"/n/{tokens.notice_token(delivery.pk + 1000)}/")
    tampered = browser.get(f"/n/{tokens.notice_token(delivery.pk)[:-2]}xx/")
    assert unknown.status_code == tampered.status_code == 400
    assert unknown.content == tampered.content
    assert (
        "This link does not work" in unknown.content.decode() or "Link" in unknown.content.decode()
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_tokens_never_error_and_never_act(delivery, data):
    token = tokens.notice_token(delivery.pk)
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.text(alphabet="ABCxyz019-_:.%", min_size=0, max_size=3))
    mutated = token[:position] + replacement + token[position + 1 :]
    if mutated == token or "/" in mutated or not mutated:
        return
    client = Client()
    before = snapshot()
    for method in ("get", "post"):
        response = getattr(client, method)(
            f"/n/{mutated}/", {"action": "object", "purpose": "ai-training"}
        )
        assert response.status_code in (400, 404), response.status_code
    assert snapshot() == before


def test_every_public_response_carries_the_security_headers(browser, delivery):
    for url in (notice_url(delivery), "/n/bad/", f"/u/{tokens.unsubscribe_token(delivery.pk)}/"):
        response = browser.get(url)
        csp = response["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src" not in csp
        assert "default-src 'none'" in csp
        assert response["Referrer-Policy"] == "no-referrer"
        assert "no-store" in response["Cache-Control"]


def test_too_many_posts_are_refused_with_a_page_that_says_the_last_one_was_not_recorded(
    browser, delivery, settings, fresh_rate_window
):
    settings.RENOTIFY_RATE_PER_TOKEN = "3/m"
    url = notice_url(delivery)

    def tap(action: str):
        return post_form(browser, url, action=action, purpose="ai-training")

    assert [tap(a).status_code for a in ["object", "allow", "object"]] == [302, 302, 302]
    recorded = snapshot()
    refused = tap("allow")
    assert refused.status_code == 429
    assert snapshot() == recorded  # the allow was not recorded, and the page says so
    page = refused.content.decode()  # Sam reads German
    assert "Was Sie gerade gesendet haben, wurde nicht gespeichert." in page
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert f"in {refused['Retry-After']} Sekunde" in page
    assert "verloren" not in page and "lost" not in page


def test_a_post_seconds_after_sending_is_flagged_not_refused(browser, delivery):
    Delivery.objects.filter(pk=delivery.pk).update(sent_at=timezone.now())
    post_form(browser, notice_url(delivery), action="acknowledge")
    assert ConsentEvent.objects.get().metadata == {"too_fast": True}


def test_platform_can_mint_preference_links(delivery, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    call_command("preference_links", delivery.member.external_id)
    external_id, url = capsys.readouterr().out.strip().split("\t")
    assert external_id == delivery.member.external_id
    assert tokens.member_from_token(url.rstrip("/").rsplit("/", 1)[1]) == delivery.member_id
    with pytest.raises(CommandError, match="unknown external id"):
        call_command("preference_links", "nobody")


def test_a_notice_page_view_takes_a_fixed_few_queries(browser, delivery, django_assert_num_queries):
    """Delivery (with member, version and whether it was acknowledged), the member's
    preferences and the "viewed" mark: one statement on PostgreSQL, three elsewhere;
    purposes, policies and a frozen version's texts come from per-process copies after
    the first view."""
    from django.db import connection

    postgres = connection.vendor == "postgresql"
    Delivery.objects.filter(pk=delivery.pk).update(viewed_at=None)
    delivery.campaign.notice_version.__class__.objects.filter(
        pk=delivery.campaign.notice_version_id
    ).update(frozen_at=timezone.now())
    browser.get(notice_url(delivery))  # fills the copies
    Delivery.objects.filter(pk=delivery.pk).update(viewed_at=None)
    with django_assert_num_queries(1 if postgres else 3):
        assert browser.get(notice_url(delivery)).status_code == 200
    assert Delivery.objects.get(pk=delivery.pk).viewed_at is not None
    with django_assert_num_queries(1 if postgres else 2):  # viewed already: no write
        assert browser.get(notice_url(delivery)).status_code == 200
    Delivery.objects.filter(pk=delivery.pk).update(viewed_at=None)
    with django_assert_num_queries(1 if postgres else 2):  # HEAD: no mark
        assert browser.head(notice_url(delivery)).status_code == 200
    assert Delivery.objects.get(pk=delivery.pk).viewed_at is None


def test_an_objection_takes_a_fixed_few_queries(browser, delivery, django_assert_num_queries):
    """On PostgreSQL: the delivery (without the preferences the page would show); the
    preference and ledger head, read without locks; the event with its Preference in one
    statement that takes the locks and commits by itself (no BEGIN, no COMMIT). Elsewhere
    the held way: delivery; member; preference and head; event; Preference. No receipt
    row: the sender reads the ledger, and no suppression feed work: the feed's catch-up
    reads the ledger too."""
    from django.db import connection

    url = notice_url(delivery)
    csrf = browser.get(url).cookies["csrftoken"].value
    with django_assert_num_queries(3 if connection.vendor == "postgresql" else 5):
        response = browser.post(
            url, {"csrfmiddlewaretoken": csrf, "action": "object", "purpose": "ai-training"}
        )
    assert response.status_code == 302
    assert ConsentEvent.objects.get().action == Action.OBJECT


def test_a_policy_change_shows_on_the_page_at_once(browser, delivery, purpose):
    from accounts.models import PolicyMode
    from accounts.services.policies import policy_set_mode

    page = browser.get(notice_url(delivery) + "?lang=en").content.decode()
    assert "You have not objected." in page
    policy = purpose.policies.get(jurisdiction="US")
    policy_set_mode(policy=policy, mode=PolicyMode.EXCLUDED, by=None, note="test")
    page = browser.get(notice_url(delivery) + "?lang=en").content.decode()
    assert "Where you live, we do not use data for this at all" in page


def test_the_purposes_copy_is_refreshed_after_its_time(delivery, purpose, monkeypatch):
    """Another process's change (no signal here) shows within PURPOSES_COPY_SECONDS."""
    import time

    from accounts import selectors
    from accounts.models import JurisdictionPolicy, PolicyMode

    member = delivery.member
    (before,) = [
        s for s in selectors.member_effective_states(member=member) if s.purpose == purpose
    ]
    JurisdictionPolicy.objects.filter(purpose=purpose, jurisdiction="US").update(
        mode=PolicyMode.EXCLUDED
    )  # a queryset update sends no signal: as if another process had made it
    (cached,) = [
        s for s in selectors.member_effective_states(member=member) if s.purpose == purpose
    ]
    assert cached.policy_mode == before.policy_mode
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + selectors.PURPOSES_COPY_SECONDS + 1)
    (fresh,) = [s for s in selectors.member_effective_states(member=member) if s.purpose == purpose]
    assert fresh.policy_mode == PolicyMode.EXCLUDED


def test_the_page_reads_the_delivery_as_the_orm_would(delivery):
    """The hand-written page query gives the same values, aware datetimes included, and
    the columns it does not read still load on access."""
    from pages.services import notice_delivery

    Delivery.objects.filter(pk=delivery.pk).update(viewed_at=timezone.now())
    orm = Delivery.objects.select_related("member", "campaign__notice_version").get(pk=delivery.pk)
    page = notice_delivery(delivery_id=delivery.pk)
    for name in ("pk", "campaign_id", "member_id", "locale", "sent_at", "viewed_at"):
        assert getattr(page, name) == getattr(orm, name), name
    assert page.sent_at.tzinfo is not None
    assert page.member.created_at == orm.member.created_at
    assert page.member.jurisdiction == orm.member.jurisdiction == "US"
    assert page.campaign.notice_version == orm.campaign.notice_version
    assert page.campaign.notice_version.objection_deadline == (
        orm.campaign.notice_version.objection_deadline
    )
    assert page.acknowledged is False
    assert page.member.email == "sam@example.com"  # deferred: loaded on access
    assert page.status == orm.status
    assert notice_delivery(delivery_id=delivery.pk + 1000) is None


def _frozen(delivery):
    from campaigns.models import NoticeVersion

    NoticeVersion.objects.filter(pk=delivery.campaign.notice_version_id).update(
        frozen_at=timezone.now()
    )


def _form_token(html: str) -> str:
    import re

    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)[1]


def test_a_page_from_the_kept_skeleton_is_the_page_rendered_afresh(browser, delivery):
    """Same bytes as rendering the template for this request, but for the CSRF token
    (masked differently on every render), and forms post to this member's own link."""
    import re

    from django.template.loader import render_to_string
    from django.utils import translation

    from pages import services, views

    _frozen(delivery)
    other = MemberFactory(country="US", locale="de")
    Delivery.objects.create(campaign=delivery.campaign, member=other, locale="de")
    second = Delivery.objects.get(member=other)
    browser.get(notice_url(second))  # keeps the skeleton for German, not acknowledged
    assert len(views._skeletons) == 1
    response = browser.get(notice_url(delivery))
    assert len(views._skeletons) == 1  # the same skeleton served this member
    html = response.content.decode()
    assert notice_url(delivery) in html and notice_url(second) not in html
    request = response.wsgi_request
    fresh_delivery = services.delivery_for_token(tokens.notice_token(delivery.pk))
    context = {
        "view": services.notice_view(delivery=fresh_delivery),
        "done": None,
        "language": "de",
        "action_url": notice_url(delivery),
    }
    with translation.override("de"):
        fresh = render_to_string("pages/notice.html", context, request)
    mask = re.compile(r'(name="csrfmiddlewaretoken" value=")[^"]+"')
    assert mask.sub(r'\1"', html) == mask.sub(r'\1"', fresh)
    # The token in the kept page's forms is a valid one for this browser.
    posted = browser.post(
        notice_url(delivery), {"csrfmiddlewaretoken": _form_token(html), "action": "acknowledge"}
    )
    assert posted.status_code == 302


def test_a_kept_page_follows_the_member_state(browser, delivery):
    _frozen(delivery)
    page = browser.get(notice_url(delivery) + "?lang=en").content.decode()
    assert "Object: do not use my data for this" in page and "Allow again" not in page
    browser.post(
        notice_url(delivery) + "?lang=en",
        {"csrfmiddlewaretoken": _form_token(page), "action": "object", "purpose": "ai-training"},
    )
    page = browser.get(notice_url(delivery) + "?lang=en").content.decode()
    assert "Allow again" in page and "You objected." in page
