"""The members' lines of an evidence pack, said two ways (db/evidence.py): PostgreSQL's
grouped statement gives exactly the lines of the plain one folded in Python."""

import pytest
from django.db import connection

from campaigns.models import Delivery
from db.evidence import campaign_member_lines_grouped, campaign_member_lines_plain
from evidence.selectors import pack_versions_sent
from tests.evidence_helpers import sent_campaign
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("the grouped statement is PostgreSQL's: needs DATABASE_URL=postgres://...")


def test_grouped_lines_are_the_plain_lines(postgresql):
    sent = sent_campaign()
    c = sent.campaign
    # A member with a reminder but no notice row, and one with no ESP id: edges of the fold.
    late = MemberFactory(external_id="late-reminder")
    Delivery.objects.create(campaign=c, member=late, wave=1, status="pending", locale="")
    versions = pack_versions_sent(campaign=c)
    arguments = {
        "campaign_id": c.pk,
        "campaign_version_id": c.notice_version_id,
        "version_ids": versions,
        "head_seq": 10**9,
        "chunk": 3,
    }
    plain = list(campaign_member_lines_plain(**arguments))
    assert len(plain) == len(sent.members) + 1
    assert list(campaign_member_lines_grouped(**arguments)) == plain
    cut = {**arguments, "head_seq": 2}  # events after the head do not count
    assert list(campaign_member_lines_grouped(**cut)) == list(campaign_member_lines_plain(**cut))
