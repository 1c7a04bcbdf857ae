"""Beat's start job: each due campaign starts on its own; one that fails stops no other."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import tasks
from campaigns.models import Campaign, CampaignState
from campaigns.services import lifecycle
from campaigns.services.lifecycle import TransitionError
from tests.factories import MemberFactory, campaign, notice_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def due():
    """Two approved campaigns whose start time has passed."""
    MemberFactory(country="GB")
    version = notice_version()
    return [
        campaign(
            version=version,
            name=name,
            state=CampaignState.SCHEDULED,
            starts_at=timezone.now() - timedelta(minutes=1),
            approved_text_hashes=version.text_hashes(),
        )
        for name in ("first", "second")
    ]


def failing_first(monkeypatch, due, error: Exception) -> None:
    def start(*, campaign):
        if campaign.pk == due[0].pk:
            raise error
        return lifecycle.campaign_start(campaign=campaign)

    monkeypatch.setattr(tasks, "campaign_start", start)


def test_a_campaign_another_beat_started_is_skipped_and_the_rest_start(
    due, monkeypatch, django_capture_on_commit_callbacks
):
    failing_first(monkeypatch, due, TransitionError("cannot go from Sending to Sending"))
    with django_capture_on_commit_callbacks() as fan_outs:
        assert tasks.campaigns_start_due() == [due[1].pk]
    assert Campaign.objects.get(pk=due[1].pk).state == CampaignState.SENDING
    assert len(fan_outs) == 1


def test_an_unexpected_error_starting_one_campaign_still_starts_the_others(
    due, monkeypatch, django_capture_on_commit_callbacks
):
    failing_first(monkeypatch, due, RuntimeError("database hiccup"))
    with django_capture_on_commit_callbacks() as fan_outs, pytest.raises(RuntimeError):
        tasks.campaigns_start_due()  # fails loudly, after the others started
    assert Campaign.objects.get(pk=due[0].pk).state == CampaignState.SCHEDULED
    assert Campaign.objects.get(pk=due[1].pk).state == CampaignState.SENDING
    assert len(fan_outs) == 1


def test_starting_the_same_due_campaigns_twice_starts_each_once(
    due, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as fan_outs:
        assert sorted(tasks.campaigns_start_due()) == sorted(c.pk for c in due)
        assert tasks.campaigns_start_due() == []
    assert len(fan_outs) == 2
