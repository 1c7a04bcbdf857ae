"""Celery entry points for accounts: thin wrappers around services."""

import logging

from celery import shared_task

from accounts.services.ledger_checks import ledger_check_run

logger = logging.getLogger(__name__)


@shared_task
def ledger_verify() -> int:
    """Nightly (beat) verification of the consent ledger; returns the LedgerCheck id."""
    check = ledger_check_run()
    if check.intact:
        logger.info("consent ledger intact: %d events", check.events_checked)
    else:
        logger.error("consent ledger BROKEN at event %s: %s", check.first_broken_seq, check.detail)
    return check.pk
