"""The Celery set-up works end to end: JSON messages over Redis to a real worker on PostgreSQL."""

import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from celery import current_app
from django.conf import settings
from kombu import Connection

from accounts.models import Action, LedgerCheck, Source
from accounts.services.consent import consent_record
from accounts.tasks import ledger_head_verify, ledger_verify
from tests.factories import MemberFactory, ai_training
from tests.integration.conftest import celery_worker, wait_for, worker_env

# A Redis database no other test or benchmark uses (the benchmarks use 5-14).
PRIVATE_BROKER_DB = 15


def redis_url_with_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


pytestmark = pytest.mark.integration


def test_worker_verifies_the_ledger_it_shares_with_the_web(worker):
    purpose = ai_training()
    for country in ("US", "BR", "GB"):
        consent_record(
            member=MemberFactory(country=country),
            action=Action.OBJECT,
            source=Source.PREFERENCE_PAGE,
            purpose=purpose,
        )

    ledger_verify.apply_async(queue=worker)

    wait_for(LedgerCheck.objects.exists, timeout=30, what="the ledger check")
    check = LedgerCheck.objects.get()
    assert (check.intact, check.events_checked, check.head_seq) == (True, 3, 3)


def test_a_worker_started_without_queues_runs_both_the_bulk_and_the_default_queue(
    services, transactional_db, tmp_path
):
    """Production's plain ``celery worker`` (no -Q) must consume the bulk queue too, or a
    deployment that never heard of it would send nothing. The broker is a Redis database
    of this test's own, so the real queue names cannot meet another run's messages."""
    broker = redis_url_with_db(settings.REDIS_URL, PRIVATE_BROKER_DB)
    redis.Redis.from_url(broker).flushdb()
    assert current_app.amqp.router.route({}, "accounts.tasks.ledger_verify")["queue"].name == (
        "bulk"
    )
    env = worker_env(tmp_path, CELERY_BROKER_URL=broker)
    try:
        with celery_worker(env, tmp_path / "worker.log"):  # no -Q: as production starts it
            with Connection(broker) as connection:
                ledger_verify.apply_async(connection=connection)  # routed to "bulk"
                ledger_head_verify.apply_async(connection=connection)  # the default queue
            wait_for(
                lambda: LedgerCheck.objects.count() == 2, timeout=30, what="both ledger checks"
            )
            # A queue bound with the other's routing key would be handed each message too.
            time.sleep(2)
    finally:
        redis.Redis.from_url(broker).flushdb()
    assert sorted(LedgerCheck.objects.values_list("kind", flat=True)) == ["full", "head"]
