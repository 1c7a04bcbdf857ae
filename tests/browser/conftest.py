"""Headless Debian chromium driven by Playwright against pytest-django's live server.

The browser is Debian's package (``make browsers`` installs it; CI does), never one that
Playwright downloads (RENOTIFY_CHROMIUM names another binary). Without it these tests
skip, unless RENOTIFY_REQUIRE_SERVICES=1 (tests/conftest.py turns the skip into a failure).
"""

import os
import shutil
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connections

from accounts.models import Member
from campaigns.models import Campaign, CampaignState, Notice, NoticeText, NoticeVersion
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.sending import campaign_send_chunk
from tests.browser import pages
from tests.factories import MemberFactory, ai_training

CHROMIUM = os.environ.get("RENOTIFY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BROWSER_LOCALES = {"en": "en-GB", "de": "de-DE", "fr": "fr-FR"}


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (`make browsers`, as root)")
    pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install -e '.[dev]'")
    pytest.importorskip("axe_playwright_python", reason="needs axe-playwright-python")
    # This run's screenshots only, none left over from an earlier one.
    shutil.rmtree(pages.SCREENSHOTS, ignore_errors=True)
    pages.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return CHROMIUM


@pytest.fixture
def chromium(chromium_path, transactional_db, monkeypatch):
    """A fresh browser for each test (Playwright's ``launch`` gives it a new temporary
    user-data-dir), started after the test database is set up and closed before its flush.

    Playwright's sync API keeps an asyncio loop marked as running in this thread. Django
    then refuses ORM calls from the test ("async context") unless allowed, and hands them
    connections of their own, per async context: the test steps never use the ORM while
    the browser acts, so allowing it is safe, and those connections are closed here before
    the loop stops (the flush after the test runs on the thread's own connection again).
    """
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
            connections.close_all()


@dataclass
class Tab:
    """A page in a fresh browser context, with what went wrong on the way."""

    page: object
    responses: list[tuple[int, str]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def console(self, message) -> None:
        # Browsers ask for /favicon.ico on their own; the pages declare no icon.
        if message.type == "error" and "favicon.ico" not in message.location.get("url", ""):
            self.console_errors.append(f"{message.text} ({message.location.get('url')})")

    def statuses(self, suffix: str) -> list[int]:
        return [status for status, url in self.responses if url.split("?")[0].endswith(suffix)]


@pytest.fixture
def open_tab(chromium):
    """``open_tab(language=..., viewport=pages.MOBILE, javascript=True)`` -> Tab."""
    contexts = []

    def open_(*, language: str, viewport: dict = pages.MOBILE, javascript: bool = True) -> Tab:
        mobile = viewport == pages.MOBILE
        context = chromium.new_context(
            viewport=viewport,
            locale=BROWSER_LOCALES[language],
            is_mobile=mobile,
            has_touch=mobile,
            java_script_enabled=javascript,
        )
        contexts.append(context)
        page = context.new_page()
        tab = Tab(page=page)
        page.on("response", lambda r: tab.responses.append((r.status, r.url)))
        page.on("console", lambda m: tab.console(m))
        page.on("pageerror", lambda e: tab.console_errors.append(str(e)))
        return tab

    yield open_
    for context in contexts:
        context.close()


# --- The site and the emails it sent ----------------------------------------------------


@pytest.fixture
def site(live_server, settings, tmp_path, receipts_inline, _isolated_settings):
    """The live server as the links' host; mail through the real outbox backend; the
    objection receipt sender run in-process on commit, as a worker would."""
    settings.SITE_URL = live_server.url
    settings.EMAIL_BACKEND = "config.mail.OutboxBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "outbox")
    cache.clear()  # the POST rate limits count per link and address in the cache
    return live_server


NOTICE_TEXTS = {
    "en": (
        "How we will use your posts to train our AI models",
        "From 1 March 2027 we will use the public posts and comments you share with us to "
        "train the AI models behind our writing assistant.\n\n"
        "## What we will use\n\n"
        "- your public posts and comments since 2020;\n"
        "- never your private messages, and nothing from accounts of people under 18.\n\n"
        "## Your choice\n\n"
        "You can object at any time, without giving a reason. More in our "
        "[privacy policy](https://example.com/en/privacy).",
    ),
    "de": (
        "Wie wir Ihre Beiträge für das Training unserer KI-Modelle nutzen",
        "Ab dem 1. März 2027 nutzen wir die öffentlichen Beiträge und Kommentare, die Sie bei "
        "uns teilen, um die KI-Modelle unseres Schreibassistenten zu trainieren.\n\n"
        "## Was wir nutzen\n\n"
        "- Ihre öffentlichen Beiträge und Kommentare seit 2020;\n"
        "- niemals Ihre privaten Nachrichten und nichts aus Konten von Personen unter 18.\n\n"
        "## Ihre Wahl\n\n"
        "Sie können jederzeit widersprechen, ohne Begründung. Mehr in unserer "
        "[Datenschutzerklärung](https://example.com/de/privacy).",
    ),
    "fr": (
        "Comment nous utiliserons vos publications pour entraîner nos modèles d'IA",
        "À partir du 1er mars 2027, nous utiliserons les publications et commentaires publics "
        "que vous partagez avec nous pour entraîner les modèles d'IA de notre assistant "
        "d'écriture.\n\n"
        "## Ce que nous utiliserons\n\n"
        "- vos publications et commentaires publics depuis 2020 ;\n"
        "- jamais vos messages privés, ni rien des comptes de personnes de moins de 18 ans.\n\n"
        "## Votre choix\n\n"
        "Vous pouvez vous opposer à tout moment, sans donner de raison. Plus d'informations "
        "dans notre [politique de confidentialité](https://example.com/fr/privacy).",
    ),
}


@dataclass(frozen=True)
class Recipient:
    member: Member
    language: str
    notice_url: str
    unsubscribe_url: str
    subject: str
    site_url: str
    outbox: Path

    def mail(self) -> list:
        """Every email this reader has been sent so far, oldest first."""
        return pages.messages_to(self.outbox, self.member.email)


PERSONAS = {
    # name: (locale, country). Ada, Bernd and Chloé live where they may object;
    # Eve lives in the UK, where the data is not used for training at all.
    "ada": ("en", "US"),
    "bernd": ("de", "US"),
    "chloe": ("fr", "CA"),
    "eve": ("en", "GB"),
}


@pytest.fixture
def sent(site, settings) -> dict[str, Recipient]:
    """The notice campaign, fanned out and sent through the real sending path; each persona's
    links read back from the .eml file the outbox backend wrote."""
    ai_training()
    version = NoticeVersion.objects.create(
        notice=Notice.objects.create(title="AI training notice"),
        default_locale="en",
        effective_date=date(2027, 3, 1),
        objection_deadline=date(2027, 2, 15),
    )
    for locale, (subject, body) in NOTICE_TEXTS.items():
        NoticeText.objects.create(
            version=version, locale=locale, subject=subject, body_markdown=body
        )
    for name, (locale, country) in PERSONAS.items():
        MemberFactory(external_id=name, email=f"{name}@example.com", locale=locale, country=country)
    campaign = Campaign.objects.create(
        name="AI training notice",
        notice_version=version,
        state=CampaignState.SENDING,
        throttle_per_minute=60_000,
    )
    campaign_fan_out(campaign=campaign)
    while campaign_send_chunk(campaign_id=campaign.pk).claimed:
        pass
    outbox = Path(settings.EMAIL_FILE_PATH)
    recipients = {}
    for name, (locale, _country) in PERSONAS.items():
        [message] = pages.messages_to(outbox, f"{name}@example.com")
        recipients[name] = Recipient(
            member=Member.objects.get(external_id=name),
            language=locale,
            notice_url=pages.link_in(message, site.url, "/n/"),
            unsubscribe_url=pages.one_click_link(message),
            # Python's email package folds a long encoded subject onto a continuation line
            # ("Subject: \r\n =?utf-8?..."); mail clients drop the folding space.
            subject=str(message["Subject"]).strip(),
            site_url=site.url,
            outbox=outbox,
        )
    return recipients


def pytest_terminal_summary(terminalreporter):
    if pages.CHECKED:
        terminalreporter.section("axe-core (WCAG 2.1 A/AA) per page state")
        for c in pages.CHECKED:
            terminalreporter.write_line(
                f"{c.viewport:8} {c.language} {c.state:28} violations={c.violations} "
                f"passed-rules={c.passes} needs-review={c.incomplete} "
                + (
                    f"smallest-tap-target={c.smallest_tap_px:.0f}px"
                    if c.smallest_tap_px
                    else "no buttons"
                )
            )
    if pages.SCREENSHOTS_TAKEN:
        where = pages.SCREENSHOTS.relative_to(pages.ROOT)
        terminalreporter.write_line(
            f"browser screenshots: {len(pages.SCREENSHOTS_TAKEN)} in {where}/"
        )
