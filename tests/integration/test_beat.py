"""A second beat is harmless: one holds the lock in Redis and schedules; the other waits."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.integration.conftest import ROOT, stop, wait_for, worker_env
from tests.integration.support import _queue_remove

pytestmark = pytest.mark.integration

# Beat as production runs it, with one fast job on a queue of the test's own, so
# that every message either beat publishes can be counted.
BEAT_MAIN = """\
import sys
from config.celery import app
queue, schedule_file = sys.argv[1], sys.argv[2]
app.conf.task_default_queue = queue
app.conf.task_routes = {}  # the bulk queue too: every task to the test's own
app.conf.beat_schedule = {
    "tick": {"task": "campaigns.tasks.delivery_events_process", "schedule": 1.0},
}
app.start(["beat", "--loglevel=INFO", "--schedule", schedule_file])
"""
INTERVAL = 1.0
LOCK_SECONDS = 4


class Beat:
    def __init__(
        self, name: str, *, queue: str, prefix: str, log_dir: Path, redis_url: str = ""
    ) -> None:
        self.log = log_dir / f"beat-{name}.log"
        env = worker_env(
            log_dir,
            RENOTIFY_BEAT_KEY_PREFIX=prefix,
            RENOTIFY_BEAT_LOCK_SECONDS=str(LOCK_SECONDS),
            **({"REDIS_URL": redis_url} if redis_url else {}),
        )
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", BEAT_MAIN, queue, str(log_dir / f"schedule-{name}")],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def sent(self) -> int:
        return self.log.read_text().count("Sending due task tick")


@pytest.fixture
def beats(services, tmp_path):
    queue = f"renotify-test-beat-{uuid.uuid4().hex[:10]}"
    prefix = f"renotify-test-beat-{uuid.uuid4().hex[:10]}"
    started: list[Beat] = []

    def start(name: str) -> Beat:
        beat = Beat(name, queue=queue, prefix=prefix, log_dir=tmp_path)
        started.append(beat)
        return beat

    def published() -> int:
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            return client.llen(queue)
        finally:
            client.close()

    try:
        yield start, published
    finally:
        for beat in started:
            stop(beat.process)
        _queue_remove(queue)
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


def test_two_beats_publish_each_tick_once(beats):
    start, published = beats
    first, second = start("first"), start("second")
    wait_for(lambda: first.sent() + second.sent() >= 3, timeout=60, what="the first ticks")
    began, at_start = time.monotonic(), published()
    time.sleep(10)
    elapsed, ticks = time.monotonic() - began, published() - at_start

    assert min(first.sent(), second.sent()) == 0, "both beats scheduled"
    assert ticks <= elapsed / INTERVAL + 2, f"{ticks} messages in {elapsed:.1f}s"
    assert ticks >= elapsed / INTERVAL - 3


def test_the_waiting_beat_takes_over_when_the_active_one_dies(beats):
    start, _ = beats
    first = start("first")
    wait_for(lambda: first.sent() >= 2, timeout=60, what="the first beat's ticks")
    second = start("second")
    time.sleep(3)
    assert second.sent() == 0
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    wait_for(lambda: second.sent() >= 2, timeout=LOCK_SECONDS * 5, what="the take-over")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own on a spare port, restartable; never the shared one."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.workdir = free_port(), workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self._answers, timeout=20, what="the private Redis", process=self.process)

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


def test_a_waiting_beat_survives_a_redis_restart_and_still_takes_over(services, tmp_path):
    private = PrivateRedis(tmp_path)
    private.start()
    started: list[Beat] = []
    try:

        def start(name: str) -> Beat:
            beat = Beat(
                name,
                queue="renotify-test-beat",
                prefix="renotify-test-beat:",
                log_dir=tmp_path,
                redis_url=private.url,
            )
            started.append(beat)
            return beat

        first = start("first")
        wait_for(lambda: first.sent() >= 2, timeout=60, what="the first beat's ticks")
        second = start("second")
        time.sleep(3)  # the second is waiting for the lock
        private.stop()
        time.sleep(2)
        private.start()
        time.sleep(3)
        assert second.process.poll() is None, second.log.read_text()[-3000:]

        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
        already = second.sent()
        wait_for(
            lambda: second.sent() >= already + 2,
            timeout=LOCK_SECONDS * 10,
            what="the take-over after the restart",
        )
    finally:
        for beat in started:
            stop(beat.process)
        private.stop()
