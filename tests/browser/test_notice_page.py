"""The hosted notice pages in a real browser, opened from the links of really sent emails.

Every page state is checked with axe-core against WCAG 2.1 A/AA in each language,
screenshotted under var/test-artifacts/screenshots/, and its buttons measured on a phone.
"""

import pytest
from django.utils import translation

from accounts.models import Action, ConsentEvent, EmailStatus, Preference, Source
from tests.browser import pages
from tests.browser.conftest import NOTICE_TEXTS
from tests.browser.pages import DESKTOP, check_state, screenshot
from tests.clock import at_the_start_of_a_rate_window

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

READERS = ["ada", "bernd", "chloe"]  # en, de, fr; all live where they may object


def t(language: str, message: str) -> str:
    """``message`` as the page should show it in ``language``."""
    with translation.override(language):
        text = translation.gettext(message)
    assert language == "en" or text != message, f"no {language} translation for {message!r}"
    return text


def objection_recorded(language: str) -> str:
    """The confirmation of an objection to AI training, the purpose named in ``language``."""
    from accounts.models import Purpose
    from accounts.selectors import purpose_wording

    name = purpose_wording(purpose=Purpose.objects.get(slug="ai-training"), locale=language).name
    return t(language, "Your objection to “%(name)s” is recorded.") % {"name": name}


def status_text(page) -> str:
    return page.get_by_role("status").inner_text()


def submit(page, action: str) -> None:
    """Tap the button of ``action`` and wait for the post/redirect/get to land."""
    page.locator(f"button[name=action][value={action}]").click()
    page.wait_for_url(f"**done={action}**")


def ledger(member) -> list[tuple[str, str]]:
    return list(
        ConsentEvent.objects.filter(member=member).order_by("seq").values_list("action", "comment")
    )


def assert_nothing_went_wrong(tab, *, allowed_statuses=()) -> None:
    """No CSP report or script error in the console, no failed request but those expected
    (and the favicon, which browsers ask for on their own)."""
    expected = [f"status of {status} " for status in allowed_statuses]
    assert [m for m in tab.console_errors if not any(e in m for e in expected)] == []
    assert [
        (status, url)
        for status, url in tab.responses
        if status >= 400 and status not in allowed_statuses and not url.endswith("/favicon.ico")
    ] == []


@pytest.mark.parametrize("name", READERS)
def test_reader_acknowledges_objects_and_undoes_from_the_email(sent, open_tab, name):
    reader = sent[name]
    language, member = reader.language, reader.member
    tab = open_tab(language=language)
    page = tab.page

    page.goto(reader.notice_url)
    assert page.locator("h1").inner_text() == reader.subject == NOTICE_TEXTS[language][0]
    assert tab.statuses("/static/renotify/public.css") == [200]  # live_server serves static
    button = page.locator("button[value=acknowledge]")
    assert button.evaluate("b => getComputedStyle(b).minHeight") == "48px"  # the CSS applies
    check_state(page, state="1-notice", language=language)

    submit(page, "acknowledge")
    assert status_text(page) == t(
        language, "Thank you: we have recorded that you read this notice."
    )
    assert page.get_by_text(t(language, "You have told us you read this notice.")).is_visible()
    check_state(page, state="2-acknowledged", language=language)

    submit(page, "object")  # one tap, no login, no reason
    assert objection_recorded(language) in status_text(page)
    assert Preference.objects.get(member=member).choice == "out"
    check_state(page, state="3-objected", language=language)

    [_notice, receipt] = reader.mail()
    page.goto(pages.link_in(receipt, reader.site_url, "/p/"))  # the receipt's link
    assert page.get_by_role("button", name=t(language, "Allow again")).is_visible()
    check_state(page, state="4-preferences-from-receipt", language=language)

    page.goto(reader.notice_url)
    submit(page, "allow")  # undo
    assert t(language, "Your objection is withdrawn.") in status_text(page)
    assert Preference.objects.get(member=member).choice is None  # back to no choice
    check_state(page, state="5-allowed-again", language=language)

    page.get_by_text(t(language, "Add a comment (optional)")).click()
    page.get_by_label(t(language, "Comment, if you want to give one. It is not required.")).fill(
        "Not for my posts, thanks."
    )
    check_state(page, state="6-comment-open", language=language)
    submit(page, "object")
    check_state(page, state="7-objected-again", language=language)

    assert ledger(member) == [
        (Action.ACKNOWLEDGE, ""),
        (Action.OBJECT, ""),
        (Action.WITHDRAW_OBJECTION, ""),
        (Action.OBJECT, "Not for my posts, thanks."),
    ]
    assert len(reader.mail()) == 3  # notice + 2 receipts
    assert_nothing_went_wrong(tab)


def test_reader_switches_language_and_keeps_it_after_choosing(sent, open_tab):
    """Bernd got the notice in German; he reads it in French, then in English, and objects
    in French: the confirmation speaks French too."""
    bernd = sent["bernd"]
    tab = open_tab(language="de", viewport=DESKTOP)
    page = tab.page
    page.goto(bernd.notice_url)
    check_state(page, state="1-notice", language="de", viewport="desktop")

    languages = page.get_by_role("navigation", name=t("de", "Language"))
    for step, language in enumerate(("fr", "en", "fr"), start=1):
        languages.get_by_role("link", name=language.upper(), exact=True).click()
        page.wait_for_url(f"**?lang={language}")
        assert page.locator("h1").inner_text() == NOTICE_TEXTS[language][0]
        assert page.locator("nav a[aria-current=page]").inner_text() == language.upper()
        check_state(
            page, state=f"2-switch-{step}-to-{language}", language=language, viewport="desktop"
        )
        languages = page.get_by_role("navigation", name=t(language, "Language"))

    submit(page, "object")
    assert "lang=fr" in page.url
    assert objection_recorded("fr") in status_text(page)
    assert page.locator("h1").inner_text() == NOTICE_TEXTS["fr"][0]
    check_state(page, state="3-objected-in-fr", language="fr", viewport="desktop")
    assert_nothing_went_wrong(tab)


@pytest.mark.parametrize("name", READERS)
def test_reader_unsubscribes_from_the_email_and_can_still_object(sent, open_tab, name):
    reader = sent[name]
    language, member = reader.language, reader.member
    tab = open_tab(language=language)
    page = tab.page

    page.goto(reader.unsubscribe_url)  # the footer link, also the List-Unsubscribe URL
    assert page.locator("h1").inner_text() == t(language, "Stop these emails?")
    check_state(page, state="8-unsubscribe", language=language)

    page.get_by_role("button", name=t(language, "Stop these emails")).click()
    page.get_by_role("status").wait_for()
    assert status_text(page) == t(language, "Done: you will get no more notice emails.")
    check_state(page, state="9-unsubscribed", language=language)
    member.refresh_from_db()
    [event] = ConsentEvent.objects.filter(member=member)
    assert (event.action, event.source) == (Action.UNSUBSCRIBE, Source.PREFERENCE_PAGE)
    assert (member.email_status, member.unsubscribed_at) == (EmailStatus.OK, event.created_at)
    assert not Preference.objects.filter(member=member).exists()  # not an objection

    page.get_by_role("link", name=t(language, "read the notice and choose")).click()
    page.wait_for_url("**/n/*/")  # a fresh link to the same notice
    assert page.locator("h1").inner_text() == reader.subject
    assert page.locator("button[value=object]").is_visible()  # objecting is one tap away
    assert_nothing_went_wrong(tab)


def test_every_step_works_with_javascript_disabled(sent, open_tab):
    """The pages need no script: Chloé does everything with JavaScript off."""
    chloe = sent["chloe"]
    tab = open_tab(language="fr", javascript=False)
    page = tab.page

    page.goto(chloe.notice_url)
    screenshot(page, "nojs-fr-1-notice")
    for action in ("acknowledge", "object", "allow"):
        submit(page, action)
        screenshot(page, f"nojs-fr-{action}")
    page.locator("summary").click()
    page.locator("textarea").fill("Sans JavaScript.")
    submit(page, "object")
    page.goto(chloe.unsubscribe_url)
    page.locator("form button").click()
    page.get_by_role("status").wait_for()
    screenshot(page, "nojs-fr-unsubscribed")
    pages.assert_tap_targets(page)

    assert [a for a, _c in ledger(chloe.member)] == [
        Action.ACKNOWLEDGE,
        Action.OBJECT,
        Action.WITHDRAW_OBJECTION,
        Action.OBJECT,
        Action.UNSUBSCRIBE,
    ]
    assert ledger(chloe.member)[3] == (Action.OBJECT, "Sans JavaScript.")
    assert_nothing_went_wrong(tab)


@pytest.mark.parametrize("name", READERS)
def test_error_pages_speak_the_reader_language(sent, open_tab, settings, name):
    reader = sent[name]
    language = reader.language
    tab = open_tab(language=language)
    page = tab.page

    response = page.goto(f"{reader.notice_url[:-6]}xxxxx/")  # cut short when copied
    assert response.status == 400
    assert page.locator("h1").inner_text() == t(language, "This link does not work")
    check_state(page, state="bad-link", language=language)

    settings.RENOTIFY_RATE_PER_TOKEN = "1/m"
    with at_the_start_of_a_rate_window():
        page.goto(reader.notice_url)
        submit(page, "acknowledge")
        page.locator("button[value=object]").click()
        page.wait_for_load_state()
    assert page.locator("h1").inner_text() == t(language, "Too many attempts")
    check_state(page, state="too-many-attempts", language=language)
    assert_nothing_went_wrong(tab, allowed_statuses={400, 429})


@pytest.mark.parametrize("language", ["en", "de", "fr"])
def test_where_the_data_is_not_used_the_page_says_so(sent, open_tab, language):
    """Eve lives in the UK: her data is not used for training, whatever she chooses."""
    tab = open_tab(language=language)
    page = tab.page
    page.goto(f"{sent['eve'].notice_url}?lang={language}")
    explanation = t(
        language, "Where you live, we do not use data for this at all, whatever you choose."
    )
    assert page.get_by_text(explanation).is_visible()
    check_state(page, state="notice-uk", language=language)
    assert_nothing_went_wrong(tab)


def planned_wording(language: str, message: str) -> str:
    from django.utils import formats

    from tests.gates_helpers import PLANNED

    with translation.override(language):
        when = formats.date_format(PLANNED, "DATE_FORMAT")
    return t(language, message) % {"date": when}


@pytest.mark.parametrize("language", ["en", "de", "fr"])
def test_under_a_planned_gate_the_uk_reader_is_told_of_it_and_objects(sent, open_tab, language):
    """A processing gate plans to open AI training in the UK: Eve reads that it is not
    used yet, planned from its date unless she objects; she objects, and reads that her
    objection applies then too."""
    from decimal import Decimal

    from accounts.models import Purpose
    from campaigns.models import Campaign
    from gates.services import GateTerms, gate_define
    from tests.factories import staff_user
    from tests.gates_helpers import PLANNED

    ada = staff_user("gate-ada", "gates.add_gate")
    terms = GateTerms("opt_out", PLANNED, [Campaign.objects.get().pk], 30, Decimal(90))
    gate_define(
        purpose=Purpose.objects.get(slug="ai-training"), jurisdiction="UK", terms=terms, by=ada
    )
    tab = open_tab(language=language)
    page = tab.page
    page.goto(f"{sent['eve'].notice_url}?lang={language}")
    planned = planned_wording(
        language,
        "Not used yet where you live; planned from %(date)s unless you object. "
        "If you object now, your objection applies then too.",
    )
    assert page.get_by_text(planned).is_visible()
    check_state(page, state="notice-uk-planned", language=language)

    submit(page, "object")

    objected = planned_wording(
        language,
        "You objected. Not used yet where you live; planned from %(date)s, and your "
        "objection applies then too.",
    )
    assert page.get_by_text(objected).is_visible()
    assert Preference.objects.get(member=sent["eve"].member).choice == "out"
    check_state(page, state="uk-planned-objected", language=language)
    assert_nothing_went_wrong(tab)
