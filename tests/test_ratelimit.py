"""POST rate limits: fixed windows on the shared cache, every limit of a request at once."""

import logging
import time

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured

from config.ratelimit import (
    Limit,
    client_network,
    limits_count,
    limits_hit,
    rate_parse,
    window_remaining,
)

# Both ways the counters are kept: Redis (one pipeline) and any other Django cache.
CACHES = [
    pytest.param({"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}, id="locmem"),
    pytest.param(
        {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": django_settings.REDIS_URL,
            "KEY_PREFIX": "renotify-test",
        },
        id="redis",
        marks=pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL"),
    ),
]


def emptied(alias: str) -> None:
    cache = caches[alias]
    # On Redis only this test cache's own keys (clear() would flush the whole database).
    getattr(cache, "delete_pattern", lambda pattern: cache.clear())("*")


@pytest.fixture(params=CACHES)
def counters(request, settings, fresh_rate_window):
    """A cache of the parametrised kind, empty, under the alias ``limits``."""
    settings.CACHES = {**settings.CACHES, "limits": request.param}
    emptied("limits")
    yield "limits"
    emptied("limits")


def hits(alias: str, *limits: Limit, times: int) -> list[bool]:
    return [limits_hit(list(limits), cache_alias=alias) for _ in range(times)]


@pytest.mark.parametrize(
    ("rate", "parsed"), [("20/m", (20, 60)), ("100/5m", (100, 300)), ("1/s", (1, 1))]
)
def test_rates_read_as_hits_per_period(rate, parsed):
    assert rate_parse(rate) == parsed


@pytest.mark.parametrize("rate", ["20", "20/x", "a/m", "20/0m", "-1/m", ""])
def test_a_malformed_rate_is_a_configuration_error(rate):
    with pytest.raises(ImproperlyConfigured, match="rate"):
        rate_parse(rate)


def test_one_ipv6_subscriber_counts_as_one_client_and_ipv4_addresses_as_themselves():
    assert client_network("2001:db8:1:2::1") == client_network("2001:db8:1:2:ffff::9")
    assert client_network("2001:db8:1:2::1") != client_network("2001:db8:1:3::1")
    assert client_network("203.0.113.7") == "203.0.113.7"
    assert client_network("203.0.113.7") != client_network("203.0.113.8")
    assert client_network(None) == ""


def test_the_hit_over_the_rate_is_refused_and_so_are_the_next(counters):
    link = Limit("post-link", "token-a", "3/m")
    assert hits(counters, link, times=5) == [False, False, False, True, True]


def test_limits_count_separately_per_value_and_group(counters):
    assert hits(counters, Limit("post-link", "token-a", "1/m"), times=2) == [False, True]
    assert hits(counters, Limit("post-link", "token-b", "1/m"), times=1) == [False]
    assert hits(counters, Limit("post-address", "token-a", "1/m"), times=1) == [False]


def test_any_one_limit_over_its_rate_refuses_and_every_limit_is_counted(counters):
    link_a, link_b = Limit("link", "a", "10/m"), Limit("link", "b", "10/m")
    address = Limit("address", "203.0.113.7", "2/m")
    assert hits(counters, link_a, address, times=2) == [False, False]
    assert hits(counters, link_b, address, times=1) == [True]  # the address is over
    # link b's hit was counted too, though the request was refused on the address
    assert hits(counters, link_b, times=9) == [False] * 9
    assert hits(counters, link_b, times=1) == [True]


def test_counts_say_what_is_left_and_when_the_window_ends(counters):
    client, address = Limit("client", "7", "3/m"), Limit("address", "203.0.113.7", "5/h")
    with time_machine.travel(time.time(), tick=False):
        first = limits_count([client, address], cache_alias=counters)
        assert [(c.allowed, c.count, c.remaining, c.over) for c in first] == [
            (3, 1, 2, False),
            (5, 1, 4, False),
        ]
        assert 1 <= first[0].reset <= 60 and first[0].reset < first[1].reset <= 3600
        assert first[0].reset == window_remaining("3/m")
        counts = [limits_count([client], cache_alias=counters)[0] for _ in range(3)]
    assert [(c.count, c.remaining, c.over) for c in counts] == [
        (2, 1, False),
        (3, 0, False),
        (4, 0, True),
    ]


def test_a_new_window_starts_counting_afresh(counters):
    link = Limit("link", "a", "2/m")
    with time_machine.travel(time.time(), tick=False) as clock:
        assert hits(counters, link, times=3) == [False, False, True]
        clock.shift(61)
        assert hits(counters, link, times=2) == [False, False]


@pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL")
def test_redis_counters_expire_and_never_hold_the_counted_value(settings):
    from django_redis import get_redis_connection

    settings.CACHES = {**settings.CACHES, "limits": CACHES[1].values[0]}
    limits_hit([Limit("link", "secret-token-value", "5/m")], cache_alias="limits")
    redis = get_redis_connection("limits")
    keys = [k.decode() for k in redis.keys("renotify-test:*rl:link:*")]
    assert len(keys) == 1 and "secret-token-value" not in keys[0]
    assert 60 <= redis.ttl(keys[0]) <= 65
    redis.delete(*keys)


def test_an_unreachable_cache_limits_nothing_and_says_so(settings, caplog):
    settings.CACHES = {
        **settings.CACHES,
        "limits": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",  # discard port: nothing listens
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5},
        },
    }
    with caplog.at_level(logging.WARNING, logger="config.ratelimit"):
        assert limits_hit([Limit("link", "a", "0/m")], cache_alias="limits") is False
        assert limits_count([Limit("link", "a", "0/m")], cache_alias="limits") == []
    assert "rate limits not counted" in caplog.text
