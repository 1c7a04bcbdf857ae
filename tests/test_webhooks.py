"""Real ESP payloads, posted through the real webhook URLs with basic auth."""

import json
from base64 import b64decode, b64encode
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import EmailStatus
from campaigns.models import CampaignState, Delivery, DeliveryEvent, DeliveryStatus
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.tracking import events_process
from tests.factories import MemberFactory, campaign

pytestmark = pytest.mark.django_db

PAYLOADS = Path(__file__).parent / "webhook_payloads"
GOOD = "test:webhook-secret"

# esp folder -> (URL, content type)
ESP = {
    "postmark": ("/anymail/postmark/tracking/", "application/json"),
    "sendgrid": ("/anymail/sendgrid/tracking/", "application/json"),
    "mailgun": ("/anymail/mailgun/tracking/", "application/json"),
    "amazon_ses": ("/anymail/amazon_ses/tracking/", "text/plain; charset=UTF-8"),
}
UNSUBSCRIBED = "unsubscribed"
# What the member is left with: (the address's health, unsubscribed). A complaint is both
# a fact about the address and the member's unsubscribe.
MEMBER_AFTER = {
    EmailStatus.OK: (EmailStatus.OK, False),
    EmailStatus.BOUNCED: (EmailStatus.BOUNCED, False),
    EmailStatus.COMPLAINED: (EmailStatus.COMPLAINED, True),
    UNSUBSCRIBED: (EmailStatus.OK, True),
}
# (fixture, delivery status after processing, what the member is left with)
CASES = [
    ("postmark/delivery", DeliveryStatus.DELIVERED, EmailStatus.OK),
    ("postmark/bounce_hard", DeliveryStatus.BOUNCED, EmailStatus.BOUNCED),
    ("postmark/bounce_soft", DeliveryStatus.DEFERRED, EmailStatus.OK),
    ("postmark/bounce_transient", DeliveryStatus.DEFERRED, EmailStatus.OK),
    ("postmark/spam_complaint", DeliveryStatus.COMPLAINED, EmailStatus.COMPLAINED),
    ("postmark/open", DeliveryStatus.OPENED, EmailStatus.OK),
    (
        "postmark/subscription_change_unsubscribe",
        DeliveryStatus.DELIVERED,
        UNSUBSCRIBED,
    ),
    ("sendgrid/delivered", DeliveryStatus.DELIVERED, EmailStatus.OK),
    ("sendgrid/deferred", DeliveryStatus.DEFERRED, EmailStatus.OK),
    ("sendgrid/bounce", DeliveryStatus.BOUNCED, EmailStatus.BOUNCED),
    ("sendgrid/bounce_blocked", DeliveryStatus.DEFERRED, EmailStatus.OK),
    ("sendgrid/dropped", DeliveryStatus.REJECTED, EmailStatus.OK),
    ("sendgrid/spamreport", DeliveryStatus.COMPLAINED, EmailStatus.COMPLAINED),
    ("sendgrid/unsubscribe", DeliveryStatus.DELIVERED, UNSUBSCRIBED),
    ("mailgun/delivered", DeliveryStatus.DELIVERED, EmailStatus.OK),
    ("mailgun/failed_permanent_bounce", DeliveryStatus.BOUNCED, EmailStatus.BOUNCED),
    ("mailgun/failed_temporary", DeliveryStatus.DEFERRED, EmailStatus.OK),
    ("mailgun/complained", DeliveryStatus.COMPLAINED, EmailStatus.COMPLAINED),
    ("amazon_ses/sns_delivery", DeliveryStatus.DELIVERED, EmailStatus.OK),
    ("amazon_ses/sns_bounce_permanent", DeliveryStatus.BOUNCED, EmailStatus.BOUNCED),
    ("amazon_ses/sns_bounce_transient", DeliveryStatus.DEFERRED, EmailStatus.OK),
    ("amazon_ses/sns_complaint", DeliveryStatus.COMPLAINED, EmailStatus.COMPLAINED),
]


@pytest.fixture(autouse=True)
def esp_settings(settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "WEBHOOK_SECRET": [GOOD],
        "MAILGUN_WEBHOOK_SIGNING_KEY": "TEST_WEBHOOK_SIGNING_KEY",
        "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": False,
    }
    settings.RENOTIFY_WEBHOOK_ESPS = list(ESP)


@pytest.fixture
def delivery():
    MemberFactory(email="pat@example.com", country="US")
    c = campaign(state=CampaignState.SENDING)
    campaign_fan_out(campaign=c)
    d = Delivery.objects.select_related("member").get()
    Delivery.objects.filter(pk=d.pk).update(
        status=DeliveryStatus.SENT,
        sent_at=timezone.now() - timedelta(minutes=5),
        esp_message_id="0a129aee-e1cd-480d-b08d-4f48548ff48d",
    )
    return d


def body(name: str, delivery: Delivery) -> str:
    raw = (PAYLOADS / f"{name}.json").read_text()
    return (
        raw.replace("{{delivery_id}}", str(delivery.pk))
        .replace(
            "{{message_id}}", delivery.esp_message_id or "0a129aee-e1cd-480d-b08d-4f48548ff48d"
        )
        .replace("{{recipient}}", delivery.member.email)
    )


def post(name: str, delivery: Delivery, auth: str | None = GOOD):
    esp = name.split("/")[0]
    url, content_type = ESP[esp]
    data = body(name, delivery)
    headers = {}
    if auth is not None:
        headers["HTTP_AUTHORIZATION"] = "Basic " + b64encode(auth.encode()).decode()
    if esp == "amazon_ses":
        sns = json.loads(data)
        headers["HTTP_X_AMZ_SNS_MESSAGE_TYPE"] = sns["Type"]
        headers["HTTP_X_AMZ_SNS_MESSAGE_ID"] = sns["MessageId"]
    return Client(enforce_csrf_checks=True).post(
        url, data=data, content_type=content_type, **headers
    )


@pytest.mark.parametrize(("name", "status", "email_status"), CASES)
def test_documented_payload_moves_the_delivery(delivery, name, status, email_status):
    delivery.esp_message_id = Delivery.objects.get(pk=delivery.pk).esp_message_id
    response = post(name, delivery)
    assert response.status_code == 200, response.content
    events_process()
    delivery.refresh_from_db()
    delivery.member.refresh_from_db()
    member = delivery.member
    assert (delivery.status, member.email_status, member.unsubscribed_at is not None) == (
        status,
        *MEMBER_AFTER[email_status],
    )
    assert DeliveryEvent.objects.filter(delivery=delivery).exists()


def test_a_sendgrid_batch_is_stored_with_one_row_per_distinct_event(delivery):
    assert post("sendgrid/batch_all_events", delivery).status_code == 200
    assert DeliveryEvent.objects.count() == 9  # the docs reuse one event id for two examples
    events_process()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.COMPLAINED


def test_replaying_the_same_posts_adds_nothing(delivery):
    for name in ("postmark/delivery", "postmark/bounce_hard", "sendgrid/batch_all_events"):
        post(name, delivery)
    stored = DeliveryEvent.objects.count()
    for name in ("postmark/delivery", "postmark/bounce_hard", "sendgrid/batch_all_events"):
        assert post(name, delivery).status_code == 200
    assert DeliveryEvent.objects.count() == stored


DELIVERED_PAYLOAD = {
    "postmark": "postmark/delivery",
    "sendgrid": "sendgrid/delivered",
    "mailgun": "mailgun/delivered",
    "amazon_ses": "amazon_ses/sns_delivery",
}


@pytest.mark.parametrize("esp", list(DELIVERED_PAYLOAD))
@pytest.mark.parametrize("auth", [None, "test:wrong", "someone:webhook-secret"])
def test_bad_or_missing_credentials_are_refused_and_nothing_is_stored(delivery, esp, auth):
    name = DELIVERED_PAYLOAD[esp]
    response = post(name, delivery, auth=auth)
    assert response.status_code in (400, 401)
    assert not DeliveryEvent.objects.exists()


def test_secrets_can_be_rotated(delivery, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": ["new:secret-2", GOOD]}
    assert post("postmark/delivery", delivery, auth=GOOD).status_code == 200
    assert post("postmark/bounce_hard", delivery, auth="new:secret-2").status_code == 200
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": ["new:secret-2"]}
    assert post("postmark/open", delivery, auth=GOOD).status_code == 400
    assert DeliveryEvent.objects.count() == 2


def test_a_mailgun_payload_with_a_forged_signature_is_refused(delivery, caplog):
    data = json.loads(body("mailgun/delivered", delivery))
    data["signature"]["signature"] = "0" * 64
    response = Client().post(
        "/anymail/mailgun/tracking/",
        data=json.dumps(data),
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + b64encode(GOOD.encode()).decode(),
    )
    assert response.status_code == 400
    # One WARNING line, no traceback: an attacker decides how many of these there are.
    assert [r.levelname for r in caplog.records if r.levelno >= 30] == ["WARNING"]
    assert all(r.exc_info is None for r in caplog.records)
    assert not DeliveryEvent.objects.exists()


def test_an_unparseable_payload_is_kept_and_answered_200(delivery):
    response = Client().post(
        "/anymail/postmark/tracking/",
        data="{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + b64encode(GOOD.encode()).decode(),
    )
    assert response.status_code == 200
    kept = DeliveryEvent.objects.get()
    assert (kept.event_type, kept.is_orphan, kept.raw) == ("unparsed", True, {"body": "{not json"})


def test_an_event_for_another_systems_mail_is_an_orphan(delivery):
    stranger = Delivery(pk=999_999, esp_message_id="not-ours")
    stranger.member = delivery.member
    post("postmark/delivery", stranger)
    report = events_process()
    assert report.orphans == 1
    assert DeliveryEvent.objects.get().is_orphan
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT


def test_ses_subscription_confirmation_makes_no_event(delivery):
    assert post("amazon_ses/sns_subscription_confirmation", delivery).status_code == 200
    assert not DeliveryEvent.objects.exists()


def basic(auth: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + b64encode(auth.encode()).decode()}


@pytest.mark.parametrize("auth", ["test:wrong", None])
def test_ses_checks_credentials_before_it_reads_the_body(delivery, auth):
    """anymail's SES view parses the SNS JSON before basic auth: a JSON array with wrong
    credentials was kept as an "unparseable payload" and answered 200."""
    junk = json.dumps([{"x": "y" * 1000}] * 10)
    headers = basic(auth) if auth else {}
    response = Client().post(
        "/anymail/amazon_ses/tracking/",
        data=junk,
        content_type="text/plain; charset=UTF-8",
        HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification",
        **headers,
    )
    assert response.status_code == (400 if auth else 401)
    assert not DeliveryEvent.objects.exists()


def test_ses_asks_for_credentials_as_sns_needs(delivery):
    response = post("amazon_ses/sns_delivery", delivery, auth=None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize("esp", list(DELIVERED_PAYLOAD))
def test_a_refused_request_logs_one_warning_without_a_traceback(delivery, esp, caplog):
    caplog.set_level("INFO")
    response = post(DELIVERED_PAYLOAD[esp], delivery, auth="test:wrong")
    assert response.status_code == 400
    assert [r.levelname for r in caplog.records if r.levelno >= 30] == ["WARNING"]
    assert all(r.exc_info is None for r in caplog.records)


def test_only_configured_esps_accept_events(delivery, settings):
    settings.RENOTIFY_WEBHOOK_ESPS = ["postmark"]
    assert post("postmark/delivery", delivery).status_code == 200
    assert post("sendgrid/delivered", delivery).status_code == 404
    assert post("amazon_ses/sns_delivery", delivery).status_code == 404
    assert DeliveryEvent.objects.count() == 1


def test_webhooks_refuse_everything_while_no_secret_is_set(delivery, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": []}
    assert post("postmark/delivery", delivery).status_code == 400
    assert post("postmark/delivery", delivery, auth=None).status_code == 401
    assert not DeliveryEvent.objects.exists()


def test_our_own_errors_are_500_not_unparseable_payloads(delivery, monkeypatch):
    """Only anymail's parse failures are the ESP's fault; a bug of ours must be retried."""
    from campaigns import webhooks

    def broken(event, esp):
        raise KeyError("a bug in our receiver")

    monkeypatch.setattr(webhooks, "event_row", broken)
    client = Client(raise_request_exception=False)
    response = client.post(
        "/anymail/postmark/tracking/",
        data=body("postmark/delivery", delivery),
        content_type="application/json",
        **basic(GOOD),
    )
    assert response.status_code == 500
    assert not DeliveryEvent.objects.exists()


def test_a_body_with_nul_bytes_is_kept_whole(delivery):
    raw = b'{"RecordType": "Deli\x00very"' + b"\x00" + b"}"
    response = Client().post(
        "/anymail/postmark/tracking/", data=raw, content_type="application/json", **basic(GOOD)
    )
    assert response.status_code == 200
    kept = DeliveryEvent.objects.get()
    assert kept.event_type == "unparsed"
    assert b64decode(kept.raw["body_base64"]) == raw
    # the same body again is a duplicate, not a second row or an error
    again = Client().post(
        "/anymail/postmark/tracking/", data=raw, content_type="application/json", **basic(GOOD)
    )
    assert again.status_code == 200
    assert DeliveryEvent.objects.count() == 1


def test_a_stream_of_posts_kicks_one_processor_to_run_after_the_seconds_commits(
    delivery, monkeypatch, django_capture_on_commit_callbacks
):
    """At most one kick a second per process, and the processor it asks for runs a second
    later, so the events stored after the kick (its own are never kicked) are in by then:
    the end of a stream never waits for beat's sweep."""
    from campaigns import enqueue

    asked = []
    monkeypatch.setattr(enqueue, "events_kicks", enqueue.PerProcessKick(enqueue.KICK_SECONDS))
    monkeypatch.setattr(
        enqueue, "quick_publish", lambda name, *, countdown=None: asked.append((name, countdown))
    )
    for name in ("postmark/delivery", "postmark/open"):
        with django_capture_on_commit_callbacks(execute=True):
            assert post(name, delivery).status_code == 200
    assert DeliveryEvent.objects.count() == 2
    assert asked == [(enqueue.EVENTS_PROCESS, enqueue.KICK_SECONDS)]
