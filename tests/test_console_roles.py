"""Each role (the real groups the migrations make, console.roles.ROLES) against every
console page and every workflow button, allowed and refused; a staff member with no role
is refused everything. A console URL missing from ``PAGES`` fails here, so a new page
cannot arrive without saying who may open it.

The services refuse the same people again (tests/test_staff_roles.py tries each role
against the services themselves)."""

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import URLPattern, reverse

from audit.models import Action as AuditAction
from audit.models import StaffAction
from campaigns.models import Campaign, CampaignState, Delivery, DeliveryStatus, NoticeVersion
from console import urls as console_urls
from console.roles import ROLES, roles_sync
from console.views.campaign_actions import ACTIONS
from evidence.models import EvidencePack, PackState
from gates.models import Gate
from tests.factories import MemberFactory, ai_training, campaign, notice_version, staff_user
from tests.gates_helpers import PLANNED

pytestmark = pytest.mark.django_db
S = CampaignState
ALL = frozenset(ROLES)
EDITOR, APPROVER, ADMINISTRATOR = (
    frozenset({"Editor"}),
    frozenset({"Approver"}),
    frozenset({"Administrator"}),
)

# URL name -> the roles that may open it (GET). Sign-in pages are open to anyone.
PAGES: dict[str, frozenset[str]] = {
    "dashboard": ALL,
    "campaigns": ALL,
    "campaign": ALL,
    "campaign_progress": ALL,
    "campaign_wording_download": ALL,
    "audience_count": ALL,
    "notices": ALL,
    "notice_diff": ALL,
    "campaign_new": EDITOR,
    "campaign_edit": EDITOR,
    "approvals": APPROVER,
    "approval": APPROVER,
    "approval_preview": APPROVER,
    "audit": ADMINISTRATOR,
    "audit_download": ADMINISTRATOR,
    "evidence": ALL,
    "evidence_progress": ALL,
    "evidence_download": APPROVER | ADMINISTRATOR,
    "gates": ALL,
    "gate": ALL,
    "gate_new": ADMINISTRATOR,
    "gate_edit": ADMINISTRATOR,
    "effectiveness": ALL,
    "effectiveness_print": ALL,
    "effectiveness_csv": ALL,
}
SIGN_IN = {"login", "login_verify", "logout", "two_factor"}
POST_ONLY = {"campaign_act", "evidence_request", "evidence_retry", "gate_act"}

# Workflow button -> (the state it is pressed in, the roles that may press it).
BUTTONS: dict[str, tuple[str, frozenset[str]]] = {
    "submit": (S.DRAFT, EDITOR),
    "approve": (S.AWAITING_APPROVAL, APPROVER),
    "send_back": (S.AWAITING_APPROVAL, APPROVER),
    "schedule": (S.APPROVED, APPROVER),
    "pause": (S.SENDING, APPROVER),
    "resume": (S.PAUSED, APPROVER),
    "cancel": (S.SENDING, APPROVER),
    "resend_unknown": (S.SENDING, APPROVER),
    "give_up_unknown": (S.SENDING, APPROVER),
}
NOBODY = "no role"
PERSONAS = [NOBODY, *ROLES]


@pytest.fixture
def people() -> dict[str, User]:
    """One staff member per role, and one with no role at all."""
    roles_sync()
    people = {NOBODY: staff_user("nobody")}
    for role in ROLES:
        user = staff_user(role.lower())
        user.groups.add(Group.objects.get(name=role))
        people[role] = user
    return people


@pytest.fixture
def author() -> User:
    """Whoever wrote the campaigns: never one of the people trying the buttons."""
    return staff_user("author")


@pytest.fixture
def addresses(author) -> dict[str, str]:
    """A real address for every console page."""
    version = notice_version()
    newer = NoticeVersion.objects.create(
        notice=version.notice,
        effective_date=version.effective_date,
        objection_deadline=version.objection_deadline,
    )
    awaiting = campaign(
        version=version, state=S.AWAITING_APPROVAL, created_by=author, last_edited_by=author
    )
    draft = campaign(version=version, state=S.DRAFT, created_by=author, last_edited_by=author)
    one = {"pk": awaiting.pk}
    # A ready pack (of no bytes: the matrix is about who may open the page).
    pack = EvidencePack.objects.create(campaign=awaiting, state=PackState.READY)
    gate = Gate.objects.create(
        purpose=ai_training(), jurisdiction="UK", opens_to="opt_out", planned_opening=PLANNED
    )
    gate.campaigns.set([awaiting])
    return {
        "dashboard": reverse("console:dashboard"),
        "campaigns": reverse("console:campaigns"),
        "campaign": reverse("console:campaign", kwargs=one),
        "campaign_progress": reverse("console:campaign_progress", kwargs=one),
        "campaign_wording_download": reverse("console:campaign_wording_download", kwargs=one),
        "audience_count": reverse("console:audience_count"),
        "notices": reverse("console:notices"),
        "notice_diff": reverse("console:notice_diff", kwargs={"notice": version.notice_id})
        + f"?a={version.pk}&b={newer.pk}&locale=en",
        "campaign_new": reverse("console:campaign_new"),
        "campaign_edit": reverse("console:campaign_edit", kwargs={"pk": draft.pk}),
        "approvals": reverse("console:approvals"),
        "approval": reverse("console:approval", kwargs=one),
        "approval_preview": reverse("console:approval_preview", kwargs={**one, "locale": "en"}),
        "audit": reverse("console:audit"),
        "audit_download": reverse("console:audit_download"),
        "evidence": reverse("console:evidence", kwargs=one),
        "evidence_progress": reverse("console:evidence_progress", kwargs=one),
        "evidence_download": reverse("console:evidence_download", args=[pack.pk]),
        "gates": reverse("console:gates"),
        "gate": reverse("console:gate", kwargs={"pk": gate.pk}),
        "gate_new": reverse("console:gate_new"),
        "gate_edit": reverse("console:gate_edit", kwargs={"pk": gate.pk}),
        **{
            name: reverse(f"console:{name}") + f"?purpose={ai_training().slug}&jurisdiction=US"
            for name in ("effectiveness", "effectiveness_print", "effectiveness_csv")
        },
    }


def test_every_console_page_says_who_may_open_it():
    names = {p.name for p in console_urls.urlpatterns if isinstance(p, URLPattern)}
    assert names == set(PAGES) | SIGN_IN | POST_ONLY
    assert set(BUTTONS) == set(ACTIONS)


@pytest.mark.parametrize("persona", PERSONAS)
def test_each_role_opens_exactly_its_pages(persona, people, addresses):
    client = Client()
    client.force_login(people[persona])
    opened = {}
    for name, path in addresses.items():
        status = client.get(path).status_code
        assert status in (200, 403), (name, status)
        opened[name] = status == 200
    assert opened == {name: persona in roles for name, roles in PAGES.items()}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("button", list(BUTTONS))
def test_each_role_presses_exactly_its_buttons(button, persona, people, author):
    state, roles = BUTTONS[button]
    pressed = campaign(state=state, created_by=author, last_edited_by=author, approved_by=author)
    Delivery.objects.create(campaign=pressed, member=MemberFactory(), status=DeliveryStatus.UNKNOWN)
    before = (pressed.state, _unknown(pressed))
    client = Client()
    client.force_login(people[persona])
    page = client.get(reverse("console:campaign", kwargs={"pk": pressed.pk})).content.decode()
    offered = f"/act/{button}/" in page
    response = client.post(
        reverse("console:campaign_act", kwargs={"pk": pressed.pk, "action": button}),
        {"reason": "role matrix", "starts_at": "2030-01-01T09:00"},
    )
    pressed.refresh_from_db()
    changed = (pressed.state, _unknown(pressed)) != before
    allowed = persona in roles
    if persona == NOBODY:  # not even the campaign's page opens
        assert response.status_code == 403 and not changed
        return
    assert response.status_code == 302
    assert (offered, changed) == (allowed, allowed)
    # Only a press that did something is in the staff audit trail.
    acts = StaffAction.objects.filter(by=people[persona]).exclude(action=AuditAction.LOGIN)
    assert acts.exists() == allowed


def _unknown(made: Campaign) -> int:
    return Delivery.objects.filter(campaign=made, status=DeliveryStatus.UNKNOWN).count()
