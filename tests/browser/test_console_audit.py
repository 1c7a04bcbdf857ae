"""The staff audit trail's page in a real browser: filters and rows on a laptop screen,
zero axe (WCAG 2.1 A/AA) violations, no script errors."""

import pytest
from django.contrib.auth.models import Group

from audit.models import Action, StaffAction
from console.roles import roles_sync
from tests.browser.pages import check_state, sign_in
from tests.browser.test_console_dashboard import LAPTOP, fits_the_screen
from tests.factories import campaign, staff_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-staff-passphrase"


def test_an_administrator_filters_the_audit_trail(site, open_tab):
    roles_sync()  # the groups the migration made (a transactional test's flush took them)
    ada = staff_user("ada", password=PASSWORD)
    ada.groups.add(Group.objects.get(name="Administrator"))
    made = campaign(name="Spring notice")
    StaffAction.objects.create(
        by=ada, username="ada", action=Action.PAUSE, target_type="campaigns.campaign",
        target_id=str(made.pk), target_label=str(made), detail={"reason": "ESP incident"},
    )  # fmt: skip
    tab = open_tab(language="en", viewport=LAPTOP)
    page = tab.page
    sign_in(page, site.url, username="ada", password=PASSWORD, next_path="/console/audit/")
    page.get_by_role("link", name="Spring notice").wait_for()
    page.get_by_label("Action").select_option("pause")
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("link", name="Spring notice").wait_for()
    assert fits_the_screen(page)
    check_state(page, state="console-audit-trail", language="en", viewport="laptop")
    assert tab.console_errors == []
