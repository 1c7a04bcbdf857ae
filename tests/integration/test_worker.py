"""The Celery set-up works end to end: JSON messages over Redis to a real worker on PostgreSQL."""

import pytest

from accounts.models import Action, LedgerCheck, Source
from accounts.services.consent import consent_record
from accounts.tasks import ledger_verify
from tests.factories import MemberFactory, ai_training
from tests.integration.conftest import wait_for

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
