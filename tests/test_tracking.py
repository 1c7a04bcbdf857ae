"""ESP events move deliveries forward by precedence, once, in any order."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from anymail.signals import AnymailTrackingEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Action, ConsentEvent, EmailStatus, Member, Source
from campaigns.models import CampaignState, Delivery, DeliveryEvent, DeliveryStatus
from campaigns.selectors import campaign_reach, members_not_reached
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.tracking import events_process
from campaigns.webhooks import tracking_event_received
from tests.factories import MemberFactory, campaign

pytestmark = pytest.mark.django_db

SENT_AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def sent():
    """A campaign whose three deliveries went out at SENT_AT."""
    for country in ("GB", "DE", "US"):
        MemberFactory(country=country, locale="en")
    c = campaign(state=CampaignState.SENDING)
    campaign_fan_out(campaign=c)
    for delivery in Delivery.objects.filter(campaign=c):
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.SENT,
            sent_at=SENT_AT,
            esp_message_id=f"esp-{delivery.pk}",
            locale="en",
        )
    return c


def event(delivery, event_type, *, minutes=1, event_id=None, by_message_id=False, **extra):
    """An anymail tracking event for ``delivery``, as a webhook would normalise it."""
    return AnymailTrackingEvent(
        event_type=event_type,
        timestamp=SENT_AT + timedelta(minutes=minutes),
        event_id=event_id or f"{event_type}-{delivery.pk}-{minutes}",
        message_id=f"esp-{delivery.pk}",
        recipient=delivery.member.email,
        metadata={} if by_message_id else {"delivery_id": str(delivery.pk)},
        esp_event=extra.pop("raw", {"Type": event_type}),
        **extra,
    )


def receive(*events, esp="Postmark"):
    for e in events:
        tracking_event_received(sender=None, event=e, esp_name=esp)
    return events_process()


def state(delivery):
    delivery.refresh_from_db()
    return delivery.status


def test_events_move_a_delivery_forward_and_keep_milestones(sent):
    d = Delivery.objects.filter(campaign=sent).first()
    receive(event(d, "delivered", minutes=1), event(d, "opened", minutes=30))
    receive(event(d, "deferred", minutes=2))  # late and lower: ignored
    d.refresh_from_db()
    assert d.status == DeliveryStatus.OPENED
    assert d.delivered_at == SENT_AT + timedelta(minutes=1)
    assert d.opened_at == SENT_AT + timedelta(minutes=30)


def test_the_same_event_is_stored_and_counted_once(sent):
    d = Delivery.objects.filter(campaign=sent).first()
    receive(event(d, "delivered", event_id="abc"))
    receive(event(d, "delivered", event_id="abc"))
    assert DeliveryEvent.objects.count() == 1


def test_events_without_an_id_are_deduplicated_by_content(sent):
    d = Delivery.objects.filter(campaign=sent).first()
    e = event(d, "opened", minutes=40)
    e.event_id = None
    receive(e)
    receive(e)
    assert DeliveryEvent.objects.count() == 1


def test_events_are_matched_by_message_id_when_metadata_is_missing(sent):
    d = Delivery.objects.filter(campaign=sent).first()
    receive(event(d, "delivered", by_message_id=True))
    assert state(d) == DeliveryStatus.DELIVERED
    assert DeliveryEvent.objects.get().delivery == d


def test_an_event_for_mail_we_did_not_send_is_kept_as_an_orphan(sent):
    stranger = AnymailTrackingEvent(
        event_type="delivered",
        timestamp=SENT_AT,
        event_id="other-system-1",
        message_id="not-ours",
        recipient="someone@example.org",
        metadata={},
        esp_event={},
    )
    report = receive(stranger)
    orphan = DeliveryEvent.objects.get()
    assert (report.orphans, orphan.is_orphan, orphan.delivery) == (1, True, None)
    assert orphan.processed_at is not None


def test_hard_bounce_marks_the_address_and_stops_future_mail(sent):
    d = Delivery.objects.filter(campaign=sent).select_related("member").first()
    receive(event(d, "bounced", raw={"Type": "HardBounce"}, reject_reason="bounced"))
    d.member.refresh_from_db()
    assert (state(d), d.member.email_status) == (DeliveryStatus.BOUNCED, EmailStatus.BOUNCED)
    assert not ConsentEvent.objects.exists()  # a bounce is not a choice
    sent.refresh_from_db()
    assert sent.hard_bounce_count == 1


def test_soft_bounce_defers_and_has_no_consequence(sent):
    d = Delivery.objects.filter(campaign=sent).select_related("member").first()
    receive(event(d, "bounced", raw={"Type": "SoftBounce"}))
    d.refresh_from_db()
    d.member.refresh_from_db()
    assert (d.status, d.soft_bounces, d.bounced_at) == (DeliveryStatus.DEFERRED, 1, None)
    assert d.member.email_status == EmailStatus.OK


def test_complaint_marks_the_address_and_records_an_unsubscribe(sent):
    d = Delivery.objects.filter(campaign=sent).select_related("member").first()
    receive(event(d, "delivered"), event(d, "complained", minutes=60))
    d.member.refresh_from_db()
    assert (state(d), d.member.email_status) == (DeliveryStatus.COMPLAINED, EmailStatus.COMPLAINED)
    ledger = ConsentEvent.objects.get()
    assert (ledger.action, ledger.source, ledger.delivery_id, ledger.notice_version_id) == (
        Action.UNSUBSCRIBE,
        Source.ESP,
        d.pk,
        sent.notice_version_id,
    )


def test_a_complaint_whose_processor_died_after_the_batch_is_recorded_by_the_next_run(
    sent, monkeypatch
):
    """The batch commits the delivery and the address; the unsubscribe is recorded after,
    in its own ledger transaction. A process that dies in between leaves it due."""
    from campaigns.services import tracking

    d = Delivery.objects.filter(campaign=sent).select_related("member").first()

    def died(**kwargs):
        raise SystemExit("worker killed")

    monkeypatch.setattr(tracking, "consent_record", died)
    with pytest.raises(SystemExit):
        receive(event(d, "complained", minutes=60))
    d.member.refresh_from_db()
    assert (state(d), d.member.email_status) == (DeliveryStatus.COMPLAINED, EmailStatus.COMPLAINED)
    assert not ConsentEvent.objects.exists()
    assert DeliveryEvent.objects.get(event_type="complained").ledger_due_at is not None

    monkeypatch.undo()
    events_process()
    events_process()

    [unsubscribe] = ConsentEvent.objects.all()
    assert (unsubscribe.action, unsubscribe.delivery_id) == (Action.UNSUBSCRIBE, d.pk)
    assert DeliveryEvent.objects.get(event_type="complained").ledger_due_at is None
    d.member.refresh_from_db()
    assert d.member.unsubscribed_at == unsubscribe.created_at


def test_esp_unsubscribe_is_recorded_once(sent):
    d = Delivery.objects.filter(campaign=sent).select_related("member").first()
    receive(event(d, "unsubscribed", minutes=5), event(d, "unsubscribed", minutes=6))
    d.member.refresh_from_db()
    [unsubscribe] = ConsentEvent.objects.filter(action=Action.UNSUBSCRIBE)
    assert (d.member.email_status, d.member.unsubscribed_at) == ("ok", unsubscribe.created_at)


@pytest.mark.parametrize(
    ("minutes", "user_agent", "human"),
    [
        (0.05, "Mozilla/5.0 (iPhone)", False),  # 3 s after sending: a scanner
        (30, "Mozilla/5.0 (compatible; Proofpoint URL Defense)", False),
        (30, "Mozilla/5.0 (iPhone)", True),
    ],
)
def test_machine_clicks_prove_delivery_but_not_engagement(sent, minutes, user_agent, human):
    d = Delivery.objects.filter(campaign=sent).first()
    receive(event(d, "clicked", minutes=minutes, user_agent=user_agent, click_url="https://x"))
    d.refresh_from_db()
    assert DeliveryEvent.objects.get().is_machine is not human
    assert d.delivered_at is not None
    assert (d.clicked_at is not None, d.status == DeliveryStatus.CLICKED) == (human, human)


def test_an_event_settles_a_delivery_whose_outcome_was_unknown(sent):
    d = Delivery.objects.filter(campaign=sent).first()
    Delivery.objects.filter(pk=d.pk).update(status=DeliveryStatus.UNKNOWN)
    receive(event(d, "delivered"))
    assert state(d) == DeliveryStatus.DELIVERED


def test_a_send_the_sender_never_recorded_counts_as_sent_from_the_esps_first_event(sent):
    """A worker killed between the ESP's answer and its own write leaves the delivery
    without a send time; the ESP's events prove the send, and reach must count it."""
    d, recorded = Delivery.objects.filter(campaign=sent).order_by("pk")[:2]
    Delivery.objects.filter(pk=d.pk).update(status=DeliveryStatus.UNKNOWN, sent_at=None)
    receive(
        event(d, "opened", minutes=9),
        event(d, "delivered", minutes=3),
        event(recorded, "delivered", minutes=1),
    )
    d.refresh_from_db()
    assert (d.status, d.sent_at) == (DeliveryStatus.OPENED, SENT_AT + timedelta(minutes=3))
    recorded.refresh_from_db()
    assert recorded.sent_at == SENT_AT  # what the sender recorded is never replaced
    reach = campaign_reach(campaign=sent)
    assert (reach.totals["sent"], reach.totals["delivered"]) == (3, 2)


STREAM = [
    ("delivered", 1),
    ("deferred", 2),
    ("opened", 30),
    ("clicked", 31),
    ("opened", 45),
    ("complained", 90),
]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(range(len(STREAM))), replay=st.booleans())
def test_any_order_and_any_repetition_give_the_in_order_result(sent, order, replay):
    DeliveryEvent.objects.all().delete()
    Member.objects.update(email_status=EmailStatus.OK)
    d = Delivery.objects.filter(campaign=sent).select_related("member").first()
    fields = dict(
        status=DeliveryStatus.SENT,
        delivered_at=None,
        opened_at=None,
        clicked_at=None,
        complained_at=None,
        bounced_at=None,
        soft_bounces=0,
    )
    Delivery.objects.filter(pk=d.pk).update(**fields)
    events = [event(d, kind, minutes=m) for kind, m in STREAM]
    for index in order:
        receive(events[index])
    if replay:
        receive(*events)
    d.refresh_from_db()
    assert DeliveryEvent.objects.count() == len(STREAM)
    assert (d.status, d.delivered_at, d.opened_at, d.clicked_at, d.complained_at) == (
        DeliveryStatus.COMPLAINED,
        SENT_AT + timedelta(minutes=1),
        SENT_AT + timedelta(minutes=30),
        SENT_AT + timedelta(minutes=31),
        SENT_AT + timedelta(minutes=90),
    )


def test_reach_report_counts_people_and_outcomes(sent, purpose):
    from accounts.services.consent import consent_record

    first, second, third = (
        Delivery.objects.filter(campaign=sent).select_related("member").order_by("pk")
    )
    receive(
        event(first, "delivered"),
        event(first, "opened", minutes=30),
        event(second, "delivered"),
        event(second, "clicked", minutes=0.05, user_agent="Mozilla", click_url="https://x"),
        event(third, "bounced", raw={"Type": "HardBounce"}),
    )
    consent_record(
        member=first.member,
        action=Action.ACKNOWLEDGE,
        source=Source.PREFERENCE_PAGE,
        notice_version_id=sent.notice_version_id,
        delivery_id=first.pk,
    )
    reach = campaign_reach(campaign=sent)
    totals = reach.totals
    assert (totals["sent"], totals["delivered"], totals["opened"], totals["clicked"]) == (
        3,
        2,
        1,
        0,
    )
    assert (totals["bounced_hard"], totals["acknowledged"]) == (1, 1)
    assert reach.rate("delivered") == pytest.approx(2 / 3)
    assert sum(row["bounced_hard"] for row in reach.by_jurisdiction.values()) == 1
    assert [row[3] for row in members_not_reached(campaign=sent)] == ["bounced"]


def test_reach_report_is_a_fixed_number_of_queries(sent, django_assert_max_num_queries):
    with django_assert_max_num_queries(3):  # deliveries, reminders, in-app
        campaign_reach(campaign=sent)


def test_a_processor_working_from_stale_state_never_undoes_newer_progress(sent):
    """Two processors (or a processor and the sender) may touch one delivery at once:
    the write merges with the row as it is (highest status, earliest milestones)."""
    from campaigns.services.tracking import _fold, _save_deliveries

    d = Delivery.objects.filter(campaign=sent).order_by("pk").first()
    stale = Delivery.objects.get(pk=d.pk)  # read before the other processor's write
    clicked_at = SENT_AT + timedelta(minutes=30)
    Delivery.objects.filter(pk=d.pk).update(
        status=DeliveryStatus.CLICKED,
        delivered_at=SENT_AT + timedelta(minutes=5),
        opened_at=clicked_at,
        clicked_at=clicked_at,
    )
    delivered = DeliveryEvent(event_type="delivered", esp="Postmark", timestamp=SENT_AT)
    bounce = DeliveryEvent(
        event_type="bounced", esp="Postmark", timestamp=SENT_AT, raw={"Type": "SoftBounce"}
    )
    assert _fold(stale, [delivered, bounce])
    _save_deliveries([(stale, 1)])
    d.refresh_from_db()
    assert d.status == DeliveryStatus.CLICKED  # not moved back to "deferred"/"delivered"
    assert d.delivered_at == SENT_AT  # the earlier of the two
    assert (d.opened_at, d.clicked_at) == (clicked_at, clicked_at)  # kept
    assert d.soft_bounces == 1


def test_an_event_holding_nul_characters_is_stored_without_them(sent):
    """PostgreSQL text cannot hold NUL; an ESP's odd payload must still be kept."""
    d = Delivery.objects.filter(campaign=sent).first()
    receive(event(d, "bounced", description="bad\x00box", raw={"Type": "Hard\x00Bounce"}))
    stored = DeliveryEvent.objects.get()
    assert stored.description in {"badbox", "bad\x00box"}  # SQLite keeps it as sent
    assert stored.raw["Type"] in {"HardBounce", "Hard\x00Bounce"}
    assert state(d) == DeliveryStatus.BOUNCED


def test_an_event_whose_metadata_names_no_delivery_of_ours_is_matched_by_message_id(sent):
    d = Delivery.objects.filter(campaign=sent).first()
    e = event(d, "delivered")
    e.metadata = {"delivery_id": "999999999"}  # stale or another system's id
    report = receive(e)
    assert (report.orphans, state(d)) == (0, DeliveryStatus.DELIVERED)
    assert DeliveryEvent.objects.get().delivery == d


def test_a_run_stops_on_its_time_budget_and_says_events_are_left(sent):
    d = Delivery.objects.filter(campaign=sent).first()
    for minutes in (1, 2, 3):
        tracking_event_received(
            sender=None, event=event(d, "delivered", minutes=minutes), esp_name="Postmark"
        )
    first = events_process(batch_size=1, max_seconds=0)
    assert (first.events, first.more) == (1, True)
    rest = events_process()
    assert (rest.events, rest.more) == (2, False)
    assert not DeliveryEvent.objects.filter(processed_at=None).exists()


def test_the_processor_task_asks_for_the_next_run_when_events_are_left(
    monkeypatch, django_capture_on_commit_callbacks
):
    from campaigns import enqueue, tasks
    from campaigns.services.tracking import BatchReport

    published = []
    monkeypatch.setattr(enqueue, "task_publish", lambda name, **kw: published.append(name))
    for more in (False, True):
        monkeypatch.setattr(tasks, "events_process", lambda **kw: BatchReport(more=more))  # noqa: B023
        with django_capture_on_commit_callbacks(execute=True):
            tasks.delivery_events_process()
    assert published == [enqueue.EVENTS_PROCESS]  # only after the run that left events


def test_a_batch_is_a_fixed_number_of_queries_whatever_its_size(sent):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    deliveries = list(Delivery.objects.filter(campaign=sent))
    counts = []
    for size, event_type in ((1, "delivered"), (3, "clicked")):  # each moves every delivery
        for d in deliveries:
            for minutes in range(size):
                tracking_event_received(
                    sender=None,
                    event=event(d, event_type, minutes=10 * size + minutes),
                    esp_name="Postmark",
                )
        with CaptureQueriesContext(connection) as queries:
            assert events_process().events == size * len(deliveries)
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_an_event_whose_raw_payload_json_cannot_say_is_kept(sent):
    from decimal import Decimal

    d = Delivery.objects.filter(campaign=sent).first()
    receive(event(d, "delivered", raw={"Type": "Delivery", "score": Decimal("1.5")}))
    stored = DeliveryEvent.objects.get()
    assert "Decimal('1.5')" in json.dumps(stored.raw)  # its repr, whole or in place
    assert state(d) == DeliveryStatus.DELIVERED


@pytest.mark.parametrize(
    ("esp", "event_id", "raw", "key"),
    [
        (
            "Postmark",
            None,
            {"RecordType": "Open", "b": [1, 2], "a": {"z": 1, "y": None}},
            "735562c36d8f5c3257d90757f150bfcd16e87c1619f93b07bc18a6d1bbf60015",
        ),
        (
            "Mailgun",
            None,
            "form: event=opened&x=1&x=2",
            "649d668b4d36fdabe6ce25c66f39127245295e107f75704ee21b7a233c6f814e",
        ),
        (
            "Postmark",
            None,
            "decimal",
            "c330622529cdc1aee991253e228463ffe947960122d73c1eedf820f444ca1859",
        ),
        (
            "Postmark",
            "abc",
            {},
            "e09603f7e988c4fbecfca312d7a0a0cb39c3d69fe7db8521feef1a688a288f77",
        ),
    ],
)
def test_event_keys_never_change(esp, event_id, raw, key):
    """Keys as stored before: a retry after an upgrade must still be a duplicate."""
    from decimal import Decimal

    from django.http import QueryDict

    from campaigns.services.tracking import event_key

    if raw == "decimal":
        raw = {"score": Decimal("1.5")}
    elif isinstance(raw, str):
        raw = QueryDict(raw.removeprefix("form: "))
    e = AnymailTrackingEvent(
        event_type="opened" if event_id is None else "delivered",
        timestamp=SENT_AT if event_id is None else None,
        event_id=event_id,
        message_id="m-1" if event_id is None else None,
        recipient="pat@example.com",
        esp_event=raw,
    )
    assert event_key(e, esp) == key
