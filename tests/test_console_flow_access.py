"""Who may open the campaign flow, the approver's inbox and the notice diff: every page as
a stranger, staff without permissions, a viewer, an editor and an approver."""

import pytest
from django.test import Client

from campaigns.models import Campaign, CampaignState
from tests.factories import CAMPAIGN_APPROVER, CAMPAIGN_EDITOR, campaign, notice_version, staff_user

pytestmark = pytest.mark.django_db

VIEWER = ("campaigns.view_campaign", "campaigns.view_noticeversion")
PERSONAS = {
    "anonymous": None,
    "no permissions": (),
    "viewer": VIEWER,
    "editor": CAMPAIGN_EDITOR,
    "approver": CAMPAIGN_APPROVER,
}
# page -> the personas that may open it (everyone else: 403, strangers: sign-in)
PAGES = {
    "/console/campaigns/new/": {"editor"},
    "/console/campaigns/new/count/": {"viewer", "editor", "approver"},
    "/console/campaigns/{draft}/edit/": {"editor"},
    "/console/approvals/": {"approver"},
    "/console/approvals/{awaiting}/": {"approver"},
    "/console/approvals/{awaiting}/preview/en/": {"approver"},
    "/console/notices/": {"viewer", "editor", "approver"},
    "/console/notices/{notice}/diff/?a={version}&b={version}": {"viewer", "editor", "approver"},
}


def _client(persona: str) -> Client:
    client = Client()
    perms = PERSONAS[persona]
    if perms is not None:
        client.force_login(staff_user(persona.replace(" ", "_"), *perms))
    return client


@pytest.fixture
def ids():
    version = notice_version()
    return {
        "draft": campaign(version=version, state=CampaignState.DRAFT).pk,
        "awaiting": campaign(version=version, state=CampaignState.AWAITING_APPROVAL).pk,
        "notice": version.notice_id,
        "version": version.pk,
    }


@pytest.mark.parametrize("persona", list(PERSONAS))
@pytest.mark.parametrize("page", list(PAGES))
def test_each_page_opens_for_its_role_only(page, persona, ids):
    response = _client(persona).get(page.format(**ids))
    if persona == "anonymous":
        assert response.status_code == 302 and "/login/" in response["Location"]
    elif persona in PAGES[page]:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert "It needs the permission" in response.content.decode()


@pytest.mark.parametrize("persona", ["no permissions", "viewer", "approver"])
def test_saving_through_the_flow_without_the_permission_creates_nothing(persona, ids):
    response = _client(persona).post(
        "/console/campaigns/new/",
        {
            "go": "draft",
            "name": "Sneaky",
            "notice_version": ids["version"],
            "throttle_per_minute": 60,
        },
    )
    assert response.status_code == 403
    assert not Campaign.objects.filter(name="Sneaky").exists()


@pytest.mark.parametrize(
    ("persona", "entries"),
    [
        ("viewer", ["Notices"]),
        ("editor", ["New campaign", "Notices"]),
        ("approver", ["Approvals", "Notices"]),
    ],
)
def test_the_menu_offers_what_the_role_may_open(persona, entries, ids):
    body = _client(persona).get("/console/notices/").content.decode()
    menu = body[body.index('<nav aria-label="Console">') : body.index("</nav>")]
    shown = [label for label in ("New campaign", "Approvals", "Notices") if f">{label}<" in menu]
    assert shown == entries
