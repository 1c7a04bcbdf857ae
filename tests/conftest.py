"""Shared fixtures and the services policy.

Integration tests need PostgreSQL + Redis (``DATABASE_URL``/``REDIS_URL``). They
skip on a machine without them, unless ``RENOTIFY_REQUIRE_SERVICES=1``, which
turns every skip of the run into a failure (CI sets it, so nothing that must
run there can quietly skip).
"""

import os

import pytest
from django.conf import settings
from django.db import connection

from tests.clock import at_the_start_of_a_rate_window
from tests.factories import ai_training
from tests.ledger_helpers import flush_with_ledger_unlocked

REQUIRE_SERVICES = os.environ.get("RENOTIFY_REQUIRE_SERVICES") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_SERVICES and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped, but RENOTIFY_REQUIRE_SERVICES=1 forbids skips: {reason}"


@pytest.fixture(scope="session", autouse=True)
def _flushable_ledger():
    """Transactional tests end with a flush, which the ledger's triggers would refuse."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            connection.ops,
            "execute_sql_flush",
            flush_with_ledger_unlocked(connection.ops.execute_sql_flush),
        )
        yield


@pytest.fixture
def services():
    """Skip (or fail, see above) unless PostgreSQL and Redis are configured."""
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        pytest.skip("needs DATABASE_URL=postgres://... and REDIS_URL=redis://...")


@pytest.fixture
def fresh_rate_window():
    """Counted hits all fall in one rate-limit window (see tests/clock.py)."""
    with at_the_start_of_a_rate_window():
        yield


@pytest.fixture
def purpose(db):
    return ai_training()


@pytest.fixture(autouse=True)
def _isolated_settings(settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.LEDGER_HMAC_KEY = "test-ledger-key-0123456789-abcdefghijklmnopqrstuvwxyz"
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": ["test:webhook-secret"]}
    settings.RENOTIFY_WEBHOOK_ESPS = ["postmark", "sendgrid", "mailgun", "amazon_ses"]
    # Tests that are not about the sign-in log staff in with force_login (a password
    # session): with DEBUG off the default, "required", would send each of them to the
    # code step. tests/test_staff_two_factor.py sets "required" and tests that.
    settings.RENOTIFY_STAFF_2FA = "optional"


@pytest.fixture(autouse=True)
def _fresh_process_copies():
    """Per-process copies of purposes, frozen texts and notice page skeletons: each
    test's database differs
    (rolled back between tests, which no save signal reports)."""
    from config import cache

    cache.clear_all()
    yield
    cache.clear_all()


@pytest.fixture
def receipts_inline(monkeypatch):
    """Run the receipt sender in-process whenever an objection commits (no throttle),
    as a worker would."""
    from campaigns import enqueue
    from campaigns.services import receipts

    def publish(name, *, countdown=None):
        if name == enqueue.RECEIPTS_SEND:
            receipts.receipts_send()
        return True

    monkeypatch.setattr(enqueue, "receipts_kicks", enqueue.PerProcessKick(0.0))
    monkeypatch.setattr(enqueue, "quick_publish", publish)
