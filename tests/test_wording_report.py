"""The wording test's report: figures per version against a campaign whose outcomes are
known, and the interval maths against published values."""

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Action, Source
from accounts.services.consent import consent_record
from accounts.services.policies import purpose_create
from audit.models import Action as AuditAction
from audit.models import StaffAction
from campaigns.models import CampaignState, CampaignVariant, Delivery
from campaigns.selectors import campaign_reach
from campaigns.services.fanout import campaign_fan_out
from campaigns.wording_report import (
    CSV_COLUMNS,
    newcombe_interval,
    report_csv_rows,
    wilson_interval,
    wording_test_report,
)
from tests.factories import MemberFactory, campaign, staff_user
from tests.wording import versions_of_one_notice

pytestmark = pytest.mark.django_db


# Newcombe (1998), Statistics in Medicine 17: 857-872 (Wilson, his method 3) and
# 873-890 (the difference, method 10), to four places.
@pytest.mark.parametrize(
    "x, n, low, high",
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
     (1, 29, 0.0061, 0.1718)],
)  # fmt: skip
def test_wilson_intervals_match_the_published_ones(x, n, low, high):
    got = wilson_interval(x, n)
    assert got is not None
    assert got == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


@pytest.mark.parametrize(
    "x1, n1, x2, n2, low, high",
    [(56, 70, 48, 80, 0.0524, 0.3339), (9, 10, 3, 10, 0.1705, 0.8090),
     (5, 56, 0, 29, -0.0381, 0.1926)],
)  # fmt: skip
def test_newcombe_intervals_match_the_published_ones(x1, n1, x2, n2, low, high):
    got = newcombe_interval(x1, n1, x2, n2)
    assert got is not None
    assert got == (pytest.approx(low, abs=5e-5), pytest.approx(high, abs=5e-5))


def test_no_trials_no_interval():
    assert wilson_interval(0, 0) is None
    assert newcombe_interval(1, 2, 0, 0) is None


# Per version: (delivered, acknowledged, objected, complained) among delivered members.
KNOWN = {0: (14, 7, 2, 1), 1: (12, 3, 7, 0)}


@pytest.fixture
def finished(purpose):
    """60 members split 50/50 (about 30 each by the hash, for any seed at least 15);
    outcomes set member by member to the KNOWN figures, with responses beside them that
    must not count."""
    versions = versions_of_one_notice(2)
    c = campaign(version=versions[0], state=CampaignState.SENDING, purpose=purpose)
    for version in versions:
        CampaignVariant.objects.create(campaign=c, notice_version=version, share=5000)
    MemberFactory.create_batch(60, country="US")
    campaign_fan_out(campaign=c)
    other_purpose = purpose_create(slug="ads", name="Ads", modes={"US": "opt_out"})
    now = timezone.now()
    for index, version in enumerate(versions):
        rows = list(
            Delivery.objects.filter(notice_version_id=version.pk)
            .select_related("member")
            .order_by("pk")
        )
        delivered, acknowledged, objected, complained = KNOWN[index]
        assert len(rows) >= 15
        for i, d in enumerate(rows):
            Delivery.objects.filter(pk=d.pk).update(
                status="delivered" if i < delivered else "bounced",
                sent_at=now,
                delivered_at=now if i < delivered else None,
                complained_at=now if i < complained else None,
            )

            def record(action, purpose_=None, version_id=version.pk, d=d):
                consent_record(
                    member=d.member,
                    action=action,
                    source=Source.PREFERENCE_PAGE,
                    purpose=purpose_,
                    notice_version_id=version_id,
                    delivery_id=d.pk,
                )

            if i < acknowledged:
                record(Action.ACKNOWLEDGE)
            if i < objected:
                record(Action.OBJECT, purpose)
        # Not counted: an acknowledgement by a member not delivered to, an objection to
        # another purpose than the campaign's, an acknowledgement of the other version.
        last = rows[-1]
        consent_record(
            member=last.member,
            action=Action.ACKNOWLEDGE,
            source=Source.IN_APP,
            notice_version_id=version.pk,
        )
        beyond = rows[delivered - 1]
        consent_record(
            member=beyond.member,
            action=Action.OBJECT,
            source=Source.PREFERENCE_PAGE,
            purpose=other_purpose,
            notice_version_id=version.pk,
        )
        consent_record(
            member=beyond.member,
            action=Action.ACKNOWLEDGE,
            source=Source.API,
            notice_version_id=versions[1 - index].pk,
        )
    return c, versions


def test_the_report_counts_each_version_as_generated(finished, django_assert_num_queries):
    c, versions = finished
    with django_assert_num_queries(3):  # shares, one grouped query, the versions
        rows = wording_test_report(campaign=c)
    assert [row.version for row in rows] == versions
    total = 0
    for index, row in enumerate(rows):
        delivered, acknowledged, objected, complained = KNOWN[index]
        targeted = Delivery.objects.filter(notice_version_id=versions[index].pk).count()
        total += targeted
        assert row.share == 5000
        assert row.counts == {
            "targeted": targeted,
            "sent": targeted,
            "delivered": delivered,
            "acknowledged": acknowledged,
            "objected": objected,
            "complained": complained,
        }
        assert row.rates["acknowledged"].value == acknowledged / delivered
        assert row.rates["acknowledged"].interval == wilson_interval(acknowledged, delivered)
    assert total == 60
    ack, objected = rows[1].rates["acknowledged"], rows[1].rates["objected"]
    assert ack.difference == pytest.approx(3 / 12 - 7 / 14)
    assert ack.difference_interval == newcombe_interval(3, 12, 7, 14)
    assert ack.reading == "no difference shown"  # (-0.53, 0.12) holds 0
    assert objected.difference_interval[0] > 0
    assert objected.reading == "higher than the first version"  # 7/12 against 2/14
    assert rows[0].rates["acknowledged"].reading == ""  # the first is the reference


def test_the_csv_has_a_row_per_version_and_outcome(finished):
    c, versions = finished
    header, body = CSV_COLUMNS, list(report_csv_rows(wording_test_report(campaign=c)))
    assert len(body) == 6 and len(header) == len(body[0])
    second_objected = dict(zip(header, body[4], strict=True))
    assert second_objected["version"] == f"v{versions[1].number}"
    assert second_objected["outcome"] == "objected"
    assert (second_objected["count"], second_objected["delivered"]) == (7, 12)
    assert second_objected["rate"] == "0.5833"
    assert second_objected["reading"] == "higher than the first version"


# --- In the console ---------------------------------------------------------------------


@pytest.fixture
def vera():
    """Vera may look at campaigns, nothing more."""
    return staff_user("vera", "campaigns.view_campaign")


def _client(user):
    client = Client()
    client.force_login(user)
    return client


def test_the_campaign_page_shows_the_wording_test(finished, vera):
    c, _versions = finished
    page = _client(vera).get(f"/console/campaigns/{c.pk}/").content.decode()
    assert "Wording test" in page
    objected = page[page.index('id="wording-objected"') :].split("</table>")[0]
    assert "7 of 12" in objected and "higher than the first version" in objected
    acknowledged = page[page.index('id="wording-acknowledged"') :].split("</table>")[0]
    assert "no difference shown" in acknowledged and "7 of 14" in acknowledged


def test_a_campaign_without_a_wording_test_has_no_such_section(vera):
    c = campaign()
    page = _client(vera).get(f"/console/campaigns/{c.pk}/").content.decode()
    assert "Wording test" not in page


def test_the_csv_download_is_audited(finished, vera):
    c, _versions = finished
    response = _client(vera).get(f"/console/campaigns/{c.pk}/wording-test.csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    lines = response.content.decode().splitlines()
    assert lines[0].split(",") == CSV_COLUMNS and len(lines) == 7
    entry = StaffAction.objects.get(action=AuditAction.DOWNLOAD)
    assert entry.by == vera and entry.target_id == str(c.pk)
    assert entry.detail["what"] == "wording test report"


def test_the_csv_needs_the_campaign_permission(finished):
    c, _versions = finished
    nobody = staff_user("nora")
    response = _client(nobody).get(f"/console/campaigns/{c.pk}/wording-test.csv")
    assert response.status_code == 403
    assert not StaffAction.objects.filter(action=AuditAction.DOWNLOAD).exists()


def test_in_app_showings_of_every_version_count_in_the_reach(finished):
    # Each version's last member, whose email bounced, acknowledged it in the app.
    c, _versions = finished
    reach = campaign_reach(campaign=c)
    assert reach.in_app["served"] == 2
    assert reach.reached == KNOWN[0][0] + KNOWN[1][0] + 2
