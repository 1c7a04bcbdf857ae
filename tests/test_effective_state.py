"""Effective state = excluded by policy, else the explicit choice, else the policy default."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.jurisdictions import Jurisdiction
from accounts.models import Action, Choice, JurisdictionPolicy, Member, PolicyMode, Source
from accounts.selectors import (
    Reason,
    member_effective_state,
    members_with_effective_state,
)
from accounts.services.consent import consent_record
from accounts.services.policies import policy_set_mode
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

COUNTRY_IN = {
    Jurisdiction.UK: "GB",
    Jurisdiction.EU: "DE",
    Jurisdiction.EEA: "NO",
    Jurisdiction.CH: "CH",
    Jurisdiction.US: "US",
    Jurisdiction.OTHER: "BR",
}
# What the member last did, and the explicit choice that leaves behind.
HISTORY = {
    "nothing": [],
    "objected": [Action.OBJECT],
    "opted-in": [Action.OPT_IN],
    "objected-then-withdrew": [Action.OBJECT, Action.WITHDRAW_OBJECTION],
}


def set_mode(purpose, jurisdiction, mode):
    policy = JurisdictionPolicy.objects.get(purpose=purpose, jurisdiction=jurisdiction)
    policy_set_mode(policy=policy, mode=mode, by=None)


def member_with(purpose, jurisdiction, history):
    member = MemberFactory(country=COUNTRY_IN[jurisdiction])
    for action in HISTORY[history]:
        consent_record(member=member, action=action, source=Source.API, purpose=purpose)
    return member


@pytest.mark.parametrize(
    ("mode", "history", "state", "reason"),
    [
        (PolicyMode.EXCLUDED, "nothing", "out", Reason.JURISDICTION_EXCLUDED),
        (PolicyMode.EXCLUDED, "opted-in", "out", Reason.JURISDICTION_EXCLUDED),
        (PolicyMode.EXCLUDED, "objected", "out", Reason.JURISDICTION_EXCLUDED),
        (PolicyMode.OPT_OUT, "nothing", "in", Reason.NOT_OBJECTED),
        (PolicyMode.OPT_OUT, "objected", "out", Reason.OBJECTED),
        (PolicyMode.OPT_OUT, "opted-in", "in", Reason.OPTED_IN),
        (PolicyMode.OPT_OUT, "objected-then-withdrew", "in", Reason.NOT_OBJECTED),
        (PolicyMode.OPT_IN, "nothing", "out", Reason.NOT_OPTED_IN),
        (PolicyMode.OPT_IN, "opted-in", "in", Reason.OPTED_IN),
        (PolicyMode.OPT_IN, "objected", "out", Reason.OBJECTED),
        (PolicyMode.OPT_IN, "objected-then-withdrew", "out", Reason.NOT_OPTED_IN),
    ],
)
def test_effective_state_for_each_mode_and_choice(purpose, mode, history, state, reason):
    set_mode(purpose, Jurisdiction.US, mode)
    member = member_with(purpose, Jurisdiction.US, history)

    single = member_effective_state(member=member, purpose=purpose)
    annotated = members_with_effective_state(purpose=purpose).get(pk=member.pk)

    assert (single.state, single.reason) == (state, reason)
    assert (annotated.effective_state, annotated.effective_reason) == (state, reason)
    assert annotated.effective_since == single.since


def test_seeded_policy_excludes_uk_and_eu_and_lets_others_object(purpose):
    states = {
        j: member_effective_state(member=member_with(purpose, j, "nothing"), purpose=purpose).state
        for j in Jurisdiction
    }
    assert states == {
        Jurisdiction.UK: "out",
        Jurisdiction.EU: "out",
        Jurisdiction.EEA: "out",
        Jurisdiction.CH: "out",
        Jurisdiction.US: "in",
        Jurisdiction.OTHER: "in",
    }


def test_an_objection_outlives_a_policy_change(purpose):
    """A UK member objects while UK is excluded; if the UK later becomes opt-out,
    the objection still holds."""
    member = member_with(purpose, Jurisdiction.UK, "objected")
    set_mode(purpose, Jurisdiction.UK, PolicyMode.OPT_OUT)
    state = member_effective_state(member=member, purpose=purpose)
    assert (state.state, state.reason) == ("out", Reason.OBJECTED)


def test_since_is_the_choice_time_or_when_the_policy_took_effect(purpose):
    objector = member_with(purpose, Jurisdiction.US, "objected")
    bystander = member_with(purpose, Jurisdiction.US, "nothing")
    set_mode(purpose, Jurisdiction.US, PolicyMode.OPT_IN)
    policy = JurisdictionPolicy.objects.get(purpose=purpose, jurisdiction=Jurisdiction.US)

    assert (
        member_effective_state(member=objector, purpose=purpose).since
        == objector.consent_events.get().created_at
    )
    assert member_effective_state(member=bystander, purpose=purpose).since == policy.mode_since


def test_annotation_makes_one_query_for_any_number_of_members(purpose, django_assert_num_queries):
    for jurisdiction in Jurisdiction:
        member_with(purpose, jurisdiction, "objected")
        member_with(purpose, jurisdiction, "nothing")
    with django_assert_num_queries(2):  # the policies, then the members
        rows = list(members_with_effective_state(purpose=purpose).values_list("effective_state"))
    assert len(rows) == 12


modes = st.sampled_from(list(PolicyMode))
population = st.lists(
    st.tuples(st.sampled_from(list(Jurisdiction)), st.sampled_from(list(HISTORY))),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(policy=st.fixed_dictionaries({j: modes for j in Jurisdiction}), people=population)
def test_annotation_agrees_with_the_single_member_function(purpose, policy, people):
    for jurisdiction, mode in policy.items():
        set_mode(purpose, jurisdiction, mode)
    # Examples share the test's transaction, so compare only this example's members.
    members = [member_with(purpose, jurisdiction, history) for jurisdiction, history in people]

    annotated = {
        m.pk: (m.effective_state, m.effective_reason, m.effective_since)
        for m in members_with_effective_state(
            purpose=purpose, members=Member.objects.filter(pk__in=[m.pk for m in members])
        )
    }
    for member in members:
        single = member_effective_state(member=member, purpose=purpose)
        assert annotated[member.pk] == (single.state, single.reason, single.since)
        if policy[member.jurisdiction] == PolicyMode.EXCLUDED:
            assert single.state == Choice.OUT
