"""Purposes in the reader's language: on every member page and in every receipt.

A purpose's name and description come from its text for the exact locale, else for that
locale's language (de-AT -> de), else the purpose's own; staff edit the texts in the
admin, and an edit shows on the next page, cached page skeletons included.
"""

import email
import html
import importlib
from email.header import decode_header, make_header

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Action, ConsentEvent, PurposeText
from accounts.selectors import purpose_wording
from campaigns import tokens
from campaigns.models import NoticeVersion
from tests.factories import sent_delivery

pytestmark = pytest.mark.django_db

SEED = importlib.import_module("accounts.migrations.0008_purpose_texts")
ENGLISH = "Use my posts and profile to train generative AI models"
GERMAN, FRENCH = SEED.TEXTS["de"], SEED.TEXTS["fr"]


@pytest.fixture(autouse=True)
def _receipts_inline(receipts_inline):
    cache.clear()  # the POST rate limits count per link and address in the cache


@pytest.fixture
def browser():
    return Client(enforce_csrf_checks=True)


def member_sent(locale: str):
    """A member in the US (opt-out: may object) sent the notice in ``locale`` an hour ago,
    on a version that has been sent (frozen), so its pages come from kept skeletons."""
    delivery = sent_delivery(
        email=f"reader-{locale}@example.com", locale=locale, sent_ago=timezone.timedelta(hours=1)
    )
    NoticeVersion.objects.filter(pk=delivery.campaign.notice_version_id).update(
        frozen_at=timezone.now()
    )
    return delivery


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def notice_url(delivery) -> str:
    return f"/n/{tokens.notice_token(delivery.pk)}/"


def object_(client, delivery, django_capture_on_commit_callbacks):
    url = notice_url(delivery)
    csrf = client.get(url).cookies["csrftoken"].value
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url, {"csrfmiddlewaretoken": csrf, "action": "object", "purpose": "ai-training"}
        )
    assert response.status_code == 302
    return response


def test_the_built_in_purpose_comes_with_german_and_french_texts(purpose):
    texts = {t.locale: (t.name, t.description) for t in purpose.texts.all()}
    assert texts == {"de": GERMAN, "fr": FRENCH}
    assert purpose.name == ENGLISH  # its own wording stays the English one


def test_a_german_receipt_names_the_purpose_in_german(
    browser, purpose, django_capture_on_commit_callbacks
):
    delivery = member_sent("de")
    object_(browser, delivery, django_capture_on_commit_callbacks)
    seq = ConsentEvent.objects.get(action=Action.OBJECT).seq
    [message] = mail.outbox
    assert message.subject == f"Ihr Widerspruch ist erfasst (Referenz {seq})"
    html_part = message.alternatives[0][0]
    assert f"Wir haben Ihren Widerspruch erfasst gegen: {GERMAN[0]}." in message.body
    assert f"Wir haben Ihren Widerspruch erfasst gegen: {GERMAN[0]}." in html_part
    parsed = email.message_from_bytes(message.message().as_bytes())
    headers = [str(make_header(decode_header(value))) for value in parsed.values()]
    assert f"Ihr Widerspruch ist erfasst (Referenz {seq})" in headers
    parts = [p.get_payload(decode=True).decode() for p in parsed.walk() if not p.is_multipart()]
    assert len(parts) == 2 and all(GERMAN[0] in part for part in parts)
    for shown in (*headers, *parts):
        assert ENGLISH not in shown and "generative AI" not in shown


def test_a_receipt_takes_the_exact_locale_first(
    browser, purpose, django_capture_on_commit_callbacks
):
    PurposeText.objects.create(
        purpose=purpose, locale="de-AT", name="KI-Training (Österreich)", description=""
    )
    object_(browser, member_sent("de-AT"), django_capture_on_commit_callbacks)
    [message] = mail.outbox
    assert "erfasst gegen: KI-Training (Österreich)." in message.body


@pytest.mark.parametrize(("locale", "texts"), [("de", GERMAN), ("fr", FRENCH)])
def test_the_notice_page_shows_the_purpose_in_the_reader_language(browser, purpose, locale, texts):
    delivery = member_sent(locale)
    for _ in range(2):  # rendered, then from the kept skeleton
        shown = page(browser, notice_url(delivery))
        assert texts[0] in shown and texts[1] in shown
        assert ENGLISH not in shown
    english = page(browser, notice_url(delivery) + "?lang=en")
    assert ENGLISH in english and texts[0] not in english
    assert texts[0] in page(browser, notice_url(delivery))  # the kept German page is German


@pytest.mark.parametrize(
    ("locale", "name"), [("de-CH", GERMAN[0]), ("fr-BE", FRENCH[0]), ("es", ENGLISH)]
)
def test_the_pages_fall_back_to_the_language_then_to_the_purpose_own(
    browser, purpose, locale, name
):
    delivery = member_sent(locale)
    for url in (
        notice_url(delivery),
        f"/u/{tokens.unsubscribe_token(delivery.pk)}/",
        f"/p/{tokens.member_token(delivery.member_id)}/",
    ):
        assert name in page(browser, url), url


@pytest.mark.parametrize(("locale", "texts"), [("de", GERMAN), ("fr", FRENCH)])
def test_the_unsubscribe_pages_name_the_purposes_in_the_reader_language(
    browser, purpose, locale, texts
):
    delivery = member_sent(locale)
    url = f"/u/{tokens.unsubscribe_token(delivery.pk)}/"
    shown = page(browser, url)
    assert texts[0] in shown and ENGLISH not in shown
    done = html.unescape(browser.post(url).content.decode())
    assert texts[0] in done and ENGLISH not in done


def test_the_preference_page_and_the_objection_confirmation_speak_french(
    browser, purpose, django_capture_on_commit_callbacks
):
    delivery = member_sent("fr")
    url = f"/p/{tokens.member_token(delivery.member_id)}/"
    assert FRENCH[0] in page(browser, url) and ENGLISH not in page(browser, url)
    object_(browser, delivery, django_capture_on_commit_callbacks)
    confirmed = page(browser, notice_url(delivery) + "?done=object&purpose=ai-training")
    assert f"Votre opposition à « {FRENCH[0]} » est enregistrée." in confirmed
    assert ENGLISH not in confirmed


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("de-AT", ("Österreich", "")),  # the exact locale
        ("de-at", ("Österreich", "")),  # however it is written
        ("de-CH", GERMAN),  # no text for de-CH: its language
        ("fr_BE", FRENCH),
        ("es", (ENGLISH, None)),  # no text at all: the purpose's own
        ("", (ENGLISH, None)),
        (None, (ENGLISH, None)),
    ],
)
def test_a_purpose_text_falls_back_from_locale_to_language_to_the_purpose(
    purpose, locale, expected
):
    PurposeText.objects.create(purpose=purpose, locale="de-AT", name="Österreich", description="")
    wording = purpose_wording(purpose=purpose, locale=locale)
    name, description = expected
    assert wording.name == name
    assert wording.description == (purpose.description if description is None else description)


@pytest.fixture
def console(django_user_model):
    lead = django_user_model.objects.create_superuser("priya", "priya@example.com", "pw")
    client = Client()
    client.force_login(lead)
    return client


def purpose_form(purpose, edits: dict[str, str], added: list[tuple[str, str]]) -> dict:
    """The purpose's change form as a browser posts it: every text (``edits`` renames by
    locale), then the ``added`` (locale, name) texts."""
    texts = list(purpose.texts.order_by("locale"))
    form = {
        "name": purpose.name,
        "description": purpose.description,
        "gpc_mode": purpose.gpc_mode,
        "texts-TOTAL_FORMS": str(len(texts) + len(added)),
        "texts-INITIAL_FORMS": str(len(texts)),
        "policies-TOTAL_FORMS": "0",
        "policies-INITIAL_FORMS": "0",
    }
    rows = [(t.pk, t.locale, edits.get(t.locale, t.name), t.description) for t in texts]
    rows += [("", locale, name, "") for locale, name in added]
    for n, (pk, locale, name, description) in enumerate(rows):
        form |= {
            f"texts-{n}-id": str(pk),
            f"texts-{n}-purpose": str(purpose.pk),
            f"texts-{n}-locale": locale,
            f"texts-{n}-name": name,
            f"texts-{n}-description": description,
        }
    return form


def test_a_staff_edit_of_a_purpose_text_shows_on_the_next_page(browser, purpose, console):
    delivery = member_sent("de")
    assert GERMAN[0] in page(browser, notice_url(delivery))  # the skeleton is kept
    url = reverse("admin:accounts_purpose_change", args=[purpose.pk])
    form = purpose_form(purpose, {"de": "KI-Training mit meinen Beiträgen"}, [])
    response = console.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    shown = page(browser, notice_url(delivery))
    assert "KI-Training mit meinen Beiträgen" in shown and GERMAN[0] not in shown


def test_staff_add_purpose_texts_in_the_admin_one_per_locale(purpose, console):
    url = reverse("admin:accounts_purpose_change", args=[purpose.pk])
    shown = console.get(url).content.decode()
    assert 'name="texts-0-name"' in shown and 'name="slug"' not in shown
    assert (
        console.post(url, purpose_form(purpose, {}, [("de-AT", "KI-Training")])).status_code == 302
    )
    assert purpose.texts.get(locale="de-at").name == "KI-Training"  # as Django writes it
    response = console.post(url, purpose_form(purpose, {}, [("DE", "Noch einmal Deutsch")]))
    assert response.status_code == 200  # the form again, with the error
    assert "Please correct the duplicate data for locale." in html.unescape(
        response.content.decode()
    )
    assert purpose.texts.filter(locale__iexact="de").count() == 1
