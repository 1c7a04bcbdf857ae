"""Evidence packs in the console: asking for one, watching it build, downloading the exact
bytes (audited), retrying a failed one; who may do which."""

import hashlib

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from audit.models import Action as AuditAction
from audit.models import StaffAction
from console.roles import ROLES, roles_sync
from evidence.models import EvidencePack, PackState
from evidence.selectors import pack_bytes
from evidence.services.build import evidence_pack_build
from evidence.services.packs import evidence_pack_claim, evidence_pack_progress
from tests.evidence_helpers import sent_campaign
from tests.factories import staff_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent():
    return sent_campaign()


def signed_in(user) -> Client:
    client = Client(enforce_csrf_checks=False)
    client.force_login(user)
    return client


def page(client: Client, campaign) -> str:
    response = client.get(reverse("console:evidence", args=[campaign.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_bob_asks_for_a_pack_and_watches_it_build(sent, django_capture_on_commit_callbacks):
    bob = signed_in(sent.bob)
    with django_capture_on_commit_callbacks(execute=False):
        response = bob.post(reverse("console:evidence_request", args=[sent.campaign.pk]))
    assert response.status_code == 302
    pack = EvidencePack.objects.get()
    shown = page(bob, sent.campaign)
    assert "waiting for a worker" in shown and "data-live" in shown
    assert 'http-equiv="refresh"' in shown  # without JavaScript, the page reloads itself
    claim = evidence_pack_claim(pack_id=pack.pk)
    evidence_pack_progress(claim=claim, rows_done=3, rows_total=12)
    fragment = bob.get(reverse("console:evidence_progress", args=[sent.campaign.pk]))
    assert "3 of 12 rows (25%)" in fragment.content.decode()
    assert "data-live" in fragment.content.decode()


def test_the_campaign_page_links_to_its_packs(sent):
    shown = signed_in(sent.bob).get(reverse("console:campaign", args=[sent.campaign.pk]))
    assert reverse("console:evidence", args=[sent.campaign.pk]) in shown.content.decode()


@pytest.fixture
def ready(sent):
    pack = EvidencePack.objects.create(campaign=sent.campaign, requested_by=sent.bob)
    assert evidence_pack_build(pack_id=pack.pk, part_bytes=4096)
    pack.refresh_from_db()
    return pack


def test_a_download_streams_the_exact_bytes_and_is_audited_first(sent, ready):
    response = signed_in(sent.bob).get(reverse("console:evidence_download", args=[ready.pk]))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == f'attachment; filename="{ready.file_name}"'
    body = b"".join(response.streaming_content)
    assert body == b"".join(pack_bytes(pack=ready)) and len(body) == ready.size_bytes
    assert hashlib.sha256(body).hexdigest() == ready.zip_sha256
    entry = StaffAction.objects.get(action=AuditAction.DOWNLOAD)
    assert entry.by == sent.bob and entry.target_id == str(sent.campaign.pk)
    assert entry.detail["sha256sums_sha256"] == ready.sums_sha256
    assert entry.detail["pack"] == ready.pk


def test_the_page_shows_the_digest_to_compare_a_copy_with(sent, ready):
    shown = page(signed_in(sent.bob), sent.campaign)
    assert ready.sums_sha256 in shown and "Ready" in shown
    assert reverse("console:evidence_download", args=[ready.pk]) in shown
    assert "data-live" not in shown


def test_a_pack_not_ready_is_not_downloaded(sent):
    pack = EvidencePack.objects.create(campaign=sent.campaign, requested_by=sent.bob)
    response = signed_in(sent.bob).get(reverse("console:evidence_download", args=[pack.pk]))
    assert response.status_code == 409
    assert not StaffAction.objects.filter(action=AuditAction.DOWNLOAD).exists()


def test_a_failed_build_shows_failed_with_a_retry_that_works(sent, monkeypatch):
    pack = EvidencePack.objects.create(campaign=sent.campaign, requested_by=sent.bob)
    from evidence.services import build

    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build.selectors, "pack_members", broken)
    with pytest.raises(RuntimeError):
        evidence_pack_build(pack_id=pack.pk)
    monkeypatch.undo()
    bob = signed_in(sent.bob)
    shown = page(bob, sent.campaign)
    retry = reverse("console:evidence_retry", args=[pack.pk])
    assert "Failed" in shown and "RuntimeError: disk full" in shown and retry in shown
    assert bob.post(retry).status_code == 302
    pack.refresh_from_db()
    assert pack.state == PackState.REQUESTED
    assert evidence_pack_build(pack_id=pack.pk)
    assert "Ready" in page(bob, sent.campaign)


def test_a_get_never_requests_a_pack(sent):
    response = signed_in(sent.bob).get(reverse("console:evidence_request", args=[sent.campaign.pk]))
    assert response.status_code == 405 and not EvidencePack.objects.exists()


def test_the_request_form_needs_its_csrf_token(sent):
    client = Client(enforce_csrf_checks=True)
    client.force_login(sent.bob)
    response = client.post(reverse("console:evidence_request", args=[sent.campaign.pk]))
    assert response.status_code == 403 and not EvidencePack.objects.exists()


@pytest.mark.parametrize("role", list(ROLES))
def test_only_approvers_and_administrators_request_and_download(sent, ready, role):
    roles_sync()
    user = staff_user(f"a-{role.lower()}")
    user.groups.add(Group.objects.get(name=role))
    client = signed_in(user)
    may = role in ("Approver", "Administrator")
    shown = page(client, sent.campaign)
    assert (reverse("console:evidence_request", args=[sent.campaign.pk]) in shown) == may
    assert (reverse("console:evidence_download", args=[ready.pk]) in shown) == may
    client.post(reverse("console:evidence_request", args=[sent.campaign.pk]))
    assert EvidencePack.objects.count() == (2 if may else 1)
    download = client.get(reverse("console:evidence_download", args=[ready.pk]))
    assert download.status_code == (200 if may else 403)
    recorded = StaffAction.objects.filter(by=user).exclude(action=AuditAction.LOGIN)
    assert sorted(recorded.values_list("action", flat=True)) == (
        sorted([AuditAction.DOWNLOAD, AuditAction.EVIDENCE_PACK_REQUEST]) if may else []
    )
