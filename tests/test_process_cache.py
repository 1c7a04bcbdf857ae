"""The bounded per-process cache behind frozen texts, page skeletons and the purposes copy."""

import time

import pytest

from config import cache
from config.cache import ProcessCache


def test_a_full_cache_drops_the_entry_stored_first():
    kept = ProcessCache("test", max_size=2)
    kept.set("a", 1)
    kept.set("b", 2)
    assert kept.get("a") == 1  # a read does not make an entry younger
    kept.set("c", 3)
    assert len(kept) == 2
    assert kept.get("a") is None
    assert (kept.get("b"), kept.get("c")) == (2, 3)


def test_storing_a_kept_key_again_replaces_it_without_dropping_another():
    kept = ProcessCache("test", max_size=2)
    kept.set("a", 1)
    kept.set("b", 2)
    kept.set("a", 10)
    assert (len(kept), kept.get("a"), kept.get("b")) == (2, 10, 2)


def test_get_or_set_computes_only_what_is_missing():
    kept = ProcessCache("test", max_size=4)
    calls = []

    def compute():
        calls.append(1)
        return ["texts"]

    first = kept.get_or_set("v1", compute)
    assert kept.get_or_set("v1", compute) is first
    assert len(calls) == 1


def test_a_none_value_is_kept_like_any_other():
    kept = ProcessCache("test", max_size=1)
    calls = []
    kept.get_or_set("k", lambda: calls.append(1))
    kept.get_or_set("k", lambda: calls.append(1))
    assert calls == [1]


def test_an_entry_older_than_its_time_is_read_afresh(monkeypatch):
    kept = ProcessCache("test", max_size=1, ttl_seconds=30.0)
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now)
    assert kept.get_or_set("k", lambda: "old") == "old"
    monkeypatch.setattr(time, "monotonic", lambda: now + 30.0)
    assert kept.get_or_set("k", lambda: "new") == "old"  # exactly its time: still kept
    monkeypatch.setattr(time, "monotonic", lambda: now + 30.5)
    assert kept.get("k") is None
    assert kept.get_or_set("k", lambda: "new") == "new"


def test_without_a_time_an_entry_is_kept_until_dropped(monkeypatch):
    kept = ProcessCache("test", max_size=1)
    kept.set("k", "v")
    later = time.monotonic() + 10**9
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert kept.get("k") == "v"


def test_clear_all_empties_every_cache():
    first = ProcessCache("first", max_size=2)
    second = ProcessCache("second", max_size=2, ttl_seconds=60)
    first.set("a", 1)
    second.set("b", 2)
    cache.clear_all()
    assert (len(first), len(second)) == (0, 0)


def test_the_app_caches_are_registered():
    from accounts import selectors
    from campaigns import rendering
    from pages import views

    registered = set(cache._caches)
    assert {selectors._purposes_copy, rendering._frozen_texts, views._skeletons} <= registered
    assert (selectors._purposes_copy.max_size, selectors._purposes_copy.ttl_seconds) == (1, 30.0)
    assert rendering._frozen_texts.max_size == 64
    assert views._skeletons.max_size == views.SKELETONS_KEPT == 512


def test_a_cache_keeps_at_least_one_entry():
    with pytest.raises(ValueError):
        ProcessCache("none", max_size=0)
