"""The campaign flow, the approver's page and the notice diff in a real browser: the live
audience count runs under the console's content security policy (no violation, no
console error), the flow works without JavaScript too, and axe-core finds no WCAG 2.1
A/AA violation on any of these pages."""

import re

import pytest

from campaigns.models import Campaign, CampaignState, NoticeText, NoticeVersion
from tests.browser.pages import AXE_OPTIONS, DESKTOP, screenshot, sign_in
from tests.factories import (
    CAMPAIGN_APPROVER,
    CAMPAIGN_EDITOR,
    MemberFactory,
    campaign,
    notice_version,
    staff_user,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-staff-passphrase"


@pytest.fixture
def members(site):
    for country, locale in [("GB", "en"), ("GB", "en"), ("DE", "de"), ("FR", "fr"), ("US", "en")]:
        MemberFactory(country=country, locale=locale)
    return notice_version()


def log_in(page, site_url: str, username: str, next_path: str) -> None:
    sign_in(page, site_url, username=username, password=PASSWORD, next_path=next_path)


def assert_accessible(page, name: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    screenshot(page, name)
    results = Axe().run(page, options=AXE_OPTIONS)
    assert results.violations_count == 0, f"{name}: {results.generate_report()}"


def _walk_to_audience(page, version: NoticeVersion) -> None:
    page.fill("#id_name", "Browser campaign")
    page.check(f"#version-{version.pk}")
    page.get_by_role("button", name="Next").click()
    page.locator("#count-heading").wait_for()


def test_the_count_follows_the_filters_and_the_editor_submits(site, members, open_tab):
    staff_user("erin", *CAMPAIGN_EDITOR, password=PASSWORD)
    tab = open_tab(language="en", viewport=DESKTOP)
    page = tab.page
    log_in(page, site.url, "erin", "/console/campaigns/new/")
    assert_accessible(page, "console-flow-version")
    _walk_to_audience(page, members)
    count = page.locator("#audience-count")
    assert "5 reachable by email of 5 selected" in count.inner_text()
    assert_accessible(page, "console-flow-audience")

    page.get_by_label("European Union").check()  # no button pressed: the script counts
    count.get_by_text(re.compile(r"^2 reachable by email of 2 selected")).wait_for(timeout=10_000)
    page.fill("#id_countries", "Atlantis")
    count.get_by_text("countries: Unknown country code: Atlantis.").wait_for(timeout=10_000)
    page.fill("#id_countries", "")
    count.get_by_text(re.compile(r"^2 reachable")).wait_for(timeout=10_000)
    assert 200 in tab.statuses("/console/campaigns/new/count/")
    # A CSP violation would be an error here ("Refused to ..."); the bad filter's 400 is
    # the only one expected.
    assert [e for e in tab.console_errors if "status of 400" not in e] == []

    page.get_by_role("button", name="Next").click()
    page.fill("#id_throttle_per_minute", "600")
    assert_accessible(page, "console-flow-schedule")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("heading", name="Review and submit").or_(
        page.get_by_role("heading", name="Audience")
    ).first.wait_for()
    assert_accessible(page, "console-flow-review")
    page.get_by_role("button", name="Submit for approval").click()
    page.wait_for_url(re.compile(r"/console/campaigns/\d+/$"))
    saved = Campaign.objects.get()
    assert saved.state == CampaignState.AWAITING_APPROVAL
    assert saved.jurisdictions == ["EU"] and saved.throttle_per_minute == 600


def test_without_javascript_the_count_button_counts(site, members, open_tab):
    staff_user("erin", *CAMPAIGN_EDITOR, password=PASSWORD)
    page = open_tab(language="en", viewport=DESKTOP, javascript=False).page
    log_in(page, site.url, "erin", "/console/campaigns/new/")
    _walk_to_audience(page, members)
    page.get_by_label("United Kingdom").check()
    page.get_by_role("button", name="Count").click()
    page.locator("#audience-count", has_text="2 reachable by email of 2 selected").wait_for()


def test_the_approver_page_and_the_notice_diff_are_accessible(site, members, open_tab):
    editor = staff_user("erin", *CAMPAIGN_EDITOR, password=PASSWORD)
    staff_user("abe", *CAMPAIGN_APPROVER, password=PASSWORD)
    awaiting = campaign(
        version=members, state=CampaignState.AWAITING_APPROVAL, last_edited_by=editor
    )
    newer = NoticeVersion.objects.create(
        notice=members.notice, effective_date=members.effective_date,
        objection_deadline=members.objection_deadline,
    )  # fmt: skip
    NoticeText.objects.create(version=newer, locale="en", subject="New subject", body_markdown="B")
    tab = open_tab(language="en", viewport=DESKTOP)
    page = tab.page
    log_in(page, site.url, "abe", "/console/approvals/")
    assert_accessible(page, "console-approvals")
    page.get_by_role("link", name=awaiting.name).click()
    page.frame_locator("iframe.preview-frame").locator("body").wait_for()
    assert "Body in" in page.frame_locator("iframe.preview-frame").locator("body").inner_text()
    assert_accessible(page, "console-approval")
    page.goto(f"{site.url}/console/notices/{members.notice_id}/diff/?a={members.pk}&b={newer.pk}")
    assert_accessible(page, "console-notice-diff")
    assert tab.console_errors == []
