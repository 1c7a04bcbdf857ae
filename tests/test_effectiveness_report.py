"""The effectiveness report's figures, checked against a campaign whose every outcome is
known: members in two jurisdictions, known sends, deliveries, bounces and complaints,
acknowledgements and objections by known routes at known times, feed entries synced
and consumers' reports at known times."""

from datetime import date

import pytest
from django.db import connection

from campaigns.models import CampaignState
from evidence.reports import distribution, effectiveness_report, report_campaigns
from tests.effectiveness_data import at, known_campaign
from tests.factories import campaign

pytestmark = pytest.mark.django_db


@pytest.fixture
def known(purpose):
    return known_campaign(purpose)


def us_report(purpose, **narrowing):
    return effectiveness_report(purpose=purpose, jurisdiction="US", now=at(2, 1), **narrowing)


def test_reach_by_channel_and_why_not_reached(purpose, known):
    report = us_report(purpose)
    (row,) = report.campaigns
    assert row.campaign == known[0]
    assert (row.targeted, row.email_sent, row.email_delivered) == (7, 5, 4)
    assert (row.in_app_served, row.reached, row.complained) == (1, 5, 1)
    assert row.not_reached == {
        "bounced": 1,
        "complained": 1,
        "not sent: email unsubscribed": 1,
    }
    assert report.total.reached == 5 and report.total.not_reached_total == 3


def test_time_from_first_notice_to_the_processing_date(purpose, known):
    report = us_report(purpose)
    assert report.processing_dates == [date(2027, 3, 1)]
    # Days to 2027-03-01 from the sends: 60 (12-31), 59, 59 (01-01), 45 (01-15), 40 (01-20).
    days = report.notice_days
    assert (days.members, days.minimum, days.median, days.p90) == (5, 40, 59.0, pytest.approx(59.6))


def test_acknowledgement_and_objection_rates_with_their_daily_trend(purpose, known):
    report = us_report(purpose)
    assert report.responses == {"acknowledged": 2, "objected": 3, "withdrew": 0, "unsubscribed": 1}
    assert report.rates == {"acknowledged": pytest.approx(2 / 5), "objected": pytest.approx(3 / 5)}
    trend = {day.day: day.counts for day in report.trend}
    assert trend == {
        date(2027, 1, 2): {"acknowledged": 1, "objected": 1, "withdrew": 0, "unsubscribed": 0},
        date(2027, 1, 3): {"acknowledged": 0, "objected": 1, "withdrew": 0, "unsubscribed": 0},
        date(2027, 1, 4): {"acknowledged": 0, "objected": 0, "withdrew": 0, "unsubscribed": 1},
        date(2027, 1, 5): {"acknowledged": 1, "objected": 1, "withdrew": 0, "unsubscribed": 0},
    }


def test_objection_routes_and_unsubscribes(purpose, known):
    report = us_report(purpose)
    routes = {route.source: (route.objections, route.members) for route in report.routes}
    assert routes == {
        "preference-page": (1, 1),
        "one-click": (0, 0),
        "api": (1, 1),
        "in_app": (1, 1),
        "gpc": (0, 0),
    }
    assert [(u.source, u.members) for u in report.unsubscribes] == [("one-click", 1)]
    uk = effectiveness_report(purpose=purpose, jurisdiction="UK", now=at(2, 1))
    assert {r.source: r.objections for r in uk.routes}["gpc"] == 1


def test_time_from_objection_to_the_feed_and_to_each_consumer(purpose, known):
    feed = us_report(purpose).feed
    # Objection -> entry: us1 2 h, us2 1 h, us6 4 h.
    assert (feed.objections, feed.in_feed, feed.policy_out, feed.not_in_feed) == (3, 3, 0, 0)
    assert feed.median_seconds == pytest.approx(2 * 3600)
    alpha, beta = feed.consumers
    # alpha: us1 3 h (01-02 13:00); us2 63 h and us6 16 h (01-06 00:00).
    assert (alpha.client, alpha.acknowledged, alpha.pending) == ("alpha", 3, 0)
    assert alpha.median_seconds == pytest.approx(16 * 3600)
    # beta: us1 26 h, us2 3 h (01-03 12:00); us6 not yet.
    assert (beta.client, beta.acknowledged, beta.pending) == ("beta", 2, 1)
    assert beta.median_seconds == pytest.approx((26 + 3) / 2 * 3600)


def test_an_objection_where_the_policy_already_excludes_makes_no_feed_entry(purpose, known):
    feed = effectiveness_report(purpose=purpose, jurisdiction="UK", now=at(2, 1)).feed
    assert (feed.objections, feed.in_feed, feed.policy_out, feed.not_in_feed) == (1, 0, 1, 0)
    assert feed.median_seconds is None
    assert [(c.acknowledged, c.pending) for c in feed.consumers] == [(0, 0), (0, 0)]


def test_a_date_range_bounds_the_responses(purpose, known):
    report = us_report(purpose, since=date(2026, 12, 1), until=date(2027, 1, 3))
    assert report.responses == {"acknowledged": 1, "objected": 2, "withdrew": 0, "unsubscribed": 0}
    assert us_report(purpose, since=date(2027, 1, 1)).is_empty  # fanned out before it


def test_the_report_reads_a_fixed_number_of_queries(purpose, known, django_assert_num_queries):
    """Four per campaign (evidence.reach) and five for the report, in a transaction of
    its own (here a savepoint and its release) which on PostgreSQL first turns JIT off
    and raises work_mem."""
    transaction = 2 + 2 * (connection.vendor == "postgresql")
    with django_assert_num_queries(9 + transaction):
        us_report(purpose)


def test_scope_takes_fanned_out_campaigns_that_could_reach_the_jurisdiction(purpose, known):
    sent = known[0]
    other_place = campaign(name="EU only", jurisdictions=["EU"], state=CampaignState.COMPLETED)
    draft = campaign(name="Draft")
    other_use = campaign(name="Other use", state=CampaignState.COMPLETED)
    type(sent).objects.filter(pk__in=[other_place.pk, other_use.pk]).update(fanned_out_at=at(1, 10))
    another = type(purpose).objects.create(slug="ads", name="Ads")
    type(sent).objects.filter(pk=other_use.pk).update(purpose=another, purpose_state="in")
    assert report_campaigns(purpose=purpose, jurisdiction="US") == [sent]
    assert report_campaigns(purpose=purpose, jurisdiction="EU") == [sent, other_place]
    assert report_campaigns(purpose=purpose, jurisdiction="US", ids=[draft.pk]) == []


def test_an_empty_report_has_no_campaigns_and_no_figures(purpose):
    report = effectiveness_report(purpose=purpose, jurisdiction="US")
    assert report.is_empty and report.total.reached == 0
    assert report.rates == {"acknowledged": None, "objected": None}
    assert report.notice_days.median is None and report.feed.median_seconds is None


@pytest.mark.parametrize(
    "days",
    [[5], [1, 2], [3, 1, 2, 2, 10], [-4, 0, 7, 7, 7, 30, 31], list(range(100))],
)
def test_the_distribution_from_a_histogram_matches_statistics(days):
    import statistics

    histogram = [{"days": d, "members": days.count(d)} for d in set(days)]
    found = distribution(histogram)
    assert found.minimum == min(days) and found.members == len(days)
    assert found.median == pytest.approx(statistics.median(days))
    expected_p90 = (
        statistics.quantiles(days, n=10, method="inclusive")[-1] if len(days) > 1 else days[0]
    )
    assert found.p90 == pytest.approx(expected_p90)
