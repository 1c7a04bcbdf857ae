"""A rate limit shared by every worker: GCRA, a token bucket kept as one timestamp.

The state per campaign is its "theoretical arrival time" (TAT): when the bucket
would next be empty. Taking ``n`` tokens moves TAT forward by ``n`` intervals;
it is allowed while TAT stays within ``burst`` intervals of now. Redis keeps the
state when configured (an atomic Lua script); otherwise a database row does
(locked per take), so the embedded mode is just as strict across processes.

To keep every 60-second window at or under the limit, the emission interval is
computed for ``limit - burst`` per minute: the burst a worker may take at once
can then never push a window over the limit.
"""

import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import F

from campaigns.models import ThrottleState

GCRA_LUA = """
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local tat = tonumber(redis.call('GET', key) or now)
if tat < now then tat = now end
local new_tat = tat + n * interval
if new_tat - now > tolerance then
  return tostring(new_tat - now - tolerance)
end
redis.call('SET', key, tostring(new_tat), 'EX', 3600)
return '0'
"""


@dataclass(frozen=True)
class Pace:
    """Per-minute limit split into the burst one take may have and the steady interval."""

    limit_per_minute: int

    @property
    def burst(self) -> int:
        return max(1, min(settings.RENOTIFY_SEND_BATCH, self.limit_per_minute // 100))

    @property
    def interval(self) -> float:
        return 60.0 / max(1, self.limit_per_minute - self.burst)

    @property
    def tolerance(self) -> float:
        # A microsecond of slack, or float rounding would refuse an exact full burst forever.
        return self.burst * self.interval + 1e-6


class RedisThrottle:
    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._script = self._client.register_script(GCRA_LUA)

    def try_take(self, key: str, pace: Pace, n: int) -> float:
        """Take ``n`` tokens, or return how many seconds to wait before trying again."""
        wait = self._script(
            keys=[f"renotify:throttle:{key}"],
            args=[pace.interval, n, pace.tolerance],
        )
        return float(wait)


class DatabaseThrottle:
    """Same algorithm on a row (ThrottleState), for the embedded mode without Redis."""

    def try_take(self, key: str, pace: Pace, n: int) -> float:
        with transaction.atomic():
            state, _ = ThrottleState.objects.select_for_update().get_or_create(key=key)
            now = time.time()
            tat = max(state.tat, now)
            new_tat = tat + n * pace.interval
            excess = new_tat - now - pace.tolerance
            if excess > 0:
                return excess
            ThrottleState.objects.filter(pk=state.pk).update(tat=new_tat, takes=F("takes") + 1)
        return 0.0


_throttle: RedisThrottle | DatabaseThrottle | None = None


def get_throttle() -> RedisThrottle | DatabaseThrottle:
    global _throttle
    if _throttle is None:
        _throttle = RedisThrottle(settings.REDIS_URL) if settings.REDIS_URL else DatabaseThrottle()
    return _throttle


def throttle_take(*, key: str, limit_per_minute: int, n: int, give_up_after: float) -> bool:
    """Block until ``n`` tokens are granted (True), or ``give_up_after`` seconds pass (False)."""
    pace = Pace(limit_per_minute)
    if n > pace.burst:
        raise ValueError(f"take at most {pace.burst} tokens at once at this limit")
    deadline = time.monotonic() + give_up_after
    throttle = get_throttle()
    while True:
        wait = throttle.try_take(key, pace, n)
        if wait <= 0:
            return True
        if time.monotonic() + wait > deadline:
            return False
        time.sleep(wait)
