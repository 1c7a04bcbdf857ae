"""A real Celery worker process on the real broker and database, stopped by pid."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the test database pytest-django created, for other processes."""
    db = connection.settings_dict
    user = db["USER"] or "postgres"
    return f"postgres://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a worker process: the test database, Redis, production mode."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "LEDGER_HMAC_KEY": settings.LEDGER_HMAC_KEY,
        "ANYMAIL_WEBHOOK_SECRET": "test:webhook-secret",
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "0",
        "RENOTIFY_VAR_DIR": str(var_dir),
        **extra,
    }


@contextmanager
def celery_worker(env: dict[str, str], log_path: Path, *options: str) -> Iterator[None]:
    """A real ``celery worker`` (solo pool, ``options`` added, e.g. ``-Q name``) in a process
    group of its own, until it says it is ready; stopped by pid on the way out."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool=solo",
        *options,
        "--without-mingle",
        "--without-gossip",
        "--loglevel=INFO",
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for(
                lambda: "ready." in log_path.read_text(),
                timeout=60,
                what="worker start",
                process=process,
            )
            yield
        finally:
            stop(process)


@pytest.fixture
def worker(services, transactional_db, tmp_path):
    """Start ``celery worker`` on a queue of its own; yield the queue name; stop it by pid."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    with celery_worker(worker_env(tmp_path), tmp_path / "worker.log", "-Q", queue):
        yield queue


def wait_for(condition, *, timeout: float, what: str, process=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop(process: subprocess.Popen) -> None:
    """TERM the worker's process group, KILL it if it lingers: never leave it running."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
