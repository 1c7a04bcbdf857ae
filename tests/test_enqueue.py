"""Asking for work: services publish through ``campaigns.enqueue`` only, and only once
their transaction commits, so a worker never looks for rows that are not there yet and
a change rolled back asks for nothing."""

import ast
from pathlib import Path

import pytest
from celery import current_app
from django.db import transaction
from django.utils import timezone

from campaigns import enqueue
from campaigns.models import CampaignState, Delivery, DeliveryStatus
from campaigns.services import lifecycle
from campaigns.services.fanout import campaign_fan_out
from campaigns.services.reconcile import deliveries_resend, delivery_resend
from campaigns.tasks import campaigns_start_due
from tests.factories import MemberFactory, campaign, staff_user

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
PUBLISHING_CALLS = {"delay", "apply_async", "send_task", "apply", "signature"}


@pytest.fixture
def published(monkeypatch):
    """The tasks published, by name and arguments; none is sent to a broker."""
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(
        current_app, "send_task", lambda name, args=(), **options: sent.append((name, args))
    )
    return sent


def links(published) -> list[tuple[int, int]]:
    """The sender chains' links published: (campaign, slot), each with its chain."""
    assert all(name == enqueue.CAMPAIGN_SEND and len(args[2]) == 16 for name, args in published)
    return [(campaign_id, slot) for _name, (campaign_id, slot, _chain) in published]


@pytest.fixture
def operator(db):
    return staff_user("olga", "campaigns.operate_campaign", "campaigns.resend_delivery")


def paused_campaign_with(members: int):
    MemberFactory.create_batch(members)
    c = campaign(state=CampaignState.SENDING)
    campaign_fan_out(campaign=c)
    c.state = CampaignState.PAUSED
    c.save(update_fields=["state"])
    return c


def test_a_resume_starts_the_senders_once_it_commits(
    operator, published, settings, django_capture_on_commit_callbacks
):
    settings.RENOTIFY_SENDERS_PER_CAMPAIGN = 2
    c = paused_campaign_with(3)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.campaign_resume(campaign=c, by=operator)
        assert published == []  # nothing before the commit
    assert links(published) == [(c.pk, 0), (c.pk, 1)]


def test_a_resume_rolled_back_asks_for_nothing(
    operator, published, django_capture_on_commit_callbacks
):
    c = paused_campaign_with(1)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                lifecycle.campaign_resume(campaign=c, by=operator)
                raise RuntimeError("the caller's next step failed")
        except RuntimeError:
            pass
    assert callbacks == [] and published == []


def test_a_resend_starts_one_sender_per_campaign_for_what_it_made_pending(
    operator, published, django_capture_on_commit_callbacks
):
    first, second = paused_campaign_with(2), paused_campaign_with(1)
    Delivery.objects.update(status=DeliveryStatus.UNKNOWN)
    Delivery.objects.filter(campaign=second).update(status=DeliveryStatus.DELIVERED)
    with django_capture_on_commit_callbacks(execute=True):
        resent = deliveries_resend(deliveries=Delivery.objects.all(), by=operator)
    assert resent == 2
    assert links(published) == [(first.pk, 0)]
    assert set(Delivery.objects.filter(campaign=first).values_list("status", flat=True)) == {
        DeliveryStatus.PENDING
    }


def test_resending_one_delivery_starts_a_sender_for_its_campaign(
    operator, published, django_capture_on_commit_callbacks
):
    c = paused_campaign_with(1)
    Delivery.objects.update(status=DeliveryStatus.FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery_resend(delivery=Delivery.objects.get(), by=operator)
        assert not delivery_resend(delivery=Delivery.objects.get(), by=operator)  # pending now
    assert links(published) == [(c.pk, 0)]


def test_start_due_fans_out_each_started_campaign_after_the_commit(
    published, django_capture_on_commit_callbacks, alice_and_bob_scheduled
):
    with django_capture_on_commit_callbacks(execute=True):
        started = campaigns_start_due()
    assert published == [(enqueue.CAMPAIGN_FAN_OUT, (pk,)) for pk in started] and started


@pytest.fixture
def alice_and_bob_scheduled(db):
    """A campaign Alice wrote, Bob approved and Alice scheduled for now."""
    from campaigns.services.lifecycle import (
        campaign_approve,
        campaign_schedule,
        campaign_submit,
    )
    from tests.factories import CAMPAIGN_APPROVER, CAMPAIGN_EDITOR

    alice = staff_user("alice", *CAMPAIGN_EDITOR, "campaigns.operate_campaign")
    bob = staff_user("bob", *CAMPAIGN_APPROVER)
    c = campaign()
    campaign_submit(campaign=c, by=alice)
    campaign_approve(campaign=c, by=bob)
    return campaign_schedule(campaign=c, by=alice, starts_at=timezone.now())


def _publishing_calls(path: Path) -> list[str]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        attribute = getattr(node, "func", None) if isinstance(node, ast.Call) else None
        if isinstance(attribute, ast.Attribute) and attribute.attr in PUBLISHING_CALLS:
            calls.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.func.attr}()")
    return calls


def test_enqueue_is_the_only_module_that_publishes():
    """Celery's publishing calls appear nowhere in the app's code but campaigns.enqueue."""
    found = []
    for package in ("accounts", "campaigns", "config", "pages", "evidence", "console"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path != ROOT / "campaigns" / "enqueue.py" and "migrations" not in path.parts:
                found += _publishing_calls(path)
    assert found == []
    assert _publishing_calls(ROOT / "campaigns" / "enqueue.py")  # the check sees calls


def test_every_task_enqueue_names_is_a_task_the_workers_know():
    """Publishing by name: a renamed task would otherwise be published to nobody."""
    from campaigns import tasks  # noqa: F401  (registers the tasks, as a worker does)
    from evidence import tasks as evidence_tasks  # noqa: F401

    named = (
        enqueue.CAMPAIGN_SEND,
        enqueue.CAMPAIGN_FAN_OUT,
        enqueue.RECEIPTS_SEND,
        enqueue.EVENTS_PROCESS,
        enqueue.EVIDENCE_PACK_BUILD,
    )
    assert [name for name in named if name not in current_app.tasks] == []
