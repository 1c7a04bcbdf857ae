"""A Redis that accepts connections and never answers (a hung server, a half-open
connection): what members and ESPs send is answered promptly and kept; the kick that
would wake a worker is given up (logged) and beat's sweep does the work later."""

import logging
import os
import runpy
import socket
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from accounts.models import Action, ConsentEvent, Source
from campaigns import enqueue, tokens
from campaigns.enqueue import PerProcessKick
from campaigns.models import DeliveryEvent
from config.celery import app
from tests.factories import sent_delivery
from tests.test_webhooks import post as webhook_post

pytestmark = pytest.mark.django_db

# A request that still waits after this long would have been killed by gunicorn's
# 30 s timeout in production; here the listener lets go sooner, so that a regression
# fails the test instead of hanging the suite.
HANG_SECONDS = 8
ANSWERED_WITHIN = 2.0


class HungServer:
    """Accepts TCP connections on a free port and never reads or answers; after
    ``hang_seconds`` it closes them all and stops listening."""

    def __init__(self, hang_seconds: float) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._deadline = time.monotonic() + hang_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self._held.append(connection)
        for connection in self._held:
            connection.close()
        self.listener.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def settings_for(redis_url: str) -> dict:
    """The settings config/settings.py builds for this REDIS_URL (in a fresh namespace)."""
    path = Path(django_settings.BASE_DIR) / "config" / "settings.py"
    previous = os.environ.get("REDIS_URL")
    os.environ["REDIS_URL"] = redis_url
    try:
        return runpy.run_path(str(path))
    finally:
        if previous is None:
            del os.environ["REDIS_URL"]
        else:
            os.environ["REDIS_URL"] = previous


@pytest.fixture
def hung_redis(settings, monkeypatch):
    """Cache and broker configured as the project does, pointed at a hung Redis."""
    server = HungServer(HANG_SECONDS)
    built = settings_for(f"redis://127.0.0.1:{server.port}/0")
    settings.CACHES = built["CACHES"]
    for name, value in built.items():
        if name.startswith("RENOTIFY_") and name.endswith("_TIMEOUT"):
            setattr(settings, name, value)
        if name.startswith("CELERY_"):
            monkeypatch.setitem(app.conf, name.removeprefix("CELERY_").lower(), value)
    # Celery keeps the pools it makes (a countdown looks at the producer pool's transport):
    # those made here, for the hung server, are dropped afterwards.
    monkeypatch.setattr(app, "_pool", None)
    monkeypatch.setattr(app.amqp, "_producer_pool", None)
    # Kicks are due (another test may just have kicked in this process).
    monkeypatch.setattr(enqueue, "receipts_kicks", PerProcessKick(enqueue.KICK_SECONDS))
    monkeypatch.setattr(enqueue, "events_kicks", PerProcessKick(enqueue.KICK_SECONDS))
    yield server
    server.stop()


@pytest.fixture
def delivery(purpose):
    return sent_delivery(email="sam@example.com", locale="en", sent_ago=timezone.timedelta(hours=1))


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_an_objection_is_answered_and_recorded_while_redis_hangs(
    hung_redis, delivery, purpose, caplog, django_capture_on_commit_callbacks
):
    browser = Client(enforce_csrf_checks=True)
    url = f"/n/{tokens.notice_token(delivery.pk)}/"
    form = browser.get(url).cookies["csrftoken"].value
    data = {"csrfmiddlewaretoken": form, "action": "object", "purpose": "ai-training"}

    def objection():
        with django_capture_on_commit_callbacks(execute=True):  # the receipt kick, as at commit
            return browser.post(url, data)

    with caplog.at_level(logging.WARNING):
        response, seconds = timed(objection)

    assert response.status_code == 302, response.content
    assert seconds < ANSWERED_WITHIN, f"answered after {seconds:.1f} s"
    assert hung_redis.accepted >= 2  # the rate limit and the kick both tried Redis
    event = ConsentEvent.objects.get()
    assert (event.action, event.source, event.purpose) == (
        Action.OBJECT,
        Source.PREFERENCE_PAGE,
        purpose,
    )
    confirmation = browser.get(response["Location"])
    assert confirmation.status_code == 200 and 'role="status"' in confirmation.content.decode()
    kick_warnings = [r for r in caplog.records if r.name == "campaigns.enqueue"]
    assert [r.levelno for r in kick_warnings] == [logging.WARNING]


def test_a_webhook_is_answered_and_its_event_stored_while_redis_hangs(
    hung_redis, delivery, caplog, django_capture_on_commit_callbacks
):
    def webhook():
        with django_capture_on_commit_callbacks(execute=True):
            return webhook_post("postmark/delivery", delivery)

    with caplog.at_level(logging.WARNING):
        response, seconds = timed(webhook)

    assert response.status_code == 200, response.content
    assert seconds < ANSWERED_WITHIN, f"answered after {seconds:.1f} s"
    assert DeliveryEvent.objects.count() == 1
    assert [r.levelno for r in caplog.records if r.name == "campaigns.enqueue"] == [logging.WARNING]


def test_webhooks_with_redis_down_are_all_answered_and_stored(
    delivery, settings, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    """Nothing listens on the broker's port: every webhook still answers 200."""
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    built = settings_for(f"redis://127.0.0.1:{port}/0")
    monkeypatch.setitem(app.conf, "broker_url", built["CELERY_BROKER_URL"])
    monkeypatch.setattr(app, "_pool", None)
    monkeypatch.setattr(app.amqp, "_producer_pool", None)
    monkeypatch.setattr(enqueue, "events_kicks", PerProcessKick(0.0))  # every request kicks
    statuses = []
    with caplog.at_level(logging.WARNING):
        for name in ["postmark/delivery", "postmark/open", "postmark/bounce_hard"]:
            with django_capture_on_commit_callbacks(execute=True):
                statuses.append(webhook_post(name, delivery).status_code)
    assert statuses == [200, 200, 200]
    assert DeliveryEvent.objects.count() == 3
    # the first failure pauses this process's kicks: the ESP's next requests do not wait
    assert len([r for r in caplog.records if r.name == "campaigns.enqueue"]) == 1


def test_kicks_pause_after_a_failure_and_resume_after_the_pause(monkeypatch):
    published: list[str] = []

    def publish(name, *, countdown=None):
        published.append(name)
        return len(published) > 1  # the broker is down for the first one only

    monkeypatch.setattr("campaigns.enqueue.quick_publish", publish)
    kick = PerProcessKick(0.0, pause=0.2)
    assert [kick.kick("task"), kick.kick("task")] == [False, False]
    assert published == ["task"]
    time.sleep(0.25)
    assert kick.kick("task") is True and published == ["task", "task"]
