"""The effectiveness report's set-based statements (``db.effectiveness``) against a plain
computation: on a generated pair of campaigns with random outcomes and responses, the
report's responses, daily trend, routes, unsubscribes and notice period equal what
Python counts from the rows themselves; on a generated campaign with every delivery
status, reminders, a second version and in-app notices, the reach the report sums from
one read of the deliveries equals ``campaigns.selectors``' own definitions; with the
feed synced and consumers reporting, the objection times read in one statement equal
what Python finds entry by entry."""

import random
import statistics
from collections import defaultdict
from datetime import timedelta

import pytest

from accounts.models import Action, ConsentEvent, Source, SuppressionChange, SuppressionState
from accounts.selectors import suppression_feed_head
from accounts.services.consent import consent_record
from accounts.services.suppression_feed import suppression_feed_sync
from api.models import ConsumerPositionReport, Scope
from api.services.clients import api_client_create
from api.services.consumers import consumer_position_report
from campaigns.models import CampaignState, Delivery
from campaigns.selectors import campaign_not_reached_counts, campaign_reach
from campaigns.services.fanout import campaign_fan_out
from db import effectiveness as db_effectiveness
from evidence.reach import campaign_reading, notice_days_histogram
from evidence.reports import ROUTES, TREND_ACTIONS, effectiveness_report
from tests.effectiveness_data import at, travel
from tests.factories import MemberFactory, campaign, notice_version, staff_user

pytestmark = pytest.mark.django_db

SOURCES = [*ROUTES, Source.ADMIN]
ACTIONS = [Action.ACKNOWLEDGE, Action.OBJECT, Action.WITHDRAW_OBJECTION, Action.UNSUBSCRIBE]


def generated(purpose, rng: random.Random, feed=None):
    """Two campaigns of one version fanned out to 30 members in two jurisdictions, sent
    on random days (some not sent), random responses over three weeks (some before the
    first fan-out; ``feed`` is called with each one's time before it), a member who
    joined after both (not targeted) and a member shown the notice only in the app."""
    version = notice_version(effective_date=at(2, 20).date())
    with travel(at(12, 1, year=2026)):
        members = [
            MemberFactory(external_id=f"m{n}", country=rng.choice(["US", "GB"])) for n in range(30)
        ]
    shown_only = members[0]
    type(shown_only).objects.filter(pk=shown_only.pk).update(email_status="bounced")
    type(version).objects.filter(pk=version.pk).update(frozen_at=at(12, 31, year=2026))
    campaigns = []
    for n, moment in enumerate((at(1, 1), at(1, 8))):
        c = campaign(version=version, state=CampaignState.SENDING, name=f"Wave {n}")
        with travel(moment):
            campaign_fan_out(campaign=c)
        campaigns.append(c)
    for delivery in Delivery.objects.filter(wave=0):
        if rng.random() < 0.8:
            sent = delivery.campaign.fanned_out_at + timedelta(hours=rng.randrange(0, 240))
            Delivery.objects.filter(pk=delivery.pk).update(sent_at=sent, status="delivered")
    with travel(at(1, 9)):
        late = MemberFactory(external_id="late", country="US")
    with travel(at(1, 2)):
        consent_record(member=shown_only, action=Action.SERVE, source=Source.IN_APP,
                       notice_version_id=version.pk)  # fmt: skip
    moments = sorted(at(12, 28, year=2026) + timedelta(hours=rng.randrange(0, 24 * 21))
                     for _ in range(120))  # fmt: skip
    for moment in moments:
        if feed is not None:
            feed(moment)
        member = rng.choice([*members, late])
        action = rng.choice(ACTIONS)
        fields = (
            {"purpose": purpose} if action in (Action.OBJECT, Action.WITHDRAW_OBJECTION) else {}
        )
        if action == Action.ACKNOWLEDGE:
            fields["notice_version_id"] = version.pk
        with travel(moment):
            consent_record(member=member, action=action, source=rng.choice(SOURCES), **fields)
    return campaigns, version


def plain(purpose, campaigns, version, jurisdiction, since, until):
    """The figures counted in Python from every row."""
    sent = Delivery.objects.filter(campaign__in=campaigns, wave=0, sent_at__isnull=False)
    targeted = set(
        Delivery.objects.filter(campaign__in=campaigns, wave=0).values_list("member_id", flat=True)
    ) | set(
        ConsentEvent.objects.filter(
            source=Source.IN_APP, action__in=[Action.SERVE, Action.ACKNOWLEDGE],
            notice_version_id=version.pk,
        ).values_list("member_id", flat=True)
    )  # fmt: skip
    events = [
        e for e in ConsentEvent.objects.select_related("member")
        if e.member.jurisdiction == jurisdiction and e.member_id in targeted
        and since <= e.created_at < until
        and ((e.action == Action.ACKNOWLEDGE and e.notice_version_id == version.pk)
             or (e.action in (Action.OBJECT, Action.WITHDRAW_OBJECTION)
                 and e.purpose_id == purpose.pk)
             or e.action == Action.UNSUBSCRIBE)
    ]  # fmt: skip
    responses = {
        name: len({e.member_id for e in events if e.action == action})
        for name, action in TREND_ACTIONS.items()
    }
    trend: dict = defaultdict(lambda: dict.fromkeys(TREND_ACTIONS, 0))
    names = {action: name for name, action in TREND_ACTIONS.items()}
    for (day, action), who in _group(events, lambda e: (e.created_at.date(), e.action)).items():
        trend[day][names[action]] = len({e.member_id for e in who})

    def routes(action):
        return {
            source: (len(who), len({e.member_id for e in who}))
            for source, who in _group(
                [e for e in events if e.action == action], lambda e: e.source
            ).items()
        }

    firsts: dict[int, Delivery] = {}
    for d in sent.select_related("member").order_by("sent_at", "pk"):
        if d.member.jurisdiction == jurisdiction:
            firsts.setdefault(d.member_id, d)
    days = [(version.effective_date - d.sent_at.date()).days for d in firsts.values()]
    return responses, dict(trend), routes(Action.OBJECT), routes(Action.UNSUBSCRIBE), days


def _group(rows, key):
    groups = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return groups


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("jurisdiction", ["US", "UK"])
def test_the_report_equals_the_plain_computation(purpose, seed, jurisdiction):
    campaigns, version = generated(purpose, random.Random(seed))
    for narrowed in ([c.pk for c in campaigns], [campaigns[1].pk]):
        report = effectiveness_report(
            purpose=purpose, jurisdiction=jurisdiction, campaigns=narrowed, now=at(1, 20)
        )
        scoped = [c for c in campaigns if c.pk in narrowed]
        responses, trend, routes, unsubscribes, days = plain(
            purpose, scoped, version, jurisdiction, report.since, report.until
        )
        assert report.responses == responses
        assert {d.day: d.counts for d in report.trend} == trend
        assert [d.day for d in report.trend] == sorted(trend)
        assert {
            r.source: (r.objections, r.members) for r in report.routes if r.objections
        } == routes
        assert {r.source: (r.objections, r.members) for r in report.unsubscribes} == unsubscribes
        found = report.notice_days
        assert (found.members, found.minimum) == (len(days), min(days, default=None))
        if days:
            assert found.median == pytest.approx(statistics.median(days))
            p90 = (
                statistics.quantiles(days, n=10, method="inclusive")[-1]
                if len(days) > 1
                else days[0]
            )
            assert found.p90 == pytest.approx(p90)


STATUSES = ["pending", "sent", "delivered", "opened", "bounced", "complained", "unknown",
            "failed", "rejected", "skipped", "expired", "deferred"]  # fmt: skip


def generated_outcomes(rng: random.Random, state: str):
    """A campaign fanned out to 40 members in two jurisdictions (some unreachable: a
    bounced or complained address, an unsubscribe), its notice deliveries in random
    statuses with their times, some carrying a second version (a wording test), sent
    reminders to some, and members shown the notice in the app (with and without a
    delivery)."""
    version, other = notice_version(effective_date=at(2, 20).date()), notice_version()
    with travel(at(12, 1, year=2026)):
        members = [
            MemberFactory(external_id=f"m{n}", country=rng.choice(["US", "GB"])) for n in range(40)
        ]
    for member in rng.sample(members, 8):
        change = rng.choice([{"email_status": "bounced"}, {"email_status": "complained"},
                             {"unsubscribed_at": at(12, 2, year=2026)}])  # fmt: skip
        type(member).objects.filter(pk=member.pk).update(**change)
    c = campaign(version=version, state=CampaignState.SENDING)
    with travel(at(1, 1)):
        campaign_fan_out(campaign=c)
    type(c).objects.filter(pk=c.pk).update(state=state)
    c.refresh_from_db()
    for delivery in Delivery.objects.filter(campaign=c):
        status = rng.choice(STATUSES)
        sent = None if status in ("pending", "skipped", "expired") else (
            at(1, 1) + timedelta(hours=rng.randrange(0, 240))
        )  # fmt: skip
        Delivery.objects.filter(pk=delivery.pk).update(
            status=status,
            sent_at=sent,
            delivered_at=sent if status in ("delivered", "opened", "complained") else None,
            bounced_at=sent if status == "bounced" else None,
            complained_at=sent if status == "complained" else None,
            notice_version_id=other.pk if rng.random() < 0.2 else None,
        )
        if rng.random() < 0.3:
            reminder = sent if rng.random() < 0.7 else None
            Delivery.objects.create(
                campaign=c, member_id=delivery.member_id, wave=1, status="sent", sent_at=reminder
            )
    for member in rng.sample(members, 10):
        with travel(at(1, 3)):
            consent_record(member=member, action=rng.choice([Action.SERVE, Action.ACKNOWLEDGE]),
                           source=Source.IN_APP, notice_version_id=version.pk)  # fmt: skip
    return c


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("state", [CampaignState.SENDING, CampaignState.COMPLETED])
def test_the_reports_reach_equals_the_campaigns_own(seed, state):
    """The report's one read of a campaign's deliveries (``evidence.reach``) gives the
    same reach, not-reached counts, reminders and notice days as
    ``campaign_reach``, ``campaign_not_reached_counts`` and the rows themselves."""
    c = generated_outcomes(random.Random(seed), state)
    for jurisdiction in ("US", "UK", "EU"):
        reading = campaign_reading(campaign=c, jurisdiction=jurisdiction)
        reach = campaign_reach(campaign=c, jurisdiction=jurisdiction, responses=False)
        row = reading.row
        assert (row.targeted, row.email_sent, row.email_delivered, row.complained) == (
            reach.targeted, reach.totals["sent"], reach.totals["delivered"],
            reach.totals["complained"],
        )  # fmt: skip
        assert (row.in_app_served, row.reached, row.reminders_sent) == (
            reach.in_app["served"], reach.reached, reach.reminders_sent
        )  # fmt: skip
        assert row.not_reached == campaign_not_reached_counts(campaign=c, jurisdiction=jurisdiction)
        histogram = notice_days_histogram(campaign=c, sent=reading.sent)
        assert histogram == db_effectiveness.notice_days_histogram(
            campaign_ids=[c.pk], jurisdiction=jurisdiction
        )
        days = _plain_days(c, jurisdiction)
        assert sorted(d for row in histogram for d in [row["days"]] * row["members"]) == days


def _plain_days(c, jurisdiction):
    versions = {v.pk: v.effective_date for v in type(c.notice_version).objects.all()}
    return sorted(
        (versions[d.notice_version_id or c.notice_version_id] - d.sent_at.date()).days
        for d in Delivery.objects.filter(
            campaign=c, wave=0, sent_at__isnull=False, member__jurisdiction=jurisdiction
        )
    )


def feed_and_consumers(purpose, rng: random.Random):
    """A function to call before each response: the feed synced for everyone every two
    days, each of two consumers reporting the head some hours after most syncs."""
    ines = staff_user("ines", "api.manage_apiclient")
    clients = [
        api_client_create(name=name, scopes=[Scope.SUPPRESSIONS_READ], by=ines)[0]
        for name in ("beta", "alpha")
    ]
    syncs = [at(12, 29, year=2026) + timedelta(days=2 * n) for n in range(12)]

    def feed(moment):
        while syncs and syncs[0] <= moment:
            synced = syncs.pop(0)
            with travel(synced):
                suppression_feed_sync(purpose=purpose)
                head = suppression_feed_head(purpose=purpose)
            for client in clients:
                if rng.random() < 0.7:
                    with travel(synced + timedelta(hours=rng.randrange(1, 30))):
                        consumer_position_report(client=client, purpose=purpose, cursor=head)

    return feed


def plain_feed(purpose, objections):
    """(objections, in feed, policy out, feed seconds, {client: ack seconds or None})."""
    entries = list(
        SuppressionChange.objects.filter(purpose=purpose, reason="objected").order_by("pk")
    )
    excluded = set(
        SuppressionState.objects.filter(
            purpose=purpose, reason="jurisdiction-excluded"
        ).values_list("member_id", flat=True)
    )
    reports = list(ConsumerPositionReport.objects.select_related("client").order_by("cursor"))
    feed, policy_out, acks = [], 0, defaultdict(list)
    for o in objections:
        entry = next(
            (s for s in entries if s.member_id == o.member_id and s.recorded_at >= o.created_at),
            None,
        )
        if entry is None:
            policy_out += o.member_id in excluded
            continue
        feed.append((entry.recorded_at - o.created_at).total_seconds())
        for name in ("alpha", "beta"):
            first = next(
                (r for r in reports if r.client.name == name and r.cursor >= entry.pk), None
            )
            acks[name].append(
                None if first is None else (first.reported_at - o.created_at).total_seconds()
            )
    return len(objections), len(feed), policy_out, feed, acks


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("jurisdiction", ["US", "UK"])
def test_the_feed_and_consumer_times_equal_the_plain_computation(purpose, seed, jurisdiction):
    """The objections' feed and acknowledgement times, read in one statement, equal what
    Python finds entry by entry and report by report."""
    rng = random.Random(seed)
    campaigns, version = generated(purpose, rng, feed_and_consumers(purpose, rng))
    report = effectiveness_report(
        purpose=purpose, jurisdiction=jurisdiction, campaigns=[c.pk for c in campaigns],
        now=at(1, 20),
    )  # fmt: skip
    objections = [
        e for e in ConsentEvent.objects.filter(action=Action.OBJECT, purpose=purpose)
        .select_related("member")
        if e.member.jurisdiction == jurisdiction and report.since <= e.created_at < report.until
        and _targeted(e.member_id, campaigns, version)
    ]  # fmt: skip
    count, in_feed, policy_out, feed, acks = plain_feed(purpose, objections)
    found = report.feed
    assert (found.objections, found.in_feed, found.policy_out) == (count, in_feed, policy_out)
    assert found.not_in_feed == count - in_feed - policy_out
    assert found.median_seconds == (pytest.approx(statistics.median(feed)) if feed else None)
    assert [c.client for c in found.consumers] == ["alpha", "beta"]
    for consumer in found.consumers:
        done = [s for s in acks[consumer.client] if s is not None]
        assert (consumer.acknowledged, consumer.pending) == (len(done), len(feed) - len(done))
        assert consumer.median_seconds == (pytest.approx(statistics.median(done)) if done else None)


def _targeted(member_id, campaigns, version):
    return (
        Delivery.objects.filter(campaign__in=campaigns, wave=0, member_id=member_id).exists()
        or ConsentEvent.objects.filter(
            member_id=member_id, source=Source.IN_APP, notice_version_id=version.pk,
            action__in=[Action.SERVE, Action.ACKNOWLEDGE],
        ).exists()
    )  # fmt: skip
