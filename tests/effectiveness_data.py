"""A campaign whose every outcome is known, for the effectiveness report's tests."""

from datetime import UTC, date, datetime

import time_machine

from accounts.models import Action, EmailStatus, Source
from accounts.selectors import suppression_feed_head
from accounts.services.consent import consent_record
from accounts.services.suppression_feed import suppression_feed_sync
from api.models import Scope
from api.services.clients import api_client_create
from api.services.consumers import consumer_position_report
from campaigns.models import CampaignState, Delivery
from campaigns.services.fanout import campaign_fan_out
from tests.factories import MemberFactory, campaign, notice_version, staff_user


def at(month: int, day: int, hour: int = 0, year: int = 2027) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def travel(moment: datetime):
    return time_machine.travel(moment, tick=False)


def deliver(member, *, sent: datetime, **outcome) -> Delivery:
    """The member's notice delivery, sent at ``sent`` with ``outcome`` (status, times)."""
    Delivery.objects.filter(member=member, wave=0).update(sent_at=sent, **outcome)
    return Delivery.objects.get(member=member, wave=0)


def known_campaign(purpose):
    """One campaign (any jurisdiction) of a version effective 2027-03-01, fanned out on
    2026-12-31 08:00 to US and UK members; the notice period of each member is known:

    US (opt-out): us1 sent 12-31 10:00, delivered, acknowledged and objected on the page
    (01-02); us2 sent 01-01, delivered, objected through the API (01-03 09:00); us3 sent
    01-15, bounced; us4 sent 01-01, delivered, unsubscribed by one-click (01-04); us5
    sent 01-20, delivered then complained; us6's address bounced before the fan-out (no
    email) but the app showed the notice, and us6 acknowledged and objected there
    (01-05); us7 had unsubscribed before the fan-out.
    UK (excluded): uk1 sent 01-01, delivered, objected by GPC (01-02); uk2 sent 01-01,
    delivered, nothing more.

    The feed: everyone synced on 12-30; us1 synced 01-02 12:00, us2 01-03 10:00, us6
    01-05 12:00. Consumers: "alpha" applied up to us1's entry on 01-02 13:00 and to the
    head on 01-06; "beta" up to us2's entry on 01-03 12:00."""
    version = notice_version(effective_date=date(2027, 3, 1), objection_deadline=date(2027, 2, 15))
    with travel(at(12, 1, year=2026)):
        people = {f"us{n}": MemberFactory(external_id=f"us{n}", country="US") for n in range(1, 8)}
        people |= {f"uk{n}": MemberFactory(external_id=f"uk{n}", country="GB") for n in (1, 2)}
    type(people["us6"]).objects.filter(pk=people["us6"].pk).update(email_status=EmailStatus.BOUNCED)
    with travel(at(12, 30, year=2026)):
        consent_record(member=people["us7"], action=Action.UNSUBSCRIBE, source=Source.API)
        suppression_feed_sync(purpose=purpose)
    type(version).objects.filter(pk=version.pk).update(frozen_at=at(12, 31, year=2026))
    c = campaign(version=version, state=CampaignState.SENDING, name="Winter notice")
    with travel(at(12, 31, 8, year=2026)):
        campaign_fan_out(campaign=c)
    ok = {"status": "delivered"}
    sends = {
        "us1": dict(sent=at(12, 31, 10, year=2026), delivered_at=at(1, 1), **ok),
        "us2": dict(sent=at(1, 1, 10), delivered_at=at(1, 1, 11), **ok),
        "us3": dict(sent=at(1, 15, 10), bounced_at=at(1, 15, 11), status="bounced"),
        "us4": dict(sent=at(1, 1, 10), delivered_at=at(1, 1, 11), **ok),
        "us5": dict(sent=at(1, 20, 10), delivered_at=at(1, 20, 11), complained_at=at(1, 21),
                    status="complained"),
        "uk1": dict(sent=at(1, 1, 10), delivered_at=at(1, 1, 11), **ok),
        "uk2": dict(sent=at(1, 1, 10), delivered_at=at(1, 1, 11), **ok),
    }  # fmt: skip
    d = {name: deliver(people[name], **outcome) for name, outcome in sends.items()}

    def record(name, moment, action, source, **fields):
        with travel(moment):
            consent_record(member=people[name], action=action, source=source, **fields)

    page = {"notice_version_id": version.pk}
    record("us1", at(1, 2, 9), Action.ACKNOWLEDGE, Source.PREFERENCE_PAGE,
           delivery_id=d["us1"].pk, **page)  # fmt: skip
    record("us1", at(1, 2, 10), Action.OBJECT, Source.PREFERENCE_PAGE, purpose=purpose,
           delivery_id=d["us1"].pk, **page)  # fmt: skip
    record("uk1", at(1, 2, 10), Action.OBJECT, Source.GPC, purpose=purpose)
    record("us2", at(1, 3, 9), Action.OBJECT, Source.API, purpose=purpose)
    record(
        "us4", at(1, 4, 9), Action.UNSUBSCRIBE, Source.ONE_CLICK, delivery_id=d["us4"].pk, **page
    )
    record("us6", at(1, 5, 6), Action.SERVE, Source.IN_APP, **page)
    record("us6", at(1, 5, 7), Action.ACKNOWLEDGE, Source.IN_APP, **page)
    record("us6", at(1, 5, 8), Action.OBJECT, Source.IN_APP, purpose=purpose)

    def sync(name, moment):
        with travel(moment):
            suppression_feed_sync(purpose=purpose, member_ids=[people[name].pk])
        return suppression_feed_head(purpose=purpose)

    entry = {"us1": sync("us1", at(1, 2, 12)), "uk1": sync("uk1", at(1, 2, 12))}
    entry["us2"] = sync("us2", at(1, 3, 10))
    entry["us6"] = sync("us6", at(1, 5, 12))
    ines = staff_user("ines", "api.manage_apiclient")
    alpha = api_client_create(name="alpha", scopes=[Scope.SUPPRESSIONS_READ], by=ines)[0]
    beta = api_client_create(name="beta", scopes=[Scope.SUPPRESSIONS_READ], by=ines)[0]
    for client, cursor, moment in (
        (alpha, entry["us1"], at(1, 2, 13)),
        (beta, entry["us2"], at(1, 3, 12)),
        (alpha, entry["us6"], at(1, 6)),
    ):
        with travel(moment):
            consumer_position_report(client=client, purpose=purpose, cursor=cursor)
    with travel(at(1, 25)):
        c.refresh_from_db()
    return c, people
