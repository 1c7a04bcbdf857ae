"""RabbitMQ as the Celery broker: quorum queues, the bulk route, countdowns, fast kicks.

Needs ``RABBITMQ_URL`` (``amqp://user:password@host:5672/<vhost>``) naming a vhost that
only this test run uses: its "celery" and "bulk" queues are emptied first. The worker
and the publisher are processes of their own started with ``CELERY_BROKER_URL`` set to
it, so the settings under test are the ones production reads at start-up (this test
process keeps the Redis broker of the rest of the suite).
"""

import os
import subprocess
import sys
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from amqp.exceptions import NotFound, PreconditionFailed
from kombu import Connection

from accounts.models import LedgerCheck
from tests.integration.conftest import ROOT, stop, wait_for, worker_env

pytestmark = pytest.mark.integration

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "")
WORKER = (sys.executable, "-m", "celery", "-A", "config", "worker")
COUNTDOWN = 4  # seconds: long enough to see that nothing runs before it

# Published from a child process with the worker's environment: a task routed to "bulk",
# a countdown task on the default queue (the sender chain's way), and a kick.
PUBLISH = f"""
import time, django
django.setup()
from campaigns import enqueue
from celery import current_app
print("route", current_app.amqp.router.route({{}}, enqueue.CAMPAIGN_SEND)["queue"].name)
enqueue.task_publish("accounts.tasks.ledger_verify")
enqueue.task_publish("accounts.tasks.ledger_head_verify", countdown={COUNTDOWN})
print("published", time.time())
print("kick", enqueue.quick_publish(enqueue.EVENTS_PROCESS))
"""

KICK = """
import time, django
django.setup()
from campaigns import enqueue
started = time.monotonic()
print("kick", enqueue.quick_publish(enqueue.EVENTS_PROCESS), time.monotonic() - started)
"""


@pytest.fixture
def rabbitmq(services):
    if not RABBITMQ_URL.startswith("amqp://"):
        pytest.skip("needs RABBITMQ_URL=amqp://user:password@host:5672/<a vhost of its own>")
    with Connection(RABBITMQ_URL, connect_timeout=5) as connection:
        for name in ("celery", "bulk"):
            with suppress(NotFound):  # not declared yet: the worker declares it
                connection.channel().queue_purge(name)
    return RABBITMQ_URL


def run_python(code: str, env: dict[str, str]) -> dict[str, str]:
    """Run ``code`` in a child process; its ``key value...`` lines as a dict."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """A plain ``celery worker`` (no -Q: both queues), as production starts one."""
    with log_path.open("w") as log:
        return subprocess.Popen(
            [*WORKER, "--pool=solo", "--without-mingle", "--without-gossip", "--loglevel=INFO"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_a_worker_on_rabbitmq_runs_bulk_and_countdown_tasks_from_quorum_queues(
    rabbitmq, transactional_db, tmp_path
):
    env = worker_env(tmp_path, CELERY_BROKER_URL=rabbitmq)
    log_path = tmp_path / "worker.log"
    process = start_worker(env, log_path)
    try:
        wait_for(lambda: "ready." in log_path.read_text(), timeout=60, what="worker start")
        published = run_python(PUBLISH, env)
        sent_at = float(published["published"])
        wait_for(LedgerCheck.objects.exists, timeout=30, what="the bulk task")
        # The countdown task is held by RabbitMQ (native delayed delivery), not by the
        # worker: it has not even been received before its time.
        assert "ledger_head_verify[" not in log_path.read_text()
        wait_for(lambda: LedgerCheck.objects.count() == 2, timeout=60, what="the countdown task")
        log = log_path.read_text()
    finally:
        stop(process)
    assert published["route"] == "bulk"
    assert published["kick"] == "True"
    assert sorted(LedgerCheck.objects.values_list("kind", flat=True)) == ["full", "head"]
    head = LedgerCheck.objects.get(kind="head")
    assert head.checked_at.timestamp() >= sent_at + COUNTDOWN - 0.5
    assert "Direct exchanges are not supported" not in log
    for name in ("celery", "bulk"):
        assert queue_is_quorum(rabbitmq, name)


def queue_is_quorum(url: str, name: str) -> bool:
    """True if queue ``name`` exists and is a quorum queue: declaring it again as a
    classic queue is refused (PRECONDITION_FAILED), declaring it as quorum is not."""
    with Connection(url, connect_timeout=5) as connection:
        declare = {"durable": True, "auto_delete": False}
        connection.channel().queue_declare(name, arguments={"x-queue-type": "quorum"}, **declare)
        try:
            connection.channel().queue_declare(name, **declare)
        except PreconditionFailed:
            return True
    return False


def test_a_kick_to_an_unreachable_rabbitmq_fails_fast(services, tmp_path):
    """A web request's kick gives up within its timeout on a vhost that refuses it and on
    a port where nothing listens, and never raises."""
    if not RABBITMQ_URL.startswith("amqp://"):
        pytest.skip("needs RABBITMQ_URL=amqp://user:password@host:5672/<a vhost of its own>")
    parts = urlsplit(RABBITMQ_URL)
    for broker in (
        urlunsplit(parts._replace(path="/renotify-no-such-vhost")),
        urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:9")),
    ):
        env = worker_env(tmp_path, CELERY_BROKER_URL=broker, RENOTIFY_KICK_TIMEOUT="0.5")
        kicked, seconds = run_python(KICK, env)["kick"].split()
        assert kicked == "False"
        assert float(seconds) < 2
