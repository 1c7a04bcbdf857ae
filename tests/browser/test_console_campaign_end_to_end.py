"""A campaign's whole life in the console, in a real browser, as two people with roles and
two-factor sign-in, while a real Celery worker sends it.

Erin (Editor) signs in with her authenticator app, builds the campaign in the guided flow
and submits it; Abe (Approver, a second person) signs in with his, approves it from his
inbox and schedules it on the campaign's page; beat's start task runs on a worker of its
own queue that sends into a local SMTP server, and the dashboard's progress moves while it
does, without a reload. Every console page on the way has zero axe (WCAG 2.1 A/AA)
violations; the dashboard and campaign page are kept as screenshots. The staff audit trail
holds each of their acts, by the right person.

Needs PostgreSQL and Redis (the worker shares the test database) and Debian's chromium.
"""

import re
import time

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.models import StaffAction
from campaigns.models import Campaign, CampaignState, Delivery
from campaigns.tasks import campaigns_start_due
from console.roles import roles_sync
from tests.browser.pages import check_state, screenshot
from tests.browser.test_console_dashboard import LAPTOP, fits_the_screen
from tests.factories import MemberFactory, notice_version, staff_user
from tests.integration.conftest import wait_for
from tests.integration.support import sending_worker, smtp_sink

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "a-long-staff-passphrase"
MEMBERS = 24
# One message a second: the campaign takes about half a minute, long enough for the
# dashboard to poll it several times on the way.
THROTTLE = 60
PROGRESS = re.compile(r"(\d+) of (\d+) deliveries done")


@pytest.fixture
def team(services, site, settings):
    """Erin the editor and Abe the approver, each with the role's group and a confirmed
    authenticator app; two-factor required, as in production; members to reach."""
    settings.RENOTIFY_STAFF_2FA = "required"
    settings.RENOTIFY_CONSOLE_PROGRESS_SECONDS = 0  # each poll sees the database as it is
    settings.RENOTIFY_CONSOLE_REACH_SECONDS = 0
    settings.RENOTIFY_CONSOLE_COUNTS_SECONDS = 0
    roles_sync()  # the groups the migration made (a transactional test's flush took them)
    people = {}
    for username, role in (("erin", "Editor"), ("abe", "Approver")):
        user = staff_user(username, password=PASSWORD)
        user.groups.add(Group.objects.get(name=role))
        people[username] = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    for n in range(MEMBERS):
        MemberFactory(country=("GB", "DE", "FR", "US")[n % 4], locale=("en", "de", "fr")[n % 3])
    return people


def sign_in_with_code(page, site_url: str, device: TOTPDevice, next_path: str) -> None:
    page.goto(f"{site_url}/console/login/?next={next_path}")
    check_state(page, state="console-sign-in", language="en", viewport="laptop")
    page.fill("#id_username", device.user.username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/login/verify/**")
    page.fill("#id_code", f"{TOTP(device.bin_key).token():06d}")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"**{next_path}")


def accessible(page, state: str) -> None:
    check_state(page, state=state, language="en", viewport="laptop")


def create_and_submit(page, site_url: str, version) -> Campaign:
    page.goto(f"{site_url}/console/campaigns/new/")
    accessible(page, "console-e2e-new-version")
    page.fill("#id_name", "Autumn AI training notice")
    page.check(f"#version-{version.pk}")
    page.get_by_role("button", name="Next").click()
    page.locator("#audience-count", has_text=f"{MEMBERS} reachable by email").wait_for()
    accessible(page, "console-e2e-new-audience")
    page.get_by_role("button", name="Next").click()
    page.fill("#id_throttle_per_minute", str(THROTTLE))
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Submit for approval").wait_for()
    accessible(page, "console-e2e-new-review")
    page.get_by_role("button", name="Submit for approval").click()
    page.wait_for_url(re.compile(r"/console/campaigns/\d+/$"))
    accessible(page, "console-e2e-campaign-awaiting")
    return Campaign.objects.get()


def approve_and_schedule(page, site_url: str, campaign: Campaign) -> None:
    accessible(page, "console-e2e-approvals")
    page.get_by_role("link", name=campaign.name).click()
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url("**/console/approvals/")
    page.get_by_text("Approved.").wait_for()
    page.goto(f"{site_url}/console/campaigns/{campaign.pk}/")
    page.fill("#starts-at", timezone.localtime().strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Schedule").click()
    page.get_by_text("Scheduled to start at").wait_for()
    accessible(page, "console-e2e-campaign-scheduled")


def progress_seen(page, *, until_done: int, timeout: float) -> list[tuple[int, int]]:
    """Read the dashboard's progress (updated by its own polling, never reloaded) until
    ``until_done`` deliveries are done; every distinct (done, total) seen on the way."""
    box = page.locator(".progress-box").first
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = PROGRESS.search(box.inner_text())
        if match:
            figures = (int(match.group(1)), int(match.group(2)))
            if not seen or seen[-1] != figures:
                seen.append(figures)
            if figures[0] >= until_done:
                return seen
        time.sleep(0.5)
    raise AssertionError(f"the dashboard's progress stopped at {seen[-1:]}")


def test_an_editor_and_an_approver_take_a_campaign_to_sent_and_watch_it_on_the_dashboard(
    team, site, open_tab, tmp_path
):
    version = notice_version()
    erin = open_tab(language="en", viewport=LAPTOP)
    sign_in_with_code(erin.page, site.url, team["erin"], "/console/")
    accessible(erin.page, "console-e2e-dashboard-empty")
    campaign = create_and_submit(erin.page, site.url, version)
    assert campaign.state == CampaignState.AWAITING_APPROVAL
    assert (campaign.created_by, campaign.throttle_per_minute) == (team["erin"].user, THROTTLE)
    # Erin may not approve her own campaign: the page offers her no such button.
    assert erin.page.get_by_role("button", name="Approve").count() == 0
    erin.page.get_by_role("button", name="Sign out").click()
    erin.page.wait_for_url("**/console/login/")

    abe = open_tab(language="en", viewport=LAPTOP)
    sign_in_with_code(abe.page, site.url, team["abe"], "/console/approvals/")
    approve_and_schedule(abe.page, site.url, campaign)
    campaign.refresh_from_db()
    assert campaign.state == CampaignState.SCHEDULED
    assert campaign.approved_by == team["abe"].user

    page = abe.page
    with smtp_sink() as sink:
        worker_env = {"EMAIL_URL": sink.url, "SITE_URL": site.url, "RENOTIFY_CHUNK_SIZE": "4"}
        with sending_worker(log_dir=tmp_path, env=worker_env) as worker:
            page.goto(f"{site.url}/console/")
            campaigns_start_due.apply_async(queue=worker.queue)  # what beat does
            seen = progress_seen(page, until_done=MEMBERS, timeout=180)
            # Every notice handed to the SMTP server (the campaign itself stays sending
            # while reminder waves are still possible).
            wait_for(lambda: sink.count() == MEMBERS, timeout=30, what="every message")
        received = sink.count()

    intermediate = [done for done, total in seen if total == MEMBERS and 0 < done < MEMBERS]
    assert len(intermediate) >= 2, f"progress seen: {seen}"
    assert seen[-1] == (MEMBERS, MEMBERS)
    assert received == MEMBERS == Delivery.objects.filter(status="sent").count()
    assert 200 in abe.statuses(f"/console/campaigns/{campaign.pk}/progress/")
    assert fits_the_screen(page)
    accessible(page, "console-e2e-dashboard-sent")
    screenshot(page, "console-dashboard")

    page.goto(f"{site.url}/console/campaigns/{campaign.pk}/")
    assert page.get_by_role("img", name=re.compile("Funnel")).is_visible()
    assert fits_the_screen(page)
    accessible(page, "console-e2e-campaign-sent")
    screenshot(page, "console-campaign-page")
    for path in ("/console/campaigns/", "/console/approvals/", "/console/notices/"):
        page.goto(f"{site.url}{path}")
        accessible(page, f"console-e2e{path.rstrip('/').replace('/', '-')}")
    assert erin.console_errors == [] and abe.console_errors == []

    # Who did what, in the staff audit trail.
    acts = list(
        StaffAction.objects.filter(target_type="campaigns.campaign", target_id=str(campaign.pk))
        .order_by("id")
        .values_list("by__username", "action")
    )
    assert acts == [
        ("erin", "create"),
        ("erin", "submit"),
        ("abe", "approve"),
        ("abe", "schedule"),
    ]
