"""Real components around a campaign send, shared by the campaign integration tests.

- ``smtp_sink``: an aiosmtpd server on a free local port that keeps every message
  it accepts, as the bytes a mail client would get;
- ``SendingWorker``: a real ``celery worker`` whose *default* queue is a queue of
  its own, so the sender chain's re-enqueues (``apply_async`` without a queue)
  come back to it and never reach another worker on the shared Redis;
- ``multilingual_campaign``: members in several locales and a campaign taken
  through the real lifecycle services up to "scheduled".
"""

import asyncio
import email
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from email import policy
from email.message import EmailMessage
from pathlib import Path

import redis
from aiosmtpd.controller import Controller
from django.conf import settings
from django.utils import timezone

from accounts.jurisdictions import jurisdiction_for
from accounts.models import Member
from campaigns.models import Campaign, Notice, NoticeText, NoticeVersion
from campaigns.services.lifecycle import (
    campaign_approve,
    campaign_create,
    campaign_schedule,
    campaign_submit,
)
from tests.factories import CAMPAIGN_APPROVER, CAMPAIGN_EDITOR, staff_user
from tests.integration.conftest import ROOT, stop, wait_for, worker_env

# --- The SMTP sink ------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One message as the SMTP server accepted it."""

    connection: int
    envelope_to: tuple[str, ...]
    content: bytes

    def parsed(self) -> EmailMessage:
        return email.message_from_bytes(self.content, policy=policy.default)


class SmtpSink:
    """Accepts every message; ``delay`` seconds per message make a slow server."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.received: list[Received] = []
        self.connections = 0
        self._lock = threading.Lock()
        self.port = _free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd calls it by name
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            if not hasattr(session, "renotify_connection"):
                self.connections += 1
                session.renotify_connection = self.connections
            self.received.append(
                Received(session.renotify_connection, tuple(envelope.rcpt_tos), envelope.content)
            )
        return "250 OK: kept"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def smtp_sink(*, delay: float = 0.0) -> Iterator[SmtpSink]:
    """A running SmtpSink, stopped however the block ends."""
    sink = SmtpSink(delay=delay)
    # aiosmtpd logs every command at INFO; thousands of messages would drown the output.
    mail_log = logging.getLogger("mail.log")
    level = mail_log.level
    mail_log.setLevel(logging.WARNING)
    sink._controller.start()
    try:
        yield sink
    finally:
        sink._controller.stop()
        mail_log.setLevel(level)


# --- The worker ---------------------------------------------------------------------

# The project's settings do not name a default queue; setting it before the worker
# starts routes every ``delay()``/``apply_async()`` made inside the worker to its queue.
WORKER_MAIN = """\
import sys
from config.celery import app
queue = sys.argv[1]
app.conf.task_default_queue = queue
app.conf.task_routes = {}  # the bulk queue too: every task to the test's own
app.conf.worker_enable_remote_control = False
app.worker_main(["worker", "--pool=solo", "-Q", queue, "--without-mingle",
                 "--without-gossip", "--loglevel=INFO"])
"""


class SendingWorker:
    """A ``celery worker`` subprocess in a process group of its own, on its own queue.

    It can be started again after ``kill()`` (each run logs to a file of its own);
    ``stop()`` ends it by pid and removes its queue, unacknowledged messages of
    killed runs included, from the shared Redis.
    """

    def __init__(self, *, log_dir: Path, env: dict[str, str]) -> None:
        self.queue = f"renotify-test-{uuid.uuid4().hex[:10]}"
        self.log_dir = log_dir
        self.env = worker_env(log_dir, **env)
        self.runs = 0
        self.process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"worker-{self.runs}.log"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.runs += 1
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WORKER_MAIN, self.queue],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(
            lambda: "ready." in self.log_path.read_text(),
            timeout=60,
            what="worker start",
            process=self.process,
        )

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown handler, no ack, no cleanup."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
        _queue_remove(self.queue)

    def logs(self) -> str:
        return "".join(
            (self.log_dir / f"worker-{run}.log").read_text() for run in range(1, self.runs + 1)
        )

    def task_lines(self, task: str, event: str) -> int:
        """How many "Task <task>[id] <event>" lines the worker logged, over all runs."""
        return sum(
            1
            for line in self.logs().splitlines()
            if f"Task {task}[" in line and f"] {event}" in line
        )

    def idle(self) -> bool:
        """This run finished every task message it received, and none waits in the queue."""
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            waiting = client.llen(self.queue)
        finally:
            client.close()
        log = self.log_path.read_text()
        return waiting == 0 and log.count("] received") == log.count("] succeeded in ")


@contextmanager
def sending_worker(*, log_dir: Path, env: dict[str, str]) -> Iterator[SendingWorker]:
    """A started SendingWorker, stopped by pid (and its queue removed) however the block ends."""
    worker = SendingWorker(log_dir=log_dir, env=env)
    try:
        worker.start()
        yield worker
    except BaseException:
        print(f"--- worker log (last lines) ---\n{worker.logs()[-6000:]}")
        raise
    finally:
        worker.stop()


def _queue_remove(queue: str) -> None:
    """Delete ``queue``'s lists and binding and the messages a killed worker left unacked.

    Redis would otherwise hand those back to ``queue`` after the visibility timeout,
    where no worker will ever read them.
    """
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        bindings = [f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
        client.delete(*client.scan_iter(match=f"{queue}*"), *bindings)
        for tag, payload in client.hscan_iter("unacked"):
            _message, _exchange, routing_key = json.loads(payload)
            if routing_key == queue:
                client.pipeline().hdel("unacked", tag).zrem("unacked_index", tag).execute()
    finally:
        client.close()


# --- The campaign -------------------------------------------------------------------

SUBJECTS = {
    "en": "How we will use your data to train AI",
    "de": "Wie wir Ihre Daten für das Training von KI nutzen werden",
    "fr": "Comment nous utiliserons vos données pour entraîner une IA",
}
DEFAULT_LOCALE = "fr"
# Member locale -> the text they must get: their own, their language's, else the default.
EXPECTED_LOCALE = {"en": "en", "de": "de", "fr": "fr", "de-AT": "de", "es": DEFAULT_LOCALE}


def members_create(count: int) -> list[Member]:
    """``count`` members cycling through EXPECTED_LOCALE's locales, in one bulk insert."""
    locales = list(EXPECTED_LOCALE)
    now = timezone.now()
    return Member.objects.bulk_create(
        Member(
            external_id=f"member-{n:05d}",
            email=f"member-{n:05d}@example.org",
            locale=locales[n % len(locales)],
            country="GB",
            jurisdiction=jurisdiction_for("GB"),
            created_at=now,
            updated_at=now,
        )
        for n in range(count)
    )


def multilingual_campaign(*, throttle_per_minute: int) -> Campaign:
    """A campaign for everyone, written by Alice and approved by Bob, scheduled for now."""
    alice = staff_user("alice", *CAMPAIGN_EDITOR)
    bob = staff_user("bob", *CAMPAIGN_APPROVER)
    version = NoticeVersion.objects.create(
        notice=Notice.objects.create(title="AI training"),
        default_locale=DEFAULT_LOCALE,
        effective_date=date(2027, 3, 1),
        objection_deadline=date(2027, 2, 15),
        last_edited_by=alice,
    )
    for locale, subject in SUBJECTS.items():
        NoticeText.objects.create(
            version=version,
            locale=locale,
            subject=subject,
            body_markdown=f"Notice text [{locale}]: we will train models on *your* posts.",
        )
    campaign = campaign_create(
        by=alice,
        name="AI training notice",
        notice_version=version,
        throttle_per_minute=throttle_per_minute,
        starts_at=timezone.now(),
    )
    campaign_submit(campaign=campaign, by=alice)
    campaign_approve(campaign=campaign, by=bob)
    return campaign_schedule(campaign=campaign, by=bob)
