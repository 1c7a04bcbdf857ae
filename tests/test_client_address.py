"""Client addresses behind trusted proxies, and limits that never refuse a member's
valid first choice because of other people's traffic."""

import pytest
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory
from django.utils import timezone

from accounts.ledger import hash_ip
from accounts.models import Action, ConsentEvent, Source
from campaigns import tokens
from campaigns.models import CampaignState, Delivery, DeliveryStatus
from campaigns.services.fanout import campaign_fan_out
from config.clientip import client_ip, trusted_proxies_parse
from tests.factories import MemberFactory, campaign

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rate_window")]

BALANCER = "10.0.0.5"  # the load balancer every request arrives from
CDN_EDGE = "198.51.100.20"
ALICE, BOB, MALLORY = "81.2.69.142", "81.2.69.160", "89.160.20.112"
ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture(autouse=True)
def _empty_counters():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def alice_and_bob(purpose):
    """Two members, each sent the notice an hour ago: (Alice's delivery, Bob's)."""
    MemberFactory(email="alice@example.com", country="US", locale="en")
    MemberFactory(email="bob@example.com", country="US", locale="en")
    campaign_fan_out(campaign=campaign(state=CampaignState.SENDING))
    Delivery.objects.update(
        status=DeliveryStatus.SENT, sent_at=timezone.now() - timezone.timedelta(hours=1)
    )
    return tuple(Delivery.objects.order_by("member__email"))


def request_from(peer: str, forwarded: str | None = None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=peer, **extra)


def object_to(client: Client, delivery: Delivery, **extra) -> int:
    url = f"/n/{tokens.notice_token(delivery.pk)}/"
    form = client.get(url, **extra).cookies["csrftoken"].value
    data = {"csrfmiddlewaretoken": form, "action": "object", "purpose": "ai-training"}
    return client.post(url, data, **extra).status_code


def one_click(delivery: Delivery, **extra) -> int:
    url = f"/u/{tokens.unsubscribe_token(delivery.pk)}/"
    client = Client(enforce_csrf_checks=True)
    return client.post(
        url, ONE_CLICK, content_type="application/x-www-form-urlencoded", **extra
    ).status_code


def forged_posts(count: int, **extra) -> list[int]:
    client = Client()
    return [
        client.post(
            f"/u/forged-{n}:AAAA/", ONE_CLICK, content_type="text/plain", **extra
        ).status_code
        for n in range(count)
    ]


# --- Which address is the client's ------------------------------------------------------


def test_without_trusted_proxies_the_client_is_the_tcp_peer_whatever_it_claims(settings):
    settings.RENOTIFY_TRUSTED_PROXIES = ""
    assert client_ip(request_from(MALLORY, forwarded=ALICE)) == MALLORY


def test_behind_a_trusted_balancer_the_client_is_what_the_balancer_saw(settings):
    settings.RENOTIFY_TRUSTED_PROXIES = "10.0.0.0/24"
    assert client_ip(request_from(BALANCER, forwarded=ALICE)) == ALICE
    # whatever the client put on the left of the header itself
    assert client_ip(request_from(BALANCER, forwarded=f"{BOB}, {ALICE}")) == ALICE


def test_an_untrusted_peer_is_taken_at_its_address_whatever_it_forwards(settings):
    settings.RENOTIFY_TRUSTED_PROXIES = "10.0.0.0/24"
    assert client_ip(request_from(MALLORY, forwarded=ALICE)) == MALLORY


def test_two_trusted_hops_are_skipped_and_a_bypass_of_the_outer_one_is_not_trusted(settings):
    settings.RENOTIFY_TRUSTED_PROXIES = "198.51.100.0/24, 10.0.0.0/24"
    assert client_ip(request_from(BALANCER, forwarded=f"{BOB}, {ALICE}, {CDN_EDGE}")) == ALICE
    # reached the balancer without the CDN: the header's last hop is no CDN edge
    assert client_ip(request_from(BALANCER, forwarded=f"{CDN_EDGE}, {MALLORY}")) == BALANCER


def test_a_proxy_count_takes_the_entry_the_outermost_proxy_added(settings):
    settings.RENOTIFY_TRUSTED_PROXIES = "2"
    assert client_ip(request_from(BALANCER, forwarded=f"{BOB}, {ALICE}, {CDN_EDGE}")) == ALICE


@pytest.mark.parametrize("value", ["10.0.0.0/33", "balancer", "10.0.0.1,", "-1"])
def test_an_unreadable_proxy_setting_is_a_configuration_error(value, settings):
    with pytest.raises(ImproperlyConfigured, match="RENOTIFY_TRUSTED_PROXIES"):
        trusted_proxies_parse(value)
    from config.checks import trusted_proxies

    settings.RENOTIFY_TRUSTED_PROXIES = value
    assert [m.id for m in trusted_proxies(None)] == ["renotify.E020"]


def test_the_ledger_hashes_the_client_address_not_the_balancers(alice_and_bob, settings):
    settings.RENOTIFY_TRUSTED_PROXIES = "10.0.0.0/24"
    alice, _ = alice_and_bob
    assert one_click(alice, REMOTE_ADDR=BALANCER, HTTP_X_FORWARDED_FOR=ALICE) == 200
    event = ConsentEvent.objects.get()
    assert event.ip_hash == hash_ip(ALICE) != hash_ip(BALANCER)


# --- Whose traffic a limit counts ------------------------------------------------------


def test_behind_a_trusted_proxy_two_clients_have_separate_address_counts(settings):
    settings.RENOTIFY_TRUSTED_PROXIES = "10.0.0.0/24"
    settings.RENOTIFY_RATE_PER_IP = "3/m"
    via_balancer = {"REMOTE_ADDR": BALANCER}
    assert forged_posts(4, HTTP_X_FORWARDED_FOR=MALLORY, **via_balancer) == [400, 400, 400, 429]
    assert forged_posts(1, HTTP_X_FORWARDED_FOR=BOB, **via_balancer) == [400]


def test_an_untrusted_forwarded_header_does_not_escape_the_address_limit(settings):
    settings.RENOTIFY_RATE_PER_IP = "3/m"
    statuses = [
        forged_posts(1, REMOTE_ADDR=MALLORY, HTTP_X_FORWARDED_FOR=f"81.2.69.{n}")[0]
        for n in range(4)
    ]
    assert statuses == [400, 400, 400, 429]


def test_a_burst_of_forged_links_is_limited_per_address_and_an_ipv6_subscriber_is_one(settings):
    settings.RENOTIFY_RATE_PER_IP = "3/m"
    one_subscriber = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"]
    statuses = [forged_posts(1, REMOTE_ADDR=a)[0] for a in [*one_subscriber, "2001:db8:1:2::4"]]
    assert statuses == [400, 400, 400, 429]
    assert forged_posts(1, REMOTE_ADDR="2001:db8:9:9::1") == [400]  # someone else


def test_a_valid_links_first_choices_go_through_after_the_address_allowance_is_spent(
    alice_and_bob, settings
):
    """Behind a balancer nobody configured (every member shares its address): another
    client's links and forged links spend the address allowance first."""
    settings.RENOTIFY_RATE_PER_IP = "3/m"
    alice, bob = alice_and_bob
    shared = {"REMOTE_ADDR": BALANCER}
    browser = Client(enforce_csrf_checks=True)
    assert object_to(browser, alice, **shared) == 302
    assert [one_click(alice, **shared) for _ in range(3)] == [200, 200, 200]
    assert forged_posts(4, **shared)[-1] == 429

    assert object_to(Client(enforce_csrf_checks=True), bob, **shared) == 302
    assert one_click(bob, **shared) == 200
    bobs = ConsentEvent.objects.filter(member=bob.member).order_by("seq")
    assert [(e.action, e.source) for e in bobs] == [
        (Action.OBJECT, Source.PREFERENCE_PAGE),
        (Action.UNSUBSCRIBE, Source.ONE_CLICK),
    ]


def test_repeated_taps_on_one_link_are_still_limited(alice_and_bob, settings):
    settings.RENOTIFY_RATE_PER_TOKEN = "3/m"
    alice, bob = alice_and_bob
    assert [one_click(alice) for _ in range(4)] == [200, 200, 200, 429]
    assert one_click(bob) == 200
