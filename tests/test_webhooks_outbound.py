"""Outbound webhooks: the ledger's events become one delivery per endpoint, each POSTed
signed (verifiable with the snippet in docs/api.md) to a real HTTP server in this
process, retried with growing delays for 24 hours, then parked, replayed by staff;
and a dead endpoint never slows a page, the API or the sending worker."""

import json
import re
import socket
import subprocess
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import Action, ConsentEvent, Source
from accounts.permissions import PermissionRefused
from accounts.services.consent import consent_record
from api.models import LedgerFollower, WebhookAttempt, WebhookDelivery, WebhookState
from api.services.clients import api_client_create, api_client_revoke
from api.services.webhook_sending import (
    EVENT_ID_HEADER,
    RETRY_WINDOW,
    SIGNATURE_HEADER,
    webhook_deliveries_send_due,
)
from api.services.webhooks import (
    EndpointRefused,
    webhook_deliveries_replay,
    webhook_endpoint_create,
    webhook_endpoint_deactivate,
    webhook_events_dispatch,
)
from api.tasks import webhooks_deliver_due, webhooks_dispatch
from campaigns import tokens
from tests.concurrency import at_once
from tests.factories import MemberFactory, campaign, sent_delivery, staff_user
from tests.test_notice_pages import post_form

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


# --- A real endpoint, and a dead one -------------------------------------------------


class _Endpoint(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, dict(self.headers), body))
        status = self.server.answers.pop(0) if self.server.answers else 204
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass  # keep the test output quiet


@pytest.fixture
def receiver():
    """An HTTP server on a free port: ``received`` holds (path, headers, raw body) per
    request; ``answers`` the statuses to answer with, in order (then 204)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    server.received, server.answers = [], []
    server.url = f"http://127.0.0.1:{server.server_port}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def dead_socket() -> socket.socket:
    """A port that takes connections (the kernel's backlog) and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    return listener


@pytest.fixture
def dead_sockets():
    made: list[socket.socket] = []

    def make() -> socket.socket:
        made.append(dead_socket())
        return made[-1]

    yield make
    for listener in made:
        listener.close()


def url_of(listener: socket.socket) -> str:
    return f"http://127.0.0.1:{listener.getsockname()[1]}/hooks"


def connections_waiting(listener: socket.socket) -> int:
    """How many connections reached ``listener`` (accepting them, to count)."""
    listener.setblocking(False)
    count = 0
    while True:
        try:
            accepted, _ = listener.accept()
        except BlockingIOError:
            return count
        accepted.close()
        count += 1


@pytest.fixture(autouse=True)
def _short_timeouts(settings):
    settings.RENOTIFY_WEBHOOK_TIMEOUT = 0.3
    settings.RENOTIFY_WEBHOOK_BUDGET = 5.0


# --- Who and what ----------------------------------------------------------------------


@pytest.fixture
def crm(db):
    """The platform's CRM, an API client of the platform team's."""
    return api_client_create(name="crm", scopes=["campaigns:read"], by=None)[0]


def endpoint_at(client, url):
    return webhook_endpoint_create(client=client, url=url, by=None)[0]


def record(member, action, purpose=None, **fields):
    return consent_record(
        member=member, action=action, source=Source.PREFERENCE_PAGE, purpose=purpose, **fields
    ).event


def a_delivery_to(endpoint, purpose):
    """One objection, dispatched: the endpoint's delivery of it."""
    record(MemberFactory(country="US"), Action.OBJECT, purpose)
    webhook_events_dispatch()
    return WebhookDelivery.objects.get(
        endpoint=endpoint, event_seq=ConsentEvent.objects.latest("seq").seq
    )


def reload(delivery):
    return WebhookDelivery.objects.get(pk=delivery.pk)


# --- Dispatch: the ledger's events become deliveries -------------------------------------


def test_each_event_of_interest_becomes_one_delivery_per_active_endpoint(crm, purpose):
    first, second = (
        endpoint_at(crm, "https://crm.example/a"),
        endpoint_at(crm, "https://crm.example/b"),
    )
    gone = endpoint_at(crm, "https://crm.example/gone")
    webhook_endpoint_deactivate(endpoint=gone, by=None)
    ada = MemberFactory(external_id="ada", email="ada@example.com", country="US")
    objected = record(ada, Action.OBJECT, purpose, comment="do not train on me", ip="192.0.2.7")
    record(ada, Action.ACKNOWLEDGE, notice_version_id=1)
    unsubscribed = record(ada, Action.UNSUBSCRIBE)
    erased = consent_record(member=ada, action=Action.ERASE, source=Source.API).event

    assert webhook_events_dispatch() == (3, True)

    made = WebhookDelivery.objects.order_by("endpoint_id", "event_seq")
    assert [(d.endpoint_id, d.event_seq, d.event_type) for d in made] == [
        (e.pk, seq, kind)
        for e in (first, second)
        for seq, kind in (
            (objected.seq, "preference.changed"),
            (unsubscribed.seq, "member.unsubscribed"),
            (erased.seq, "member.erased"),
        )
    ]
    assert made[0].payload == {
        "id": f"evt_{objected.seq}",
        "type": "preference.changed",
        "created_at": objected.created_at.isoformat(),
        "member": {"external_id": "ada"},
        "purpose": "ai-training",
        "action": "object",
        "source": "preference-page",
    }
    assert made[1].payload["purpose"] is None
    everything = json.dumps([d.payload for d in made])
    assert "ada@example.com" not in everything and "train on me" not in everything
    assert LedgerFollower.objects.get(name="webhooks").seq == erased.seq


def test_a_choice_made_through_a_linked_account_names_it(crm, purpose):
    endpoint_at(crm, "https://crm.example/a")
    record(MemberFactory(external_id="work"), Action.OBJECT, purpose, metadata={"via": "home"})
    webhook_events_dispatch()
    assert WebhookDelivery.objects.get().payload["via"] == "home"


def test_dispatching_again_or_from_the_start_makes_no_second_delivery(crm, purpose):
    endpoint_at(crm, "https://crm.example/a")
    for member in MemberFactory.create_batch(3, country="US"):
        record(member, Action.OBJECT, purpose)
    webhook_events_dispatch()
    webhook_events_dispatch()
    LedgerFollower.objects.update(seq=0)  # a follower set back, as after a restore
    webhook_events_dispatch()
    assert WebhookDelivery.objects.count() == 3


def test_an_endpoint_gets_only_the_events_after_it_was_made(crm, purpose):
    before = record(MemberFactory(country="US"), Action.OBJECT, purpose)
    endpoint = endpoint_at(crm, "https://crm.example/a")
    after = record(MemberFactory(country="US"), Action.OBJECT, purpose)
    webhook_events_dispatch()
    assert endpoint.after_seq == before.seq
    assert list(WebhookDelivery.objects.values_list("event_seq", flat=True)) == [after.seq]


def test_dispatch_goes_in_batches_and_past_events_nobody_is_told_of(crm, purpose):
    endpoint_at(crm, "https://crm.example/a")
    members = MemberFactory.create_batch(5, country="US")
    for member in members:
        record(member, Action.OBJECT, purpose)
        record(member, Action.ACKNOWLEDGE, notice_version_id=1)
    head = ConsentEvent.objects.latest("seq").seq

    runs = [webhook_events_dispatch(batch=2) for _ in range(3)]

    assert runs == [(2, False), (2, False), (1, True)]
    assert WebhookDelivery.objects.count() == 5
    assert LedgerFollower.objects.get(name="webhooks").seq == head  # the last acknowledgement


def test_without_endpoints_the_follower_moves_to_the_head_reading_nothing(purpose):
    record(MemberFactory(country="US"), Action.OBJECT, purpose)
    assert webhook_events_dispatch() == (0, True)
    assert LedgerFollower.objects.get(name="webhooks").seq == ConsentEvent.objects.get().seq


def test_the_dispatch_task_catches_up_in_one_run(crm, purpose, monkeypatch):
    monkeypatch.setattr("api.services.webhooks.DISPATCH_BATCH", 2)
    endpoint_at(crm, "https://crm.example/a")
    for member in MemberFactory.create_batch(5, country="US"):
        record(member, Action.OBJECT, purpose)
    assert webhooks_dispatch() == 5
    assert WebhookDelivery.objects.count() == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks between connections")
def test_dispatchers_running_at_once_make_each_delivery_once(purpose):
    client = api_client_create(name="crm", scopes=[], by=None)[0]
    endpoint_at(client, "https://crm.example/a")
    endpoint_at(client, "https://crm.example/b")
    for member in MemberFactory.create_batch(20, country="US"):
        record(member, Action.OBJECT, purpose)

    assert at_once(*[lambda: webhook_events_dispatch(batch=3) for _ in range(6)]) == []
    while not webhook_events_dispatch(batch=3)[1]:
        pass

    assert WebhookDelivery.objects.count() == 40
    assert LedgerFollower.objects.get().seq == 20


# --- Signing: what the docs show verifies what is sent ----------------------------------


def docs_snippet(language: str) -> str:
    """The ``language`` code block of docs/api.md's "Verifying a signature"."""
    docs = (ROOT / "docs" / "api.md").read_text()
    section = docs.split("### Verifying a signature", 1)[1].split("\n## ", 1)[0]
    return re.search(rf"```{language}\n(.*?)```", section, re.DOTALL).group(1)


def signature_check():
    namespace: dict = {}
    exec(docs_snippet("python"), namespace)  # the documented code, as a receiver runs it
    return namespace["renotify_signature_valid"]


@pytest.fixture
def one_received(crm, purpose, receiver):
    """The request one objection was POSTed as, and the endpoint's secret."""
    endpoint, secret = webhook_endpoint_create(client=crm, url=receiver.url, by=None)
    delivery = a_delivery_to(endpoint, purpose)
    assert webhook_deliveries_send_due().delivered == 1
    [(_path, headers, body)] = receiver.received
    return {"delivery": delivery, "secret": secret, "headers": headers, "body": body}


def test_a_delivery_verifies_with_the_documented_python_snippet(one_received):
    valid, got = signature_check(), one_received
    headers, body = got["headers"], got["body"]
    assert valid(body, headers[SIGNATURE_HEADER], got["secret"])
    assert json.loads(body) == got["delivery"].payload
    assert headers[EVENT_ID_HEADER] == got["delivery"].payload["id"]
    assert headers["Content-Type"] == "application/json"


def test_a_tampered_body_a_wrong_secret_or_an_old_signature_does_not_verify(one_received):
    valid, got = signature_check(), one_received
    header, body, secret = got["headers"][SIGNATURE_HEADER], got["body"], got["secret"]
    assert not valid(body.replace(b'"object"', b'"opt-in"'), header, secret)
    assert not valid(body, header, secret + "x")
    assert not valid(body, "t=1,v1=00", secret)
    assert not valid(body, "nonsense", secret)
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        assert not valid(body, header, secret)  # a captured request replayed later
    with time_machine.travel(timezone.now() + timedelta(minutes=4)):
        assert valid(body, header, secret)


def test_a_delivery_verifies_with_the_documented_openssl_lines(one_received, tmp_path):
    got = one_received
    (tmp_path / "body.json").write_bytes(got["body"])
    t, v1 = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", got["headers"][SIGNATURE_HEADER]).groups()

    def run(secret, signature):
        env = {"T": t, "V1": signature, "SECRET": secret, "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            ["sh", "-c", docs_snippet("sh")], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        return done.stdout.strip()

    assert run(got["secret"], v1) == "valid"
    assert run(got["secret"] + "x", v1) == "invalid"


# --- Sending, retries, parking ---------------------------------------------------------


def test_a_2xx_answer_delivers_with_one_attempt_recorded(crm, purpose, receiver):
    delivery = a_delivery_to(endpoint_at(crm, receiver.url), purpose)
    webhook_deliveries_send_due()
    delivery = reload(delivery)
    assert delivery.state == WebhookState.DELIVERED and delivery.delivered_at is not None
    assert delivery.attempts == 1
    assert list(delivery.tries.values_list("status_code", "error")) == [(204, "")]
    assert webhook_deliveries_send_due().delivered == 0  # nothing due any more
    assert len(receiver.received) == 1


def test_a_failing_endpoint_is_retried_with_exponentially_growing_waits(crm, purpose, receiver):
    receiver.answers = [500, 503, 500, 200]
    delivery = a_delivery_to(endpoint_at(crm, receiver.url), purpose)
    waits = []
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for _ in range(3):
            webhook_deliveries_send_due()
            attempted = reload(delivery)
            waits.append((attempted.next_attempt_at - timezone.now()).total_seconds())
            assert webhook_deliveries_send_due().failed == 0  # not due again yet
            clock.move_to(attempted.next_attempt_at)
        webhook_deliveries_send_due()

    assert [30 <= waits[0] <= 37.5, 60 <= waits[1] <= 75, 120 <= waits[2] <= 150] == [True] * 3
    delivery = reload(delivery)
    assert delivery.state == WebhookState.DELIVERED and delivery.attempts == 4
    assert sorted(delivery.tries.values_list("status_code", flat=True)) == [200, 500, 500, 503]
    assert len(receiver.received) == 4


def test_a_timeout_is_an_attempt_with_its_error(crm, purpose, dead_sockets):
    delivery = a_delivery_to(endpoint_at(crm, url_of(dead_sockets())), purpose)
    assert webhook_deliveries_send_due().failed == 1
    [attempt] = WebhookAttempt.objects.filter(delivery=delivery)
    assert attempt.status_code is None and "timed out" in attempt.error
    assert 250 <= attempt.duration_ms < 2000
    assert reload(delivery).state == WebhookState.PENDING


def test_a_refused_connection_and_a_redirect_are_failures(crm, purpose, receiver):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    refused = a_delivery_to(endpoint_at(crm, f"http://127.0.0.1:{port}/"), purpose)
    receiver.answers = [302]
    redirected = a_delivery_to(endpoint_at(crm, receiver.url), purpose)
    WebhookDelivery.objects.exclude(pk__in=[refused.pk, redirected.pk]).delete()

    assert webhook_deliveries_send_due().failed == 2

    assert "refused" in WebhookAttempt.objects.get(delivery=refused).error.lower()
    assert WebhookAttempt.objects.get(delivery=redirected).status_code == 302
    assert [path for path, *_ in receiver.received] == ["/hooks"]  # /elsewhere never asked


def test_the_last_retry_is_at_24_hours_and_its_failure_parks(crm, purpose, receiver):
    receiver.answers = [500] * 3
    delivery = a_delivery_to(endpoint_at(crm, receiver.url), purpose)
    deadline = delivery.created_at + RETRY_WINDOW
    with time_machine.travel(deadline - timedelta(seconds=10), tick=False) as clock:
        webhook_deliveries_send_due()
        assert reload(delivery).next_attempt_at == deadline  # not later than the window
        clock.move_to(deadline)
        assert webhook_deliveries_send_due().parked == 1
    delivery = reload(delivery)
    assert delivery.state == WebhookState.PARKED and delivery.attempts == 2
    with time_machine.travel(deadline + timedelta(days=1)):
        assert webhook_deliveries_send_due().as_dict() == {
            "delivered": 0,
            "failed": 0,
            "parked": 0,
            "postponed": 0,
        }
    assert len(receiver.received) == 2


def test_replay_sends_a_parked_delivery_again(crm, purpose, receiver):
    delivery = a_delivery_to(endpoint_at(crm, receiver.url), purpose)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(state=WebhookState.PARKED, attempts=30)
    replayer = staff_user("rosa", "api.replay_webhookdelivery")

    assert webhook_deliveries_replay(deliveries=WebhookDelivery.objects.all(), by=replayer) == 1
    assert webhook_deliveries_send_due().delivered == 1

    assert reload(delivery).state == WebhookState.DELIVERED
    assert len(receiver.received) == 1
    # Delivered, it can be replayed again (a receiver that lost it); pending ones are left.
    assert webhook_deliveries_replay(deliveries=WebhookDelivery.objects.all(), by=replayer) == 1
    assert webhook_deliveries_replay(deliveries=WebhookDelivery.objects.all(), by=replayer) == 0


def test_replay_and_endpoints_need_their_permissions(crm, purpose):
    endpoint = endpoint_at(crm, "https://crm.example/a")
    delivery = a_delivery_to(endpoint, purpose)
    WebhookDelivery.objects.update(state=WebhookState.PARKED)
    almost = staff_user("almost", "api.view_webhookdelivery", "api.add_webhookendpoint")
    with pytest.raises(PermissionRefused):
        webhook_deliveries_replay(deliveries=WebhookDelivery.objects.all(), by=almost)
    with pytest.raises(PermissionRefused):
        webhook_endpoint_create(client=crm, url="https://crm.example/b", by=almost)
    with pytest.raises(PermissionRefused):
        webhook_endpoint_deactivate(endpoint=endpoint, by=almost)
    assert reload(delivery).state == WebhookState.PARKED
    assert crm.endpoints.filter(active=True).count() == 1


@pytest.mark.parametrize(
    "url",
    ["http://crm.example/hooks", "ftp://crm.example/hooks", "https:///nohost", "javascript:1"],
)
def test_an_endpoint_is_https_or_on_this_host(crm, url):
    with pytest.raises(EndpointRefused):
        webhook_endpoint_create(client=crm, url=url, by=None)
    assert not crm.endpoints.exists()


def test_a_deactivated_endpoint_is_sent_nothing_more(crm, purpose, receiver):
    endpoint = endpoint_at(crm, receiver.url)
    delivery = a_delivery_to(endpoint, purpose)
    webhook_endpoint_deactivate(endpoint=endpoint, by=None)
    record(MemberFactory(country="US"), Action.OBJECT, purpose)
    webhook_events_dispatch()
    assert webhook_deliveries_send_due().delivered == 0
    assert receiver.received == [] and WebhookDelivery.objects.get() == delivery


def test_a_revoked_clients_endpoints_are_sent_nothing_more(crm, purpose, receiver):
    delivery = a_delivery_to(endpoint_at(crm, receiver.url), purpose)
    api_client_revoke(client=crm, by=None)
    record(MemberFactory(country="US"), Action.OBJECT, purpose)
    webhook_events_dispatch()
    assert webhook_deliveries_send_due().delivered == 0
    assert receiver.received == [] and WebhookDelivery.objects.get() == delivery


def test_idle_runs_cost_a_few_queries(crm, purpose, receiver, django_assert_max_num_queries):
    a_delivery_to(endpoint_at(crm, receiver.url), purpose)
    webhook_deliveries_send_due()
    for member in MemberFactory.create_batch(3, country="US"):
        record(member, Action.ACKNOWLEDGE, notice_version_id=1)
    with django_assert_max_num_queries(9):  # past events nobody is told of
        assert webhook_events_dispatch() == (0, True)
    with django_assert_max_num_queries(2):  # beat runs both every few seconds
        assert webhook_events_dispatch() == (0, True)
    with django_assert_max_num_queries(4):
        assert webhook_deliveries_send_due().as_dict() == dict.fromkeys(
            ("delivered", "failed", "parked", "postponed"), 0
        )


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED between connections")
def test_senders_running_at_once_send_each_delivery_once(purpose, receiver):
    client = api_client_create(name="crm", scopes=[], by=None)[0]
    endpoint_at(client, receiver.url)
    for member in MemberFactory.create_batch(12, country="US"):
        record(member, Action.OBJECT, purpose)
    webhook_events_dispatch()

    assert at_once(*[lambda: webhook_deliveries_send_due(limit=3) for _ in range(4)]) == []

    assert sorted(json.loads(body)["id"] for *_, body in receiver.received) == sorted(
        WebhookDelivery.objects.values_list("payload__id", flat=True)
    )
    assert WebhookDelivery.objects.filter(state=WebhookState.DELIVERED).count() == 12


# --- A dead endpoint slows nothing ---------------------------------------------------------


def test_a_dead_endpoint_gets_one_attempt_per_run_and_the_others_go_on(
    crm, purpose, receiver, dead_sockets
):
    dead = endpoint_at(crm, url_of(dead_sockets()))
    for member in MemberFactory.create_batch(4, country="US"):
        record(member, Action.OBJECT, purpose)
    webhook_events_dispatch()
    alive = endpoint_at(crm, receiver.url)
    for member in MemberFactory.create_batch(2, country="US"):
        record(member, Action.OBJECT, purpose)
    webhook_events_dispatch()

    started = time.monotonic()
    run = webhook_deliveries_send_due()
    elapsed = time.monotonic() - started

    assert (run.failed, run.delivered) == (1, 2) and elapsed < 2.0
    assert WebhookAttempt.objects.filter(delivery__endpoint=dead).count() == 1
    waiting = WebhookDelivery.objects.filter(endpoint=dead, state=WebhookState.PENDING)
    assert waiting.filter(next_attempt_at__gt=timezone.now() + timedelta(seconds=29)).count() == 6
    assert len(receiver.received) == 2 and alive.active


def test_the_deliver_task_returns_within_its_budget(crm, purpose, dead_sockets, settings):
    settings.RENOTIFY_WEBHOOK_BUDGET = 1.0
    for _ in range(8):
        endpoint_at(crm, url_of(dead_sockets()))
    record(MemberFactory(country="US"), Action.OBJECT, purpose)
    webhook_events_dispatch()

    started = time.monotonic()
    done = webhooks_deliver_due()
    elapsed = time.monotonic() - started

    # A request starts only while one more (up to twice the timeout) fits the budget:
    # two of 0.3 s fit in 1 s, or one on a slow machine; the rest wait for the next run.
    assert elapsed <= 1.0 + 0.3, elapsed
    assert done["failed"] in (1, 2) and done["failed"] + done["postponed"] == 8
    due_again = WebhookDelivery.objects.filter(next_attempt_at__lte=timezone.now())
    assert due_again.count() == done["postponed"]


@pytest.fixture
def sam(purpose):
    """Sam, in the US, was sent the notice an hour ago."""
    return sent_delivery(email="sam@example.com", locale="en", sent_ago=timedelta(hours=1))


@pytest.fixture
def dead_endpoint_with_a_backlog(crm, purpose, dead_sockets, sam):
    """An endpoint that never answers, with three of Sam's choices waiting for it."""
    listener = dead_sockets()
    endpoint_at(crm, url_of(listener))
    for action in (Action.OBJECT, Action.WITHDRAW_OBJECTION, Action.OPT_IN):
        record(sam.member, action, purpose)
    webhook_events_dispatch()
    assert WebhookDelivery.objects.count() == 3
    return listener


def test_a_dead_endpoint_does_not_slow_the_notice_page(
    dead_endpoint_with_a_backlog, sam, purpose, receipts_inline, settings
):
    settings.RENOTIFY_WEBHOOK_TIMEOUT = 3.0
    url = f"/n/{tokens.notice_token(sam.pk)}/"
    started = time.monotonic()
    response = post_form(
        Client(enforce_csrf_checks=True), url, action="object", purpose=purpose.slug
    )
    assert time.monotonic() - started < 3.0  # less than one request to the endpoint
    assert response.status_code == 302 and ConsentEvent.objects.count() == 4
    assert connections_waiting(dead_endpoint_with_a_backlog) == 0


def test_a_dead_endpoint_does_not_slow_the_api(dead_endpoint_with_a_backlog, settings):
    settings.RENOTIFY_WEBHOOK_TIMEOUT = 3.0
    _, key = api_client_create(name="reader", scopes=["campaigns:read"], by=None)
    started = time.monotonic()
    response = Client().get(
        f"/api/v1/campaigns/{campaign().pk}/reach", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200 and time.monotonic() - started < 3.0
    assert connections_waiting(dead_endpoint_with_a_backlog) == 0


# --- The admin ------------------------------------------------------------------------------


def test_staff_register_an_endpoint_and_see_its_secret_once(crm, client):
    ines = staff_user("ines", "api.manage_apiclient", "api.view_webhookendpoint")
    client.force_login(ines)
    response = client.post(
        reverse("admin:api_webhookendpoint_add"),
        {"client": crm.pk, "url": "https://crm.example/hooks"},
        follow=True,
    )
    [message] = [str(m) for m in response.context["messages"] if "whsec_" in str(m)]
    endpoint = crm.endpoints.get()
    assert endpoint.secret.startswith("whsec_") and endpoint.secret in message
    assert endpoint.created_by == ines
    listing = client.get(reverse("admin:api_webhookendpoint_changelist")).content.decode()
    page = client.get(reverse("admin:api_webhookendpoint_change", args=[endpoint.pk]))
    assert endpoint.secret not in listing + page.content.decode()


def test_staff_without_the_permission_cannot_register_an_endpoint(crm, client):
    client.force_login(staff_user("vic", "api.view_webhookendpoint", "api.add_webhookendpoint"))
    response = client.post(
        reverse("admin:api_webhookendpoint_add"), {"client": crm.pk, "url": "https://x.example/"}
    )
    assert response.status_code == 403 and not crm.endpoints.exists()


def test_an_http_url_elsewhere_is_refused_in_the_form(crm, client):
    client.force_login(staff_user("ines", "api.manage_apiclient"))
    response = client.post(
        reverse("admin:api_webhookendpoint_add"), {"client": crm.pk, "url": "http://crm.example/"}
    )
    assert response.status_code == 200 and "use https://" in response.content.decode()
    assert not crm.endpoints.exists()


def test_a_delivery_shows_its_attempts_in_the_admin(crm, purpose, receiver, client):
    receiver.answers = [503]
    delivery = a_delivery_to(endpoint_at(crm, receiver.url), purpose)
    webhook_deliveries_send_due()
    client.force_login(staff_user("val", "api.view_webhookdelivery"))
    page = client.get(reverse("admin:api_webhookdelivery_change", args=[delivery.pk]))
    assert page.status_code == 200 and "503" in page.content.decode()
    listing = client.get(reverse("admin:api_webhookdelivery_changelist") + "?state__exact=pending")
    assert "preference.changed" in listing.content.decode()


def test_beat_runs_both_webhook_tasks_every_few_seconds(settings):
    from celery import current_app

    entries = {e["task"]: e["schedule"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    for name in ("api.tasks.webhooks_dispatch", "api.tasks.webhooks_deliver_due"):
        assert name in current_app.tasks and entries[name] == settings.RENOTIFY_WEBHOOK_SECONDS
