"""The console's dashboard and campaign page in a real browser, on a laptop screen: the
progress polls its fragment while a campaign sends (its script allowed by the page's own
Content-Security-Policy, no console errors), nothing overflows 1366 x 768, axe finds
nothing; screenshots of both pages are kept as test artifacts."""

import pytest

from campaigns.models import CampaignState, Delivery, DeliveryStatus
from campaigns.services.fanout import campaign_fan_out
from tests.browser.pages import check_state, screenshot, sign_in
from tests.factories import CAMPAIGN_APPROVER, MemberFactory, campaign, staff_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-staff-passphrase"
LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture
def sending(site, settings):
    """A campaign to four members, one of whom has been sent the notice; counts are
    never kept, so each poll sees the database as it is."""
    settings.RENOTIFY_CONSOLE_PROGRESS_SECONDS = 0
    settings.RENOTIFY_CONSOLE_REACH_SECONDS = 0
    settings.RENOTIFY_CONSOLE_COUNTS_SECONDS = 0
    for country in ("GB", "DE", "FR", "US"):
        MemberFactory(country=country)
    made = campaign(state=CampaignState.SENDING, name="Autumn notice", throttle_per_minute=60)
    campaign_fan_out(campaign=made)
    Delivery.objects.filter(pk=Delivery.objects.order_by("pk").first().pk).update(
        status=DeliveryStatus.SENT
    )
    staff_user("abe", *CAMPAIGN_APPROVER, password=PASSWORD)
    return made


def log_in(page, site_url: str, next_path: str) -> None:
    sign_in(page, site_url, username="abe", password=PASSWORD, next_path=next_path)


def fits_the_screen(page) -> bool:
    return page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


def test_the_dashboard_shows_progress_moving_while_a_campaign_sends(site, sending, open_tab):
    tab = open_tab(language="en", viewport=LAPTOP)
    page = tab.page
    log_in(page, site.url, "/console/")
    progress = page.locator(".progress-box").first
    assert "1 of 4 deliveries done (25%)" in progress.inner_text()
    assert fits_the_screen(page)
    check_state(page, state="console-dashboard", language="en", viewport="laptop")

    Delivery.objects.filter(status=DeliveryStatus.PENDING).update(status=DeliveryStatus.SENT)
    page.locator(".progress-box", has_text="4 of 4 deliveries done (100%)").wait_for(timeout=15_000)
    assert tab.statuses(f"/console/campaigns/{sending.pk}/progress/").count(200) >= 1
    assert tab.console_errors == []  # a script the policy refused would be reported here
    screenshot(page, "laptop-en-console-dashboard-progressed")


def test_the_campaign_page_fits_a_laptop_and_offers_the_approvers_buttons(site, sending, open_tab):
    tab = open_tab(language="en", viewport=LAPTOP)
    page = tab.page
    path = f"/console/campaigns/{sending.pk}/"
    log_in(page, site.url, path)
    assert page.get_by_role("button", name="Pause").is_visible()
    assert page.get_by_role("button", name="Cancel campaign").is_visible()
    assert page.get_by_role("img", name="Funnel of Autumn notice").is_visible()
    assert fits_the_screen(page)
    check_state(page, state="console-campaign", language="en", viewport="laptop")
    assert tab.console_errors == []


def test_without_javascript_the_dashboard_still_shows_progress_and_a_reload_link(
    site, sending, open_tab
):
    tab = open_tab(language="en", viewport=LAPTOP, javascript=False)
    page = tab.page
    log_in(page, site.url, "/console/")
    assert "1 of 4 deliveries done" in page.locator(".progress-box").first.inner_text()
    Delivery.objects.filter(status=DeliveryStatus.PENDING).update(status=DeliveryStatus.SENT)
    page.get_by_role("link", name="reload this page").click()
    assert "4 of 4 deliveries done" in page.locator(".progress-box").first.inner_text()
