"""CSV files for people neutralise cells a spreadsheet would run as formulas."""

import csv
import io

import pytest

from config.spreadsheet import cell_neutralised, csv_lines_for_people

HOSTILE = ['=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3"]


@pytest.mark.parametrize("value", [*HOSTILE, "\tTAB", "\rCR"])
def test_a_formula_leading_cell_is_written_as_text(value):
    assert cell_neutralised(value) == "'" + value


@pytest.mark.parametrize("value", ["member-1", "pat@example.com", "", 42, None, "a=b"])
def test_other_cells_are_unchanged(value):
    assert cell_neutralised(value) == value


def test_the_csv_reads_back_with_every_hostile_cell_quoted_as_text():
    text = "".join(csv_lines_for_people(["external_id", "reason"], [[v, "x"] for v in HOSTILE]))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["external_id", "reason"]
    assert [row[0] for row in rows[1:]] == ["'" + v for v in HOSTILE]


@pytest.mark.django_db
def test_the_admin_not_reached_csv_neutralises_formula_ids(admin_client):
    from campaigns.models import CampaignState
    from campaigns.services.fanout import campaign_fan_out
    from tests.factories import MemberFactory, campaign

    MemberFactory(external_id='=HYPERLINK("http://evil.example","x")', email_status="bounced")
    MemberFactory(external_id="plain-member", email_status="complained")
    c = campaign(state=CampaignState.SENDING)
    campaign_fan_out(campaign=c)

    response = admin_client.get(f"/admin/campaigns/campaign/{c.pk}/not-reached.csv")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    ids = sorted(row[0] for row in rows[1:])
    assert ids == ["'" + '=HYPERLINK("http://evil.example","x")', "plain-member"]
