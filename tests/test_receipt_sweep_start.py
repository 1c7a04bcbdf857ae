"""Deploying receipts on a database with history emails none of the past objectors."""

import importlib

import pytest
from django.apps import apps
from django.core import mail
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import Action, ConsentEvent, Source
from accounts.services.consent import consent_record
from campaigns.models import ReceiptSweep
from campaigns.services import receipts
from pages.services import preference_choose
from tests.factories import MemberFactory

BEFORE_RECEIPT_SWEEP = ("campaigns", "0006_delivery_fillfactor")


def page_objection(member, purpose):
    preference_choose(
        member=member, purpose=purpose, choice="object", delivery=None, ip=None, user_agent=""
    )


def migrate(*targets):
    executor = MigrationExecutor(connection)
    executor.migrate(list(targets))


@pytest.mark.django_db(transaction=True)
def test_an_upgrade_starts_the_sweep_at_the_ledger_head_and_mails_only_new_objectors(purpose):
    """Ada and Bob objected before receipts were deployed; Cy objects after."""
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("campaigns")
    migrate(BEFORE_RECEIPT_SWEEP)
    try:
        ada, bob, cy = MemberFactory.create_batch(3, country="US")
        page_objection(ada, purpose)
        page_objection(bob, purpose)
    finally:
        migrate(*latest)

    assert ReceiptSweep.objects.get().last_seq == ConsentEvent.objects.order_by("-seq")[0].seq
    assert receipts.receipts_send().sent == 0 and mail.outbox == []
    page_objection(cy, purpose)
    assert receipts.receipts_send().sent == 1
    assert [m.to for m in mail.outbox] == [[cy.email]]


@pytest.mark.django_db
def test_a_fresh_database_starts_the_sweep_at_zero_and_an_existing_sweep_is_kept(purpose):
    migration = importlib.import_module("campaigns.migrations.0011_receipt_sweep_start")
    assert ReceiptSweep.objects.get().last_seq == 0  # the test database was migrated empty

    member = MemberFactory(country="US")
    consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=purpose)
    migration.receipt_sweep_start(apps, None)
    assert ReceiptSweep.objects.get().last_seq == 0  # the sweep's own row stands

    ReceiptSweep.objects.all().delete()
    migration.receipt_sweep_start(apps, None)
    assert ReceiptSweep.objects.get().last_seq == ConsentEvent.objects.get().seq
