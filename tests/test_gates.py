"""Processing gates: each condition flips met and unmet with its figure; opening needs
every condition, an Approver proposing and another confirming; closing is immediate;
opening carries objections made while excluded into the feed and the export as
``objected`` and puts everyone else in; every step is in the gate's history and the
staff audit trail."""

import io
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import (
    Action,
    CheckKind,
    JurisdictionPolicy,
    JurisdictionPolicyChange,
    LedgerCheck,
    PolicyMode,
    Source,
)
from accounts.selectors import (
    member_effective_state,
    suppression_changes_page,
    suppression_feed_head,
)
from accounts.services.consent import consent_record
from accounts.services.policies import PolicyHeldByGate, policy_set_mode
from accounts.services.suppression_export import suppressions_export
from accounts.services.suppression_feed import suppression_feed_catch_up
from api.models import Scope
from api.services.clients import api_client_create, api_client_revoke
from api.services.consumers import consumer_position_report
from audit.models import Action as AuditAction
from audit.models import StaffAction
from campaigns.models import Campaign, CampaignState, Delivery
from campaigns.services.fanout import campaign_fan_out
from gates.models import ConsumerConfirmation, Gate, GateEvent, GateState, GateStep
from gates.selectors import gate_evaluate, ledger_condition
from gates.services import (
    GateRefused,
    consumer_confirmation_record,
    gate_change,
    gate_close,
    gate_define,
    gate_open,
    gate_propose,
)
from gates.signing import confirmation_sign
from tests.factories import MemberFactory, staff_user
from tests.gates_helpers import PLANNED, UK_MEMBERS, told_place

pytestmark = pytest.mark.django_db


@pytest.fixture
def place(purpose):
    return told_place(purpose)


def conditions(gate, **kwargs) -> dict[str, tuple[bool, str]]:
    return {c.key: (c.met, c.figure) for c in gate_evaluate(gate=gate, **kwargs).conditions}


def confirm_feed(place, gate, who=None):
    """An Approver's signed word that the feed is applied up to its head."""
    head = suppression_feed_head(purpose=place.purpose)
    return consumer_confirmation_record(
        gate=gate, statement="applied in the training store", cursor=head, by=who or place.ben
    )


def policy(place) -> JurisdictionPolicy:
    return JurisdictionPolicy.objects.get(purpose=place.purpose, jurisdiction="UK")


# --- Defining ------------------------------------------------------------------------


def test_defining_a_gate_announces_its_planned_opening_to_members_there(place):
    gate = place.gate()

    assert (policy(place).planned_mode, policy(place).planned_from) == ("opt_out", PLANNED)
    state = member_effective_state(member=place.uk[0], purpose=place.purpose)
    assert (state.state, state.reason, state.planned_from) == (
        "out",
        "jurisdiction-excluded",
        PLANNED,
    )
    assert member_effective_state(member=place.us, purpose=place.purpose).planned_from is None
    assert gate.state == GateState.CLOSED
    assert list(GateEvent.objects.values_list("step", "username")) == [("defined", "ada")]
    assert StaffAction.objects.filter(action=AuditAction.GATE_DEFINE, by=place.ada).exists()


@pytest.mark.parametrize(
    ("terms", "why"),
    [
        ({"campaign_ids": []}, "at least one campaign"),
        ({"campaign_ids": [99999]}, "at least one campaign"),
        ({"opens_to": "excluded"}, "opens to one of"),
        ({"planned_opening": timezone.localdate() - timedelta(days=1)}, "in the past"),
        ({"window_days": -1}, "between 0 and 3650"),
    ],
)
def test_a_gate_with_bad_terms_is_refused_and_nothing_is_written(place, terms, why):
    with pytest.raises(GateRefused, match=why):
        place.gate(**terms)
    assert not GateEvent.objects.exists() and policy(place).planned_from is None


def test_only_an_excluded_place_can_be_gated_once(place):
    place.gate()
    with pytest.raises(GateRefused, match="has a gate already"):
        place.gate()
    with pytest.raises(GateRefused, match="not excluded"):
        gate_define(purpose=place.purpose, jurisdiction="US", terms=place.terms(), by=place.ada)


def test_an_approver_cannot_define_a_gate(place):
    with pytest.raises(PermissionDenied):
        gate_define(purpose=place.purpose, jurisdiction="UK", terms=place.terms(), by=place.ben)


# --- Each condition, met and unmet ---------------------------------------------------


def test_a_told_and_verified_place_meets_every_condition_but_the_consumers(place):
    found = conditions(place.gate())

    assert found["campaigns"] == (True, "1 of 1 completed")
    assert found["window"][0] and found["window"][1].startswith("window 30 of 30 days, ends ")
    assert found["reach"] == (True, "“Notice campaign”: reach 100.0% of 10 ≥ 90%")
    assert found["consumers"][0] is False
    assert "no consumer registered and no confirmation" in found["consumers"][1]
    assert found["ledger"][0] and "intact" in found["ledger"][1]


def test_the_campaigns_condition_waits_for_every_named_campaign_to_complete(place):
    gate = place.gate()
    Campaign.objects.filter(pk=place.campaign.pk).update(state=CampaignState.SENDING)
    assert conditions(gate)["campaigns"] == (
        False,
        "0 of 1 completed: “Notice campaign” is sending",
    )
    Campaign.objects.filter(pk=place.campaign.pk).update(state=CampaignState.COMPLETED)
    assert conditions(gate)["campaigns"][0] is True


def test_the_window_runs_from_the_last_delivery_there(place):
    gate = place.gate(window_days=45)
    met, figure = conditions(gate)["window"]
    assert not met and figure.startswith("window 40 of 45 days, ends ")
    assert conditions(gate, now=timezone.now() + timedelta(days=5, minutes=1))["window"][0]


def test_a_later_in_app_serving_there_restarts_the_window(place):
    gate = place.gate()
    assert conditions(gate)["window"][0]
    consent_record(
        member=place.uk[0],
        action=Action.SERVE,
        source=Source.IN_APP,
        notice_version_id=place.campaign.notice_version_id,
    )
    met, figure = conditions(gate)["window"]
    assert not met and figure.startswith("window 0 of 30 days")


def test_a_serving_elsewhere_does_not_restart_the_window(place):
    gate = place.gate()
    consent_record(
        member=place.us,
        action=Action.SERVE,
        source=Source.IN_APP,
        notice_version_id=place.campaign.notice_version_id,
    )
    assert conditions(gate)["window"][0]


def test_reach_below_the_share_set_is_unmet_and_counts_acknowledgements_and_in_app(place):
    gate = place.gate()
    undelivered = Delivery.objects.filter(campaign=place.campaign).order_by("pk")[:2]
    Delivery.objects.filter(pk__in=[d.pk for d in undelivered]).update(
        delivered_at=None, status="bounced"
    )
    assert conditions(gate)["reach"] == (False, "“Notice campaign”: reach 80.0% of 10 < 90%")

    first, second = list(Delivery.objects.filter(pk__in=[d.pk for d in undelivered]))
    consent_record(
        member=first.member,
        action=Action.ACKNOWLEDGE,
        source=Source.PREFERENCE_PAGE,
        notice_version_id=place.campaign.notice_version_id,
        delivery_id=first.pk,
    )
    assert conditions(gate)["reach"] == (True, "“Notice campaign”: reach 90.0% of 10 ≥ 90%")
    consent_record(
        member=second.member,
        action=Action.SERVE,
        source=Source.IN_APP,
        notice_version_id=place.campaign.notice_version_id,
    )
    assert conditions(gate)["reach"][1] == "“Notice campaign”: reach 100.0% of 10 ≥ 90%"


def test_reach_counts_only_the_gates_jurisdiction(place):
    """The US member is in no UK figure, even in a campaign that told both."""
    both = Campaign.objects.get(pk=place.campaign.pk)
    both.jurisdictions = []
    both.save(update_fields=["jurisdictions"])
    figure = conditions(place.gate())["reach"][1]
    assert figure == "“Notice campaign”: reach 100.0% of 10 ≥ 90%"


def test_a_signed_confirmation_stands_in_until_the_feed_moves_on(place):
    gate = place.gate()
    confirm_feed(place, gate)
    met, figure = conditions(gate)["consumers"]
    assert met and figure.startswith("no consumer registered; confirmed by ben on ")

    consent_record(
        member=place.uk[0], action=Action.OBJECT, source=Source.API, purpose=place.purpose
    )
    suppression_feed_catch_up()
    met, figure = conditions(gate)["consumers"]
    assert not met and figure.endswith("the feed has moved on since")


def test_a_confirmation_whose_signature_does_not_verify_does_not_count(place):
    gate = place.gate()
    head = suppression_feed_head(purpose=place.purpose)
    forged = ConsumerConfirmation(
        gate=gate, by=place.ben, username="ben", statement="all done", cursor=head
    )
    forged.signature = confirmation_sign(forged)
    forged.statement = "something else"  # what was signed is not what is stored
    forged.save()
    met, figure = conditions(gate)["consumers"]
    assert not met and figure.endswith("its signature does not verify")


def test_registered_consumers_must_each_reach_the_head(place):
    gate = place.gate()
    ines = staff_user("ines", "api.manage_apiclient")
    store, _key = api_client_create(name="store", scopes=[Scope.SUPPRESSIONS_READ], by=ines)
    api_client_create(name="members-sync", scopes=[Scope.MEMBERS_WRITE], by=ines)  # no feed
    head = suppression_feed_head(purpose=place.purpose)

    met, figure = conditions(gate)["consumers"]
    assert (
        not met
        and figure == f"0 of 1 consumers at the head ({head}); behind: store (never reported)"
    )
    consumer_position_report(client=store, purpose=place.purpose, cursor=head - 1)
    assert conditions(gate)["consumers"][1].endswith(f"behind: store at {head - 1}")
    consumer_position_report(client=store, purpose=place.purpose, cursor=head)
    assert conditions(gate)["consumers"] == (True, f"1 of 1 consumers at the head ({head})")

    late, _key = api_client_create(name="late", scopes=[Scope.SUPPRESSIONS_READ], by=ines)
    assert conditions(gate)["consumers"][0] is False
    api_client_revoke(client=late, by=ines)
    assert conditions(gate)["consumers"][0] is True


def test_a_confirmation_is_refused_while_consumers_are_registered(place):
    gate = place.gate()
    ines = staff_user("ines", "api.manage_apiclient")
    api_client_create(name="store", scopes=[Scope.SUPPRESSIONS_READ], by=ines)
    with pytest.raises(GateRefused, match=r"consumers are registered \(store\)"):
        confirm_feed(place, gate)
    assert not ConsumerConfirmation.objects.exists()


def test_a_confirmation_beyond_the_head_or_without_a_statement_is_refused(place):
    gate = place.gate()
    head = suppression_feed_head(purpose=place.purpose)
    with pytest.raises(GateRefused, match="not in the feed"):
        consumer_confirmation_record(gate=gate, statement="x", cursor=head + 1, by=place.ben)
    with pytest.raises(GateRefused, match="say what was applied"):
        consumer_confirmation_record(gate=gate, statement="  ", cursor=head, by=place.ben)
    with pytest.raises(PermissionDenied):
        consumer_confirmation_record(gate=gate, statement="x", cursor=head, by=place.ada)
    assert not ConsumerConfirmation.objects.exists()


def test_the_ledger_condition_reads_the_last_verification(place):
    gate = place.gate()
    assert conditions(gate)["ledger"][0]
    LedgerCheck.objects.create(
        kind=CheckKind.HEAD, events_checked=3, intact=False, first_broken_seq=2
    )
    met, figure = conditions(gate)["ledger"]
    assert not met and figure.endswith("BROKEN at event 2")
    LedgerCheck.objects.create(kind=CheckKind.FULL, events_checked=3, intact=True)
    assert conditions(gate)["ledger"][0]


def test_a_never_verified_ledger_is_unmet(purpose):
    found = ledger_condition()
    assert (found.met, found.figure) == (False, "the ledger has never been verified")


# --- Opening and closing -------------------------------------------------------------


def ready(place):
    gate = place.gate()
    confirm_feed(place, gate)
    return gate


def test_opening_is_refused_while_any_condition_is_unmet(place):
    gate = place.gate()  # no confirmation: the consumers condition is unmet
    with pytest.raises(GateRefused, match="suppression feed applied by every consumer"):
        gate_propose(gate=gate, by=place.ben)
    gate.refresh_from_db()
    assert gate.proposed_by is None
    assert not GateEvent.objects.filter(step=GateStep.PROPOSED).exists()
    assert not StaffAction.objects.filter(action=AuditAction.GATE_PROPOSE).exists()


def test_one_person_alone_cannot_open_a_gate(place):
    gate = ready(place)
    with pytest.raises(GateRefused, match="nobody has proposed"):
        gate_open(gate=gate, by=place.ben)
    gate_propose(gate=gate, by=place.ben)
    with pytest.raises(GateRefused, match="a second person must confirm"):
        gate_open(gate=gate, by=place.ben)
    gate.refresh_from_db()
    assert gate.state == GateState.CLOSED and policy(place).mode == PolicyMode.EXCLUDED


def test_a_definer_without_the_approvers_permission_cannot_propose(place):
    gate = ready(place)
    with pytest.raises(PermissionDenied):
        gate_propose(gate=gate, by=place.ada)


def test_a_condition_that_lapses_after_the_proposal_stops_the_confirmation(place):
    gate = ready(place)
    gate_propose(gate=gate, by=place.ben)
    Campaign.objects.filter(pk=place.campaign.pk).update(state=CampaignState.PAUSED)
    with pytest.raises(GateRefused, match="named campaigns completed"):
        gate_open(gate=gate, by=place.cy)
    assert policy(place).mode == PolicyMode.EXCLUDED


def feed_after(place, cursor: int) -> dict[str, tuple[str, str]]:
    """The feed's entries after ``cursor`` as pipelines page through them."""
    page = suppression_changes_page(purpose=place.purpose, after=cursor, limit=1000)
    assert not page.has_more
    return {external_id: (state, reason) for _c, external_id, state, reason, _at in page.entries}


def test_opening_carries_objections_made_while_excluded_into_the_feed_and_export(
    place, django_capture_on_commit_callbacks
):
    objector = place.uk[0]
    consent_record(member=objector, action=Action.OBJECT, source=Source.API, purpose=place.purpose)
    suppression_feed_catch_up()
    gate = ready(place)
    gate_propose(gate=gate, by=place.ben)
    before = suppression_feed_head(purpose=place.purpose)

    with django_capture_on_commit_callbacks(execute=True):
        gate_open(gate=gate, by=place.cy)

    gate.refresh_from_db()
    assert (gate.state, policy(place).mode, policy(place).planned_from) == ("open", "opt_out", None)
    feed = feed_after(place, before)
    assert feed[objector.external_id] == ("out", "objected")
    assert {feed[m.external_id] for m in place.uk[1:]} == {("in", "not-objected")}
    assert len(feed) == UK_MEMBERS  # nobody elsewhere changed
    out = io.BytesIO()
    assert suppressions_export(purpose=place.purpose, out=out) == 1
    rows = out.getvalue().decode().splitlines()
    assert rows[1].startswith(f"{objector.external_id},UK,objected,")
    opened = GateEvent.objects.get(step=GateStep.OPENED)
    assert (opened.username, opened.detail["proposed_by"]) == ("cy", "ben")
    assert all(c["met"] for c in opened.detail["conditions"])
    assert StaffAction.objects.filter(action=AuditAction.GATE_OPEN, by=place.cy).exists()
    assert StaffAction.objects.filter(action=AuditAction.POLICY_CHANGE, by=place.cy).exists()


def test_closing_is_immediate_and_puts_everyone_there_out_again(
    place, django_capture_on_commit_callbacks
):
    gate = ready(place)
    gate_propose(gate=gate, by=place.ben)
    with django_capture_on_commit_callbacks(execute=True):
        gate_open(gate=gate, by=place.cy)
    before = suppression_feed_head(purpose=place.purpose)

    with django_capture_on_commit_callbacks(execute=True):
        assert gate_close(gate=gate, by=place.ben, reason="regulator asked") == GateStep.CLOSED

    gate.refresh_from_db()
    assert (gate.state, policy(place).mode) == ("closed", "excluded")
    assert set(feed_after(place, before).values()) == {("out", "jurisdiction-excluded")}
    closed = GateEvent.objects.get(step=GateStep.CLOSED)
    assert (closed.username, closed.reason) == ("ben", "regulator asked")
    assert StaffAction.objects.filter(action=AuditAction.GATE_CLOSE, by=place.ben).exists()


def test_closing_a_proposed_gate_withdraws_the_proposal(place):
    gate = ready(place)
    gate_propose(gate=gate, by=place.ben)
    assert gate_close(gate=gate, by=place.cy) == GateStep.WITHDRAWN
    gate.refresh_from_db()
    assert gate.proposed_by is None
    with pytest.raises(GateRefused, match="no opening is proposed"):
        gate_close(gate=gate, by=place.cy)


def test_changing_the_terms_drops_a_proposal_and_announces_the_new_date(place):
    gate = ready(place)
    gate_propose(gate=gate, by=place.ben)
    later = PLANNED + timedelta(days=30)
    gate_change(gate=gate, terms=place.terms(planned_opening=later, window_days=60), by=place.ada)
    gate.refresh_from_db()
    assert gate.proposed_by is None and policy(place).planned_from == later
    changed = GateEvent.objects.get(step=GateStep.CHANGED)
    assert changed.detail["changes"]["window_days"] == [30, 60]
    assert StaffAction.objects.filter(action=AuditAction.GATE_CHANGE).exists()


def test_the_history_cannot_be_changed_or_deleted(place):
    gate = place.gate()
    event = GateEvent.objects.get()
    with pytest.raises(TypeError):
        event.delete()
    with pytest.raises(TypeError):
        GateEvent.objects.filter(gate=gate).update(reason="x")
    with pytest.raises(Exception, match="append-only"), connection.cursor() as cursor:
        cursor.execute("UPDATE gates_gateevent SET reason = 'x'")


def test_only_the_gate_takes_a_held_place_out_of_excluded(place):
    gate = ready(place)
    assert gate_evaluate(gate=gate).policy_agrees
    changes = JurisdictionPolicyChange.objects.count()
    with pytest.raises(PolicyHeldByGate, match="held by a processing gate"):
        policy_set_mode(policy=policy(place), mode="opt_out", by=None)
    assert (policy(place).mode, JurisdictionPolicyChange.objects.count()) == ("excluded", changes)
    gate_propose(gate=gate, by=place.ben)
    gate_open(gate=gate, by=place.cy)
    assert policy(place).mode == "opt_out"


def test_excluding_again_outside_the_gate_is_allowed_and_shows(place):
    gate = ready(place)
    gate_propose(gate=gate, by=place.ben)
    gate_open(gate=gate, by=place.cy)
    policy_set_mode(policy=policy(place), mode="excluded", by=None)
    gate.refresh_from_db()
    status = gate_evaluate(gate=gate)
    assert (status.gate.state, status.policy_mode, status.policy_agrees) == (
        "open",
        "excluded",
        False,
    )


def test_the_admin_refuses_opening_a_held_place_even_to_a_superuser(place, django_user_model):
    place.gate()
    priya = django_user_model.objects.create_superuser("priya", "priya@example.com", "pw-1")
    admin = Client()
    admin.force_login(priya)
    url = reverse("admin:accounts_jurisdictionpolicy_change", args=[policy(place).pk])
    form = {"mode": "opt_out", "changes-TOTAL_FORMS": "0", "changes-INITIAL_FORMS": "0"}
    response = admin.post(url, form, follow=True)
    assert "held by a processing gate" in response.content.decode()
    assert policy(place).mode == "excluded"
    assert not StaffAction.objects.filter(action=AuditAction.POLICY_CHANGE, by=priya).exists()


def test_evaluating_a_gate_costs_the_same_queries_for_any_number_of_members(
    place, django_assert_num_queries
):
    gate = place.gate()
    confirm_feed(place, gate)
    gate = Gate.objects.select_related("purpose").get(pk=gate.pk)
    with CaptureQueriesContext(connection) as few:
        gate_evaluate(gate=gate)
    more = [MemberFactory(country="GB") for _ in range(25)]
    Campaign.objects.filter(pk=place.campaign.pk).update(state=CampaignState.SENDING)
    campaign_fan_out(campaign=place.campaign)
    Campaign.objects.filter(pk=place.campaign.pk).update(state=CampaignState.COMPLETED)
    assert Delivery.objects.filter(member__in=more).count() == 25
    with django_assert_num_queries(len(few.captured_queries)):
        gate_evaluate(gate=gate)
