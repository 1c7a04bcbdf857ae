"""Notice versions: frozen once sent, hashed per locale, previewed and test-sent by staff."""

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Delivery, FrozenVersionError, NoticeText, NoticeVersion
from campaigns.rendering import compile_message, markdown_to_html, text_for_locale
from campaigns.services.notices import notice_send_test, notice_version_copy
from tests.factories import notice_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def frozen():
    version = notice_version()
    NoticeVersion.objects.filter(pk=version.pk).update(frozen_at=timezone.now())
    version.refresh_from_db()
    return version


@pytest.fixture
def console(client, django_user_model):
    lead = django_user_model.objects.create_superuser("priya", "priya@example.com", "pw")
    client.force_login(lead)
    return client


def test_a_frozen_version_refuses_edits_to_itself_and_its_texts(frozen):
    frozen.objection_deadline = frozen.objection_deadline.replace(year=2030)
    with pytest.raises(FrozenVersionError):
        frozen.save()
    text = frozen.texts.get(locale="en")
    text.subject = "Changed"
    with pytest.raises(FrozenVersionError):
        text.save()
    with pytest.raises(FrozenVersionError):
        text.delete()
    with pytest.raises(FrozenVersionError):
        NoticeText.objects.create(version=frozen, locale="it", subject="x", body_markdown="x")
    assert frozen.texts.get(locale="en").subject == "Subject [en]"


def test_the_admin_shows_a_frozen_version_read_only(console, frozen):
    url = reverse("admin:campaigns_noticeversion_change", args=[frozen.pk])
    page = console.get(url).content.decode()
    assert 'name="objection_deadline"' not in page
    assert 'name="texts-0-subject"' not in page
    console.post(url, {"objection_deadline": "2030-01-01"})
    frozen.refresh_from_db()
    assert frozen.objection_deadline.year == 2027


def test_changing_a_sent_notice_means_a_new_version(frozen):
    copy = notice_version_copy(version=frozen, by=None)
    assert (copy.number, copy.is_frozen) == (frozen.number + 1, False)
    assert sorted(copy.texts.values_list("locale", "sha256")) == sorted(
        frozen.texts.values_list("locale", "sha256")
    )
    text = copy.texts.get(locale="en")
    text.subject = "Clearer subject"
    text.save()
    assert text.sha256 != frozen.texts.get(locale="en").sha256


def test_each_text_stores_the_hash_of_its_content_and_dates():
    version = notice_version(locales=["en"])
    text = version.texts.get()
    before = text.sha256
    assert len(before) == 64
    version.objection_deadline = version.objection_deadline.replace(day=20)
    version.save()
    text.refresh_from_db()
    assert text.sha256 != before  # the deadline is part of what the member was told


@pytest.mark.parametrize(
    ("locale", "chosen"),
    [("de", "de"), ("de-at", "de"), ("fr-ch", "fr"), ("es", "en"), ("", "en")],
)
def test_text_falls_back_from_locale_to_language_to_the_default(locale, chosen):
    version = notice_version(locales=["en", "de", "fr"])
    assert text_for_locale(version, locale).locale == chosen


def test_markdown_keeps_links_and_drops_scripts():
    html = markdown_to_html(
        "Read [this](https://example.com). <script>alert(1)</script>"
        " [bad](javascript:alert(1)) <img src=x onerror=alert(1)>"
    )
    assert '<a href="https://example.com" rel="noopener noreferrer">this</a>' in html
    assert "<script" not in html and "javascript:" not in html and "onerror" not in html


def test_compiled_message_is_in_the_locale_with_translated_chrome():
    compiled = compile_message(notice_version(), "de", reminder=True)
    assert compiled.subject == "Erinnerung: Subject [de]"
    assert "Hinweis lesen und entscheiden" in compiled.text
    assert "Body in <strong>de</strong>" in compiled.html
    assert "Body in de with a link (https://example.com/de)." in compiled.text


def test_preview_renders_every_locale_for_staff(console):
    version = notice_version()
    for locale in ("en", "de", "fr"):
        response = console.get(
            reverse("admin:campaigns_noticeversion_preview", args=[version.pk, locale])
        )
        assert response.status_code == 200
        assert f"Subject [{locale}]" in response.content.decode()


def test_send_test_goes_to_the_staff_member_and_is_not_a_delivery(console):
    version = notice_version()
    url = reverse("admin:campaigns_noticeversion_send_test", args=[version.pk, "fr"])
    assert console.get(url).status_code == 405
    console.post(url)
    [message] = mail.outbox
    assert message.to == ["priya@example.com"]
    assert message.subject == "[TEST] Subject [fr]"
    assert message.extra_headers["X-Renotify-Test"] == "yes"
    assert Delivery.objects.count() == 0


def test_send_test_service_links_to_the_staff_preview():
    version = notice_version(locales=["en"])
    notice_send_test(version=version, locale="en", to="lead@example.com", by=None)
    [message] = mail.outbox
    assert f"/admin/campaigns/noticeversion/{version.pk}/preview/en/" in message.body


def test_subjects_are_plain_text_not_html_escaped():
    version = notice_version(locales=["fr"], default_locale="fr")
    NoticeText.objects.filter(version=version).update(subject="Vos données & l'IA <2027>")
    text = version.texts.get()
    text.save()  # refresh the hash the compile cache is keyed on
    assert compile_message(version, "fr", reminder=False).subject == "Vos données & l'IA <2027>"


HOSTILE_MARKDOWN = """# Your data and AI

We will use **public posts** to train _models_. Read [the notice](https://example.com/n?a=1&b=2).

<script>alert('xss')</script>
<a href="javascript:alert(1)">click me</a>, [also bad](javascript:alert(2)),
![a picture](data:image/png;base64,AAAA) <img src=x onerror=alert(3)>

- first item
- second item with `code`

Then:

1. step one
2. step two

Write to <privacy@example.com> or see <https://example.com/help>.
"""


def hostile_version():
    version = notice_version(locales=["en"])
    text = version.texts.get()
    text.body_markdown = HOSTILE_MARKDOWN
    text.save()
    return version


def assert_plain(text: str) -> None:
    for markup in ("<", "javascript:", "data:", "**", "alert", "onerror", "](", "# "):
        assert markup not in text, markup
    assert "We will use public posts to train models." in text
    assert "Read the notice (https://example.com/n?a=1&b=2)." in text
    assert "click me, also bad," in text  # unsafe links keep their words, lose their URL
    lists = "\n\n- first item\n- second item with code\n\nThen:\n\n1. step one\n2. step two\n\n"
    assert lists in text
    assert "Write to privacy@example.com or see https://example.com/help." in text
    assert text.startswith("Your data and AI\n\nWe will use")  # a heading is a plain line


def test_the_text_part_of_a_sent_notice_is_plain_text_from_the_sanitised_markdown():
    from accounts.models import Member
    from campaigns.models import CampaignState
    from campaigns.services.fanout import campaign_fan_out
    from campaigns.services.sending import campaign_send_chunk
    from tests.factories import MemberFactory, campaign

    MemberFactory(locale="en", country="US")
    sending = campaign(version=hostile_version(), state=CampaignState.SENDING)
    campaign_fan_out(campaign=sending)
    campaign_send_chunk(campaign_id=sending.pk)
    [message] = mail.outbox
    assert message.to == [Member.objects.get().email]
    assert_plain(message.body)
    html = message.alternatives[0][0]
    assert "<strong>public posts</strong>" in html and "<script" not in html


def test_the_preview_shows_the_text_part_as_it_is_sent(console):
    import html

    version = hostile_version()
    page = console.get(
        reverse("admin:campaigns_noticeversion_preview", args=[version.pk, "en"])
    ).content.decode()
    shown = html.unescape(page.split("<pre", 1)[1].split(">", 1)[1].split("</pre>", 1)[0])
    sent = compile_message(version, "en", reminder=False).personalise(
        notice_url="#preview-link", unsubscribe_url="#preview-link"
    )[0]
    assert shown == sent
    assert_plain(shown)


def test_the_text_part_keeps_nested_lists_code_and_quotes_readable():
    from campaigns.rendering import markdown_to_text

    text = markdown_to_text(
        "Intro\n\n- outer\n    - inner\n- last\n\n> quoted *words*\n\n"
        "    code <b>kept</b> as text\n\nA line  \nbreak, and 3 < 4 & 5 > 2."
    )
    assert "- outer\n  - inner\n- last" in text
    assert "quoted words" in text and "*" not in text
    assert "code <b>kept</b> as text" in text  # a code block's text is shown as written
    assert "A line\nbreak, and 3 < 4 & 5 > 2." in text
