"""Celery entry points for accounts: thin wrappers around services."""

import logging

from celery import shared_task

from accounts.models import LedgerCheck
from accounts.services.ledger_checks import ledger_check_run, ledger_head_check_run
from accounts.services.suppression_feed import suppression_feed_catch_up, suppression_feed_sync

logger = logging.getLogger(__name__)


@shared_task
def ledger_verify() -> int:
    """Nightly (beat) verification of the whole consent ledger; returns the LedgerCheck id."""
    return _logged(ledger_check_run())


@shared_task
def ledger_head_verify() -> int:
    """Frequent (beat) check of the events since the last verified head; returns the
    LedgerCheck id."""
    return _logged(ledger_head_check_run())


def _logged(check: LedgerCheck) -> int:
    if check.intact:
        logger.info(
            "consent ledger intact (%s check): %d events, head %d",
            check.kind,
            check.events_checked,
            check.head_seq,
        )
    else:
        logger.error("consent ledger BROKEN at event %s: %s", check.first_broken_seq, check.detail)
    return check.pk


@shared_task
def suppression_feed_catch_up_task() -> int:
    """Frequent (beat): the suppression feed's entries for the choices recorded since
    the last run; returns the entries appended."""
    return suppression_feed_catch_up()


@shared_task
def suppression_feed_reconcile() -> int:
    """Frequent (beat) full comparison of every member's effective state with the
    suppression feed; returns the entries appended (0 unless a sync was missed)."""
    appended = suppression_feed_sync()
    if appended:
        logger.warning("suppression feed reconcile appended %d missed entries", appended)
    return appended
