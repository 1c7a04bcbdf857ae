"""Fixed-window rate limits on the shared cache: every limit of a request in one round trip.

A request names its limits (what is counted, and how many per period); ``limits_hit``
counts one hit on each and says whether any is over. On Redis (django-redis) one Lua
script counts them all (INCR, and EXPIRE on a new counter): one round trip, atomic.
Other caches (the file cache of the embedded defaults) use ``add`` then ``incr``.

Why not django-ratelimit, which did this before: it counts each limit with ``add``,
then ``incr`` when the key exists, one Redis call each, through django-redis's pickling
and its Lua ``incr``; on the notice page those calls were a large share of an
objection's time, where one script for all the limits is a small one.

Counted values are hashed into the key: the cache never holds a link's token or a
client's address. A window is ``period`` seconds long, the same for every key.
"""

import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A counter outlives its window by this much, so that it is never recreated mid-window.
EXPIRY_MARGIN = 5
# Addresses of one IPv6 subscriber share a /64: counted as one client, as IPv4 /32.
IPV6_PREFIX = 64


@dataclass(frozen=True)
class Limit:
    """At most ``rate`` ("20/m", "120/5m") hits per window on ``value`` in ``group``."""

    group: str
    value: str
    rate: str


def rate_parse(rate: str) -> tuple[int, int]:
    """ "20/m" -> (20, 60); "100/5m" -> (100, 300). ImproperlyConfigured otherwise."""
    try:
        count, per = rate.split("/")
        multiple, unit = (per[:-1] or "1"), per[-1]
        allowed, period = int(count), int(multiple) * PERIODS[unit]
    except (ValueError, KeyError, IndexError):
        raise ImproperlyConfigured(f"rate {rate!r} is not like '20/m' or '100/5m'") from None
    if allowed < 0 or period <= 0:
        raise ImproperlyConfigured(f"rate {rate!r} must count >= 0 hits in > 0 seconds")
    return allowed, period


def client_network(ip: str | None) -> str:
    """The client as counted: its IPv4 address, or its IPv6 /64."""
    if not ip:
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


@dataclass(frozen=True)
class Counted:
    """Where one limit stands after a hit: hits ``allowed`` per window, ``count`` so far
    in this one, and ``reset`` whole seconds until it ends."""

    allowed: int
    count: int
    reset: int

    @property
    def over(self) -> bool:
        return self.count > self.allowed

    @property
    def remaining(self) -> int:
        return max(0, self.allowed - self.count)


def limits_hit(limits: Sequence[Limit], *, cache_alias: str = "default") -> bool:
    """Count one hit on every limit; True when any of them is now over its rate.

    A cache that cannot be reached limits nothing (logged): turning members away
    because of a counter would be worse than an unlimited minute.
    """
    return any(counted.over for counted in limits_count(limits, cache_alias=cache_alias))


def limits_count(limits: Sequence[Limit], *, cache_alias: str = "default") -> list[Counted]:
    """Count one hit on every limit, in one round trip; where each now stands, in order.
    Empty when the cache cannot be reached (logged): nothing is limited then."""
    now = time.time()
    counters = []
    for limit in limits:
        allowed, period = rate_parse(limit.rate)
        counters.append((_key(limit, period, now), period + EXPIRY_MARGIN, allowed, period))
    try:
        counts = _count(cache_alias, [(key, ttl) for key, ttl, _, _ in counters])
    except (RedisError, OSError) as exc:
        logger.warning("rate limits not counted, cache unreachable: %s", type(exc).__name__)
        return []
    return [
        Counted(allowed, count, _seconds_left(period, now))
        for count, (_, _, allowed, period) in zip(counts, counters, strict=True)
    ]


def window_remaining(rate: str, *, now: float | None = None) -> int:
    """Whole seconds until the current window of ``rate`` ends: when a refused client
    may try again (windows are fixed, the same for every key)."""
    _allowed, period = rate_parse(rate)
    return _seconds_left(period, time.time() if now is None else now)


def _seconds_left(period: int, now: float) -> int:
    return max(1, math.ceil(period - now % period))


def _key(limit: Limit, period: int, now: float) -> str:
    digest = hashlib.blake2b(limit.value.encode(), digest_size=12).hexdigest()
    return f"rl:{limit.group}:{period}:{int(now // period)}:{digest}"


# Every counter of a request in one call: the script runs atomically, so a counter is
# never left without its expiry.
COUNT_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  if counts[i] == 1 then redis.call('EXPIRE', key, ARGV[i]) end
end
return counts
"""
_scripts: dict[int, Any] = {}  # per redis client: registering hashes the script once


def _count(alias: str, counters: list[tuple[str, int]]) -> list[int]:
    cache = caches[alias]
    client = _redis_client(cache)
    if client is None:
        return [_count_one(cache, key, ttl) for key, ttl in counters]
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(COUNT_SCRIPT)
    # make_key: the cache's own prefix and version, as its other keys have
    keys = [cache.make_key(key) for key, _ in counters]
    return script(keys=keys, args=[ttl for _, ttl in counters], client=client)


def _count_one(cache, key: str, ttl: int) -> int:
    if cache.add(key, 1, ttl):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between the two calls: this hit opens a new counter
        cache.add(key, 1, ttl)
        return 1


def _redis_client(cache):
    """The raw redis client behind a django-redis cache, or None for other caches."""
    get_client = getattr(getattr(cache, "client", None), "get_client", None)
    return get_client(write=True) if get_client is not None else None
