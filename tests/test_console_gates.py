"""The gates in the console: a gate's page shows each condition met or unmet with its
figure and the history; each role (the real groups) is offered, and may press, exactly
its buttons; defining and changing a gate through the form; refusals as messages."""

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from accounts.models import JurisdictionPolicy
from accounts.selectors import suppression_feed_head
from audit.models import Action as AuditAction
from audit.models import StaffAction
from console.roles import ROLES, roles_sync
from console.views.gates import ACTIONS
from gates.models import ConsumerConfirmation, Gate, GateEvent
from gates.services import consumer_confirmation_record, gate_open, gate_propose
from tests.factories import staff_user
from tests.gates_helpers import PLANNED, told_place

pytestmark = pytest.mark.django_db
APPROVER, ADMINISTRATOR = frozenset({"Approver"}), frozenset({"Administrator"})
NOBODY = "no role"
PERSONAS = [NOBODY, *ROLES]


@pytest.fixture
def place(purpose):
    return told_place(purpose)


@pytest.fixture
def people() -> dict[str, User]:
    roles_sync()
    people = {NOBODY: staff_user("nobody")}
    for role in ROLES:
        user = staff_user(role.lower())
        user.groups.add(Group.objects.get(name=role))
        people[role] = user
    return people


def ready(place) -> Gate:
    gate = place.gate()
    head = suppression_feed_head(purpose=place.purpose)
    consumer_confirmation_record(gate=gate, statement="applied", cursor=head, by=place.cy)
    return gate


def proposed(place) -> Gate:
    gate = ready(place)
    gate_propose(gate=gate, by=place.ben)
    return gate


def opened(place) -> Gate:
    gate = proposed(place)
    gate_open(gate=gate, by=place.cy)
    return gate


# Button -> (how the gate stands when it is pressed, the roles that may press it).
BUTTONS = {
    "propose": (ready, APPROVER),
    "confirm": (proposed, APPROVER),
    "withdraw": (proposed, APPROVER | ADMINISTRATOR),
    "close": (opened, APPROVER | ADMINISTRATOR),
    "confirm_consumers": (lambda place: place.gate(), APPROVER),
}


def test_every_button_is_in_the_matrix():
    assert set(BUTTONS) == set(ACTIONS)


def snapshot(gate: Gate) -> tuple:
    gate.refresh_from_db()
    return (gate.state, gate.proposed_by_id, ConsumerConfirmation.objects.count())


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("button", list(BUTTONS))
def test_each_role_is_offered_and_presses_exactly_its_gate_buttons(button, persona, people, place):
    arrange, roles = BUTTONS[button]
    gate = arrange(place)
    before = snapshot(gate)
    client = Client()
    client.force_login(people[persona])
    page = client.get(reverse("console:gate", args=[gate.pk]))
    offered = f"/act/{button}/" in page.content.decode()
    response = client.post(
        reverse("console:gate_act", args=[gate.pk, button]),
        {"reason": "role matrix", "statement": "applied", "cursor": "0"},
    )
    changed = snapshot(gate) != before
    allowed = persona in roles
    if persona == NOBODY:
        assert page.status_code == response.status_code == 403 and not changed
        return
    assert response.status_code == 302
    assert (offered, changed) == (allowed, allowed)
    acts = StaffAction.objects.filter(by=people[persona]).exclude(action=AuditAction.LOGIN)
    assert acts.exists() == allowed


def test_the_page_shows_each_condition_with_its_figure_and_the_history(place):
    gate = place.gate()
    client = Client()
    client.force_login(place.ben)
    html = client.get(reverse("console:gate", args=[gate.pk])).content.decode()
    assert '<tr id="condition-reach">' in html
    assert "“Notice campaign”: reach 100.0% of 10 ≥ 90%" in html
    assert "Not met</span></td><td>no consumer registered and no confirmation" in html
    assert "An opening can be proposed once every condition below is met." in html
    assert "/act/propose/" not in html  # nothing to propose while a condition is unmet
    assert "<td>Defined</td><td>ada</td>" in html


def test_the_proposer_is_not_offered_the_confirmation(place):
    gate = proposed(place)
    client = Client()
    client.force_login(place.ben)
    html = client.get(reverse("console:gate", args=[gate.pk])).content.decode()
    assert "/act/confirm/" not in html and "/act/withdraw/" in html
    response = client.post(reverse("console:gate_act", args=[gate.pk, "confirm"]), follow=True)
    assert (
        "Not done: you proposed opening it: a second person must confirm."
        in response.content.decode()
    )
    assert Gate.objects.get(pk=gate.pk).state == "closed"


def test_a_refused_press_says_why_and_changes_nothing(place):
    gate = place.gate()
    client = Client()
    client.force_login(place.ben)
    response = client.post(reverse("console:gate_act", args=[gate.pk, "propose"]), follow=True)
    assert "Not done: not every condition is met" in response.content.decode()
    assert not GateEvent.objects.filter(step="proposed").exists()


def test_buttons_need_post_and_a_csrf_token(place):
    gate = ready(place)
    client = Client(enforce_csrf_checks=True)
    client.force_login(place.ben)
    act = reverse("console:gate_act", args=[gate.pk, "propose"])
    assert client.get(act).status_code == 405
    assert client.post(act).status_code == 403
    assert Gate.objects.get(pk=gate.pk).proposed_by is None


def form_data(place, **changes) -> dict:
    return {
        "purpose": "ai-training",
        "jurisdiction": "UK",
        "opens_to": "opt_out",
        "planned_opening": PLANNED.isoformat(),
        "campaigns": [str(place.campaign.pk)],
        "window_days": "30",
        "reach_percent": "92.5",
        **changes,
    }


def test_an_administrator_defines_a_gate_through_the_form(place):
    client = Client()
    client.force_login(place.ada)
    response = client.post(reverse("console:gate_new"), form_data(place))
    gate = Gate.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/console/gates/{gate.pk}/"
    assert (gate.jurisdiction, str(gate.reach_percent), gate.window_days) == ("UK", "92.50", 30)
    policy = JurisdictionPolicy.objects.get(purpose=place.purpose, jurisdiction="UK")
    assert policy.planned_from == PLANNED


def test_a_form_the_service_refuses_shows_why_and_defines_nothing(place):
    client = Client()
    client.force_login(place.ada)
    response = client.post(reverse("console:gate_new"), form_data(place, jurisdiction="US"))
    assert response.status_code == 200
    assert "Not done: ai-training is opt_out in US, not excluded: nothing to gate." in (
        response.content.decode()
    )
    assert not Gate.objects.exists()


def test_changing_a_gate_through_the_form_keeps_its_place(place):
    gate = place.gate()
    client = Client()
    client.force_login(place.ada)
    changed = form_data(place, jurisdiction="EU", window_days="60")
    response = client.post(reverse("console:gate_edit", args=[gate.pk]), changed)
    assert response.status_code == 302
    gate.refresh_from_db()
    assert (gate.jurisdiction, gate.window_days) == ("UK", 60)
