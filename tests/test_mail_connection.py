"""Sending through an HTTP ESP (django-anymail's Postmark backend) to a local fake.

The sender's session reads the environment's proxy settings once per chunk, not once
per message (config.mail.connection_open); a proxy named in the environment must
still carry every message."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests.sessions

from campaigns.models import CampaignState, Delivery
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.sending import campaign_send_chunk
from tests.factories import MemberFactory, campaign

pytestmark = pytest.mark.django_db


class FakePostmark(BaseHTTPRequestHandler):
    """Answers every POST as Postmark's send API does; remembers what it was sent."""

    received: list[tuple[str, dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakePostmark.received.append((self.path, body))
        answer = json.dumps(
            {
                "To": body["To"],
                "SubmittedAt": "2026-12-07T12:00:00Z",
                "MessageID": f"pm-{len(FakePostmark.received)}",
                "ErrorCode": 0,
                "Message": "OK",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):  # the test's output stays quiet
        return


@pytest.fixture
def fake_postmark():
    FakePostmark.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePostmark)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def postmark(settings):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "test-token"}
    settings.RENOTIFY_SEND_BATCH = 5
    return settings


@pytest.fixture
def environment_reads(monkeypatch):
    """How many times requests looked up proxies in the environment."""
    calls = []
    real = requests.sessions.get_environ_proxies

    def counted(url, no_proxy=None):
        calls.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", counted)
    return calls


def sending_campaign(members: int):
    MemberFactory.create_batch(members)
    c = campaign(state=CampaignState.SENDING, throttle_per_minute=60_000)
    campaign_fan_out(campaign=c)
    return c


def test_a_chunk_reads_the_environment_once_and_every_message_reaches_the_esp(
    postmark, fake_postmark, environment_reads, monkeypatch
):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    postmark.ANYMAIL = {**postmark.ANYMAIL, "POSTMARK_API_URL": f"{fake_postmark}/"}
    c = sending_campaign(members=12)

    outcome = campaign_send_chunk(campaign_id=c.pk)

    assert outcome.sent == 12
    assert len(environment_reads) == 1
    paths = {path for path, _body in FakePostmark.received}
    assert paths == {"/email"}
    deliveries = Delivery.objects.filter(campaign=c)
    assert sorted(body["To"] for _p, body in FakePostmark.received) == sorted(
        deliveries.values_list("member__email", flat=True)
    )
    message_ids = {
        header["Value"]
        for _p, body in FakePostmark.received
        for header in body["Headers"]
        if header["Name"] == "Message-ID"
    }
    assert message_ids == {
        f"<d{d.pk}.c{c.pk}@{postmark.RENOTIFY_MESSAGE_ID_DOMAIN}>" for d in deliveries
    }
    assert set(deliveries.values_list("status", flat=True)) == {"sent"}
    assert {d.esp_message_id for d in deliveries} == {f"pm-{n}" for n in range(1, 13)}


def test_a_proxy_named_in_the_environment_still_carries_every_message(
    postmark, fake_postmark, monkeypatch
):
    # The ESP's address does not resolve: only the proxy (the fake) can deliver.
    postmark.ANYMAIL = {**postmark.ANYMAIL, "POSTMARK_API_URL": "http://esp.invalid/"}
    monkeypatch.setenv("HTTP_PROXY", fake_postmark)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    c = sending_campaign(members=7)

    outcome = campaign_send_chunk(campaign_id=c.pk)

    assert outcome.sent == 7
    # A proxy is asked for the absolute URL.
    assert [path for path, _body in FakePostmark.received] == ["http://esp.invalid/email"] * 7
    assert set(Delivery.objects.filter(campaign=c).values_list("status", flat=True)) == {"sent"}
