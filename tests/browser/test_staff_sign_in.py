"""Signing in to the console with two-factor required, in a real browser: set up an
authenticator app from the secret the page shows, keep the recovery codes, sign in again
with one of them. The pages have no scripts; each step has zero WCAG 2.1 A/AA
violations (axe, which runs as a script)."""

from base64 import b32decode

import pytest
from django_otp.oath import TOTP

from tests.browser.pages import AXE_OPTIONS, DESKTOP, screenshot
from tests.factories import staff_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-staff-passphrase"


@pytest.fixture
def required(site, settings):
    settings.RENOTIFY_STAFF_2FA = "required"
    staff_user("viv", "campaigns.view_campaign", password=PASSWORD)
    return site


def no_violations(page, state: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    screenshot(page, f"console-{state}")
    results = Axe().run(page, options=AXE_OPTIONS)
    assert results.violations_count == 0, f"{state}: {results.generate_report()}"


def sign_in(page, site_url: str) -> None:
    page.goto(f"{site_url}/console/login/?next=/admin/")
    no_violations(page, "sign-in")
    page.fill("#id_username", "viv")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_a_staff_member_sets_up_two_factor_and_signs_in_with_a_recovery_code(required, open_tab):
    tab = open_tab(language="en", viewport=DESKTOP)
    page = tab.page
    sign_in(page, required.url)

    page.wait_for_url("**/console/account/two-factor/?next=/admin/")
    assert page.get_by_role("img", name="QR code for your authenticator app").is_visible()
    no_violations(page, "two-factor-setup")
    secret = page.locator("code.secret").inner_text().replace(" ", "")
    code = TOTP(b32decode(secret)).token()
    page.fill("#id_code", f"{code:06d}")
    page.get_by_role("button", name="Confirm").click()

    page.get_by_text("Your authenticator app is set up.").wait_for()
    no_violations(page, "two-factor-recovery-codes")
    codes = page.locator("ul.codes code").all_inner_texts()
    assert len(codes) == 10
    page.get_by_role("link", name="Continue").click()
    page.wait_for_url("**/admin/")

    page.goto(f"{required.url}/console/account/two-factor/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/login/")
    sign_in(page, required.url)
    page.wait_for_url("**/console/login/verify/?next=/admin/")
    no_violations(page, "two-factor-code")
    page.fill("#id_code", codes[0])
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/admin/")
    assert tab.console_errors == []
