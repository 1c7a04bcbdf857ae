"""The sender task retries a failing transport by the one backoff rule."""

import smtplib
from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from campaigns import tasks
from campaigns.models import CampaignState, SenderSlot
from campaigns.services.senders import sender_chains_take
from campaigns.services.sending import ChunkOutcome, backoff_seconds
from tests.factories import campaign


@pytest.fixture
def retries(monkeypatch):
    """The countdowns the task asked to be retried after."""
    asked: list[float] = []

    def retry(*, countdown, max_retries, exc=None):
        assert max_retries is None  # a relay that is down is waited for, never given up on
        asked.append(countdown)
        return Retry()

    monkeypatch.setattr(tasks.campaign_send, "retry", retry)
    return asked


def run_after(previous_retries: int, chain: tuple[int, int, str]) -> None:
    tasks.campaign_send.push_request(retries=previous_retries)
    try:
        with pytest.raises(Retry):
            tasks.campaign_send.run(*chain)
    finally:
        tasks.campaign_send.pop_request()


@pytest.mark.parametrize(
    "failure",
    [
        smtplib.SMTPConnectError(421, b"try later"),
        ConnectionRefusedError(),
        ChunkOutcome(retry_in=30.0),
    ],
    ids=["smtp-connect", "refused", "transport-down"],
)
@pytest.mark.django_db
def test_a_failing_transport_is_retried_by_backoff_seconds(monkeypatch, retries, failure):
    def chunk(*, campaign_id):
        if isinstance(failure, Exception):
            raise failure
        return failure

    monkeypatch.setattr(tasks, "campaign_send_chunk", chunk)
    c = campaign(state=CampaignState.SENDING)
    [(slot, chain)] = sender_chains_take(campaign_id=c.pk, slots=[0])
    for previous in (0, 1, 4, 20):
        before = timezone.now()
        run_after(previous, (c.pk, slot, chain))
        # The slot knows the chain waits: the reconciler leaves it alone meanwhile.
        due_by = SenderSlot.objects.get(campaign=c, slot=slot).due_by
        assert due_by >= before + timedelta(seconds=retries[-1])
    assert retries == [backoff_seconds(n) for n in (1, 2, 5, 21)]
    assert retries[-1] == 1800.0
