"""The staff console in a real browser: a staff member logs in through the login form
(throttled by django-axes) and watches a sending campaign's progress, without JavaScript.

The progress used to be an iframe, which the site's own ``X-Frame-Options: DENY`` left
blank in Chromium: it is now part of the campaign's page.
"""

import re

import pytest

from campaigns.models import CampaignState, Delivery, DeliveryStatus
from campaigns.services.fanout import campaign_fan_out
from tests.browser.pages import DESKTOP, screenshot, sign_in
from tests.factories import MemberFactory, campaign, staff_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-staff-passphrase"


@pytest.fixture
def sending(site):
    """A campaign to four members, one of whom has been sent the notice."""
    for _ in range(4):
        MemberFactory()
    c = campaign(state=CampaignState.SENDING, throttle_per_minute=60_000)
    campaign_fan_out(campaign=c)
    Delivery.objects.filter(pk=Delivery.objects.order_by("pk").first().pk).update(
        status=DeliveryStatus.SENT
    )
    staff_user("viv", "campaigns.view_campaign", password=PASSWORD)
    return c


def log_in(page, site_url: str, next_path: str) -> None:
    sign_in(page, site_url, username="viv", password=PASSWORD, next_path=next_path)


def test_staff_see_a_sending_campaigns_progress_on_its_page(site, sending, open_tab):
    tab = open_tab(language="en", viewport=DESKTOP, javascript=False)
    page = tab.page
    change_path = f"/admin/campaigns/campaign/{sending.pk}/change/"
    log_in(page, site.url, change_path)

    progress = page.locator(".renotify-progress")
    assert progress.is_visible()
    text = progress.inner_text()
    assert "1 of 4 deliveries finished (25%)" in text
    assert re.search(r"Pending\s+3", text) and re.search(r"Sent\s+1", text)
    assert page.get_by_role("progressbar").get_attribute("aria-valuenow") == "25"
    assert page.locator("iframe").count() == 0
    screenshot(page, "console-campaign-progress")

    # The watch page refreshes itself while the campaign sends: no JavaScript needed.
    page.get_by_role("link", name="Watch the progress").click()
    page.wait_for_url("**/progress/")
    assert "1 of 4 deliveries finished" in page.locator(".renotify-progress").inner_text()
    Delivery.objects.filter(status=DeliveryStatus.PENDING).update(status=DeliveryStatus.SENT)
    page.locator(".renotify-progress", has_text="4 of 4 deliveries finished").wait_for(
        timeout=10_000
    )
    assert [s for s, url in tab.responses if url.endswith("/progress/")].count(200) >= 2
    assert tab.console_errors == []
