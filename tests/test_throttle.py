"""The shared throttle: GCRA state in Redis or in the database, the same arithmetic."""

import time

import pytest
from django.conf import settings as django_settings

from campaigns.services.throttle import DatabaseThrottle, Pace, RedisThrottle, throttle_take

pytestmark = pytest.mark.django_db


BACKENDS = [
    pytest.param(DatabaseThrottle, id="database"),
    pytest.param(
        lambda: RedisThrottle(django_settings.REDIS_URL),
        id="redis",
        marks=pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL"),
    ),
]


@pytest.mark.parametrize(
    ("limit", "burst", "per_minute"),
    [(6000, 20, 5980), (600, 6, 594), (60, 1, 59), (1, 1, 1)],
)
def test_pace_keeps_every_window_under_the_limit(settings, limit, burst, per_minute):
    settings.RENOTIFY_SEND_BATCH = 20
    pace = Pace(limit)
    assert pace.burst == burst
    assert 60 / pace.interval == pytest.approx(per_minute)
    # worst case in any 60 s: one full burst plus a minute at the steady rate
    assert pace.burst + 60 / pace.interval <= limit + 1e-6 or limit == 1


@pytest.mark.parametrize("make", BACKENDS)
def test_a_full_burst_is_granted_then_the_next_one_waits(make, settings):
    settings.RENOTIFY_SEND_BATCH = 20
    throttle, key, pace = make(), f"t-{time.monotonic_ns()}", Pace(600)  # burst 6, 0.1 s apart
    assert throttle.try_take(key, pace, 6) == 0
    wait = throttle.try_take(key, pace, 6)
    assert 0.5 < wait <= 0.61  # six more intervals, less what elapsed


@pytest.mark.parametrize("make", BACKENDS)
def test_sustained_rate_matches_the_limit(make, settings, monkeypatch):
    settings.RENOTIFY_SEND_BATCH = 20
    monkeypatch.setattr("campaigns.services.throttle._throttle", make())
    key = f"rate-{time.monotonic_ns()}"
    started = time.monotonic()
    taken = 0
    while time.monotonic() - started < 1.0:
        assert throttle_take(key=key, limit_per_minute=6000, n=10, give_up_after=5)
        taken += 10
    elapsed = time.monotonic() - started
    rate_per_minute = (taken - 20) / elapsed * 60  # the first burst is free
    assert 0.9 * 6000 <= rate_per_minute <= 6000


def test_taking_more_than_a_burst_is_a_programming_error(settings):
    settings.RENOTIFY_SEND_BATCH = 20
    with pytest.raises(ValueError, match="at most"):
        throttle_take(key="x", limit_per_minute=60, n=2, give_up_after=1)


def test_gives_up_when_the_wait_would_outlast_the_deadline(settings, monkeypatch):
    settings.RENOTIFY_SEND_BATCH = 20
    monkeypatch.setattr("campaigns.services.throttle._throttle", DatabaseThrottle())
    assert throttle_take(key="slow", limit_per_minute=60, n=1, give_up_after=5)
    started = time.monotonic()
    assert not throttle_take(key="slow", limit_per_minute=60, n=1, give_up_after=0.2)
    assert time.monotonic() - started < 0.5
