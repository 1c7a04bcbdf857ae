"""Concurrent choices on PostgreSQL: one event per choice, one unbroken chain, no deadlock.

Real threads with their own connections, as gunicorn workers would be: the member and
ledger locks are what keeps a double tap to one event and the chain in order.
"""

import pytest
from django.db import connection

from accounts import ledger
from accounts.models import Action, ConsentEvent, EmailStatus, Member, Preference, Source
from accounts.services.consent import consent_record
from tests.concurrency import at_once
from tests.factories import MemberFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row and advisory locks"),
]


def chain_intact() -> bool:
    events = ConsentEvent.objects.order_by("seq").values(*ledger.HASHED_FIELDS, "prev_hash", "hash")
    return ledger.chain_verify(events).intact


def test_eight_simultaneous_taps_of_one_member_record_one_objection(purpose):
    member = MemberFactory(country="US")

    def tap():
        consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=purpose)

    assert at_once(*[tap] * 8) == []
    assert ConsentEvent.objects.filter(member=member).count() == 1
    assert Preference.objects.get(member=member).choice == "out"


def test_many_members_and_kinds_of_choice_at_once_keep_one_chain_without_deadlock(purpose):
    members = MemberFactory.create_batch(6, country="US")

    def choose(member, action):
        kwargs = (
            {"purpose": purpose} if action in (Action.OBJECT, Action.WITHDRAW_OBJECTION) else {}
        )
        return lambda: consent_record(member=member, action=action, source=Source.API, **kwargs)

    calls = [
        choose(member, action)
        for member in members
        for action in (Action.OBJECT, Action.UNSUBSCRIBE, Action.OBJECT, Action.UNSUBSCRIBE)
    ]
    assert at_once(*calls) == []  # a deadlock would be an OperationalError here
    assert ConsentEvent.objects.count() == 12  # one objection and one unsubscribe each
    assert chain_intact()
    assert list(ConsentEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(
        range(1, 13)
    )
    assert not Member.objects.filter(unsubscribed_at=None).exists()
    assert set(Member.objects.values_list("email_status", flat=True)) == {EmailStatus.OK}


def test_sixteen_members_objecting_at_once_append_sixteen_events_in_one_chain(purpose):
    members = MemberFactory.create_batch(16, country="US")

    def tap(member):
        return lambda: consent_record(
            member=member, action=Action.OBJECT, source=Source.PREFERENCE_PAGE, purpose=purpose
        )

    assert at_once(*[tap(m) for m in members]) == []
    assert list(ConsentEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(
        range(1, 17)
    )
    assert chain_intact()
    assert Preference.objects.filter(choice="out").count() == 16


class ChainMovesAfterTheRead:
    """Another choice is appended between a choice's unlocked read and its write (as a
    concurrent request would, made deterministic): the write must append nothing and
    the choice be recorded the held way, after the other one."""

    def __init__(self, monkeypatch, other):
        from accounts.services import consent

        self.read = consent._preference_and_head
        self.other, self.moved = other, False
        monkeypatch.setattr(consent, "_preference_and_head", self)

    def __call__(self, member_id, purpose_id):
        result = self.read(member_id, purpose_id)
        if not self.moved:
            self.moved = True
            self.other()
        return result


@pytest.fixture
def someone_else(purpose):
    member = MemberFactory(country="US")
    return lambda: consent_record(
        member=member, action=Action.OBJECT, source=Source.API, purpose=purpose
    )


def test_a_choice_whose_read_went_stale_is_appended_after_the_other(
    purpose, monkeypatch, someone_else
):
    sam = MemberFactory(country="US")
    ChainMovesAfterTheRead(monkeypatch, someone_else)
    recorded = consent_record(
        member=sam, action=Action.OBJECT, source=Source.PREFERENCE_PAGE, purpose=purpose
    )
    assert recorded.created and recorded.event.seq == 2
    events = list(ConsentEvent.objects.order_by("seq").values_list("member", "seq"))
    assert events[1] == (sam.pk, 2) and len(events) == 2
    assert chain_intact()
    assert Preference.objects.get(member=sam).last_event_id == recorded.event.pk


def test_a_double_tap_that_lost_the_race_records_nothing_more(purpose, monkeypatch):
    sam = MemberFactory(country="US")

    def tap():
        return consent_record(
            member=sam, action=Action.OBJECT, source=Source.PREFERENCE_PAGE, purpose=purpose
        )

    ChainMovesAfterTheRead(monkeypatch, tap)  # the first tap lands while the second reads
    second = tap()
    assert not second.created
    assert ConsentEvent.objects.filter(member=sam).count() == 1
    assert second.event == ConsentEvent.objects.get(member=sam)
    assert chain_intact()


def test_complaint_batches_and_the_same_members_objecting_at_once_neither_deadlock_nor_lose(
    purpose,
):
    """The ESP reports complaints by ten members while each of them objects, withdraws
    and objects again on the page: two processors mark the addresses in batches, the
    choices take member rows, then the ledger. No deadlock, one chain, every choice and
    every complaint's unsubscribe recorded."""
    from anymail.signals import AnymailTrackingEvent
    from django.utils import timezone

    from campaigns.models import CampaignState, Delivery
    from campaigns.services.fanout import campaign_fan_out
    from campaigns.services.tracking import event_row, events_process, events_store
    from tests.factories import campaign

    members = MemberFactory.create_batch(10, country="US")
    notice = campaign(state=CampaignState.SENDING)
    campaign_fan_out(campaign=notice)
    complaints = [
        event_row(
            AnymailTrackingEvent(
                event_type="complained",
                timestamp=timezone.now(),
                event_id=f"complaint-{delivery.pk}",
                metadata={"delivery_id": str(delivery.pk)},
                esp_event={"Type": "SpamComplaint"},
            ),
            "Postmark",
        )
        for delivery in Delivery.objects.filter(campaign=notice).order_by("-member_id")
    ]
    events_store(complaints)
    rounds = 4

    def choices(member):
        def run():
            for action in [Action.OBJECT, Action.WITHDRAW_OBJECTION] * rounds + [Action.OBJECT]:
                consent_record(
                    member=member, action=action, source=Source.PREFERENCE_PAGE, purpose=purpose
                )

        return run

    def processor():
        events_process(batch_size=5)

    assert at_once(processor, processor, *(choices(m) for m in members)) == []
    events_process()  # nothing is left: each processor applies what its batches marked

    assert chain_intact()
    actions = ConsentEvent.objects.values_list("action", flat=True)
    assert sorted(actions) == sorted(
        [Action.OBJECT] * 10 * (rounds + 1)
        + [Action.WITHDRAW_OBJECTION] * 10 * rounds
        + [Action.UNSUBSCRIBE] * 10
    )
    assert Preference.objects.filter(choice="out").count() == 10
    assert set(Member.objects.values_list("email_status", flat=True)) == {EmailStatus.COMPLAINED}
    assert not Member.objects.filter(unsubscribed_at=None).exists()
