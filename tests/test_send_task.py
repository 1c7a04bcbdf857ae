"""The sender task retries a failing transport by the one backoff rule."""

import smtplib

import pytest
from celery.exceptions import Retry

from campaigns import tasks
from campaigns.services.sending import ChunkOutcome, backoff_seconds


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


def run_after(previous_retries: int) -> None:
    tasks.campaign_send.push_request(retries=previous_retries)
    try:
        with pytest.raises(Retry):
            tasks.campaign_send.run(1)
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
def test_a_failing_transport_is_retried_by_backoff_seconds(monkeypatch, retries, failure):
    def chunk(*, campaign_id):
        if isinstance(failure, Exception):
            raise failure
        return failure

    monkeypatch.setattr(tasks, "campaign_send_chunk", chunk)
    for previous in (0, 1, 4, 20):
        run_after(previous)
    assert retries == [backoff_seconds(n) for n in (1, 2, 5, 21)]
    assert retries[-1] == 1800.0
