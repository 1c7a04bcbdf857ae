"""An evidence pack of a generated campaign: every file checked against the database,
the documented verification (sha256sum and verify.py, run as a regulator would) passing
on the pack and catching a changed row, and the build's claim, lease, failure and retry."""

import hashlib
import subprocess
import sys
from datetime import UTC, timedelta

import pytest
from celery import current_app
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts.models import ConsentEvent
from audit.models import Action as AuditAction
from audit.models import StaffAction
from campaigns import enqueue
from campaigns.models import CampaignTransition, Delivery
from campaigns.rendering import compile_message
from evidence import selectors
from evidence.models import (
    EvidencePack,
    EvidencePackPart,
    ImmutableEvidenceError,
    PackState,
)
from evidence.services import build
from evidence.services.build import evidence_pack_build
from evidence.services.packs import (
    AUTOMATIC_ATTEMPTS,
    PackRefused,
    evidence_pack_claim,
    evidence_pack_request,
    evidence_pack_retry,
    evidence_packs_resume,
    pack_is_stalled,
)
from evidence.tasks import evidence_pack_build_task
from tests.evidence_helpers import csv_rows, manifest, pack_zip, sent_campaign, texts_of
from tests.factories import campaign as draft_campaign

pytestmark = pytest.mark.django_db
SMALL_PARTS = 2048  # several parts even for a small campaign


@pytest.fixture
def sent():
    return sent_campaign()


@pytest.fixture
def published(monkeypatch):
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(
        current_app, "send_task", lambda name, args=(), **options: sent.append((name, args))
    )
    return sent


@pytest.fixture
def built(sent):
    pack = evidence_pack_request(campaign=sent.campaign, by=sent.bob)
    assert evidence_pack_build(pack_id=pack.pk, part_bytes=SMALL_PARTS)
    pack.refresh_from_db()
    return pack


def test_the_pack_says_what_the_database_says(sent, built):
    archive = pack_zip(built)
    c = sent.campaign
    about = manifest(archive)
    assert about["campaign"]["name"] == c.name and about["campaign"]["id"] == c.pk
    assert about["approval"]["approved_by"] == "bob"
    assert about["approval"]["approved_text_sha256"] == c.approved_text_hashes
    assert [(t["from"], t["to"], t["by"]) for t in about["transitions"]] == [
        (t.from_state, t.to_state, t.by.username if t.by else None)
        for t in CampaignTransition.objects.filter(campaign=c).order_by("at", "pk")
    ]
    assert about["pack"]["requested_by"] == "bob" and about["pack"]["renotify_version"]
    assert built.parts > 1 and built.size_bytes == sum(
        len(p) for p in selectors.pack_bytes(pack=built)
    )


def test_every_version_sent_is_there_with_its_stored_and_approved_hashes(sent, built):
    archive = pack_zip(built)
    c = sent.campaign
    versions = {v["id"]: v for v in manifest(archive)["notice_versions"]}
    assert set(versions) == {c.notice_version_id, sent.second_version.pk}
    for version in (c.notice_version, sent.second_version):
        for text in texts_of(version):
            folder = f"notices/{version.pk}/{text.locale}/"
            digest = hashlib.sha256(archive.read(folder + "text.json")).hexdigest()
            assert (
                digest == text.sha256 == versions[version.pk]["texts"][text.locale]["stored_sha256"]
            )
            message = compile_message(version, text.locale, reminder=False)
            assert archive.read(folder + "subject.txt").decode() == message.subject
            assert archive.read(folder + "body.html").decode() == message.html
            assert archive.read(folder + "body.txt").decode() == message.text
            reminder = compile_message(version, text.locale, reminder=True)
            assert archive.read(folder + "reminder-body.txt").decode() == reminder.text
    approved = versions[c.notice_version_id]["approved_text_sha256"]
    assert approved == {t.locale: t.sha256 for t in texts_of(c.notice_version)}
    assert versions[sent.second_version.pk]["approved_text_sha256"] is None


def test_members_csv_has_one_row_per_member_as_the_database_has_it(sent, built):
    rows = {row["external_id"]: row for row in csv_rows(pack_zip(built), "members.csv")}
    assert set(rows) == set(sent.members)  # the outsider joined after the fan-out
    c = sent.campaign
    for key, member in sent.members.items():
        row = rows[key]
        deliveries = Delivery.objects.filter(campaign=c, member=member).order_by("wave")
        wave0 = deliveries[0]
        assert row["jurisdiction"] == member.jurisdiction and row["locale"] == member.locale
        assert row["waves"] == ";".join(str(d.wave) for d in deliveries)
        assert row["status"] == wave0.status
        assert row["esp_message_ids"] == ";".join(d.esp_message_id for d in deliveries)
        assert row["sent_at"] == _utc(wave0.sent_at)
    assert rows["us-en"]["notice_versions"] == str(sent.second_version.pk)
    assert rows["uk-en"]["notice_versions"] == str(c.notice_version_id)
    assert rows["uk-en"]["acknowledged_at"] == _event_time("uk-en", "acknowledge")
    assert rows["uk-en"]["first_opened_at"] and rows["uk-en"]["delivered_at"]
    assert rows["de-de"]["objected_at"] == _event_time("de-de", "object")
    assert rows["at-de"]["objected_at"] == _event_time("at-de", "object")  # in the app
    assert rows["fr-fr"]["channels"] == "email;in_app"
    assert rows["fr-fr"]["served_in_app_at"] == _event_time("fr-fr", "serve")
    assert rows["fr-fr"]["acknowledged_at"] == _event_time("fr-fr", "acknowledge")
    assert rows["fr-fr"]["delivered_at"] == "" and rows["fr-fr"]["status"] == "bounced"
    assert (rows["us-en"]["acknowledged_at"], rows["us-en"]["objected_at"]) == ("", "")
    assert rows["ie-en"]["objected_at"] == ""  # an unsubscribe is not an objection
    counts = manifest(pack_zip(built))["counts"]
    assert counts == {
        "members": 6,
        "deliveries": 8,
        "sent": 6,
        "delivered": 3,
        "opened": 2,
        "acknowledged": 2,
        "objected": 2,
        "served_in_app": 1,
        "reached": 4,
    }


def test_the_ledger_slice_is_the_members_events_with_their_chain(sent, built):
    archive = pack_zip(built)
    rows = csv_rows(archive, "ledger.csv")
    theirs = ConsentEvent.objects.filter(member__in=sent.members.values()).order_by("seq")
    assert [int(r["seq"]) for r in rows] == [e.seq for e in theirs]
    for row, event in zip(rows, theirs, strict=True):
        assert (row["hash"], row["prev_hash"], row["action"]) == (
            event.hash,
            event.prev_hash,
            event.action,
        )
        assert row["member_external_id"] == event.member.external_id
        assert row["created_at"] == event.created_at.isoformat()
    assert "outsider" not in {r["member_external_id"] for r in rows}
    ledger = manifest(archive)["ledger"]
    head = ConsentEvent.objects.order_by("-seq").first()
    assert ledger["verification"]["intact"] is True
    assert ledger["verification"]["head"] == {"seq": head.seq, "hash": head.hash}
    assert ledger["slice"]["events"] == len(rows)
    assert ledger["slice"]["last_seq"] <= ledger["verification"]["head"]["seq"]


def test_sha256sums_covers_every_file_and_its_digest_is_on_the_pack(built):
    archive = pack_zip(built)
    sums = archive.read("SHA256SUMS").decode().splitlines()
    listed = dict(reversed(line.split("  ", 1)) for line in sums)
    assert set(listed) == set(archive.namelist()) - {"SHA256SUMS"}
    for name, digest in listed.items():
        assert hashlib.sha256(archive.read(name)).hexdigest() == digest, name
    assert built.sums_sha256 == hashlib.sha256(archive.read("SHA256SUMS")).hexdigest()
    whole = b"".join(selectors.pack_bytes(pack=built))
    assert built.zip_sha256 == hashlib.sha256(whole).hexdigest()


def _run(args, cwd):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)


def test_the_documented_checks_pass_and_catch_one_changed_row(built, tmp_path):
    pack_zip(built).extractall(tmp_path)
    verify = [sys.executable, "verify.py", "--sums-sha256", built.sums_sha256]
    assert _run(["sha256sum", "-c", "SHA256SUMS"], tmp_path).returncode == 0
    passed = _run(verify, tmp_path)
    assert passed.returncode == 0, passed.stdout
    assert "PACK VERIFIED" in passed.stdout and "FAILED" not in passed.stdout

    members = tmp_path / "members.csv"
    lines = members.read_text().splitlines(keepends=True)
    changed = next(i for i, line in enumerate(lines) if line.startswith("de-de,"))
    lines[changed] = lines[changed].replace("email", "in_app", 1)  # one cell of one row
    members.write_text("".join(lines))
    checked = _run(["sha256sum", "-c", "SHA256SUMS"], tmp_path)
    assert checked.returncode == 1 and "members.csv: FAILED" in checked.stdout
    caught = _run(verify, tmp_path)
    assert caught.returncode == 1
    assert "FAILED  members.csv does not have the SHA-256 listed" in caught.stdout


def test_changing_sha256sums_to_match_is_caught_by_the_recorded_digest(built, tmp_path):
    pack_zip(built).extractall(tmp_path)
    members = tmp_path / "members.csv"
    text = members.read_text()
    dropped = "\n".join(line for line in text.splitlines() if not line.startswith("at-de,"))
    members.write_text(dropped + "\n")
    sums = tmp_path / "SHA256SUMS"
    digest = hashlib.sha256(members.read_bytes()).hexdigest()
    sums.write_text(
        "".join(
            f"{digest}  members.csv\n" if line.endswith("  members.csv") else line + "\n"
            for line in sums.read_text().splitlines()
        )
    )
    assert _run(["sha256sum", "-c", "SHA256SUMS"], tmp_path).returncode == 0  # fooled
    caught = _run([sys.executable, "verify.py", "--sums-sha256", built.sums_sha256], tmp_path)
    assert caught.returncode == 1
    assert "FAILED  SHA256SUMS has the recorded SHA-256" in caught.stdout
    assert "FAILED  manifest count members = 6; members.csv has 5" in caught.stdout


def test_members_are_read_in_one_query_whatever_their_number(sent, django_assert_num_queries):
    c = sent.campaign
    versions = selectors.pack_versions_sent(campaign=c)
    with django_assert_num_queries(1):
        lines = list(
            selectors.pack_members(campaign=c, version_ids=versions, head_seq=10**9, chunk=2)
        )
    assert len(lines) == len(sent.members)


def test_a_request_builds_once_its_transaction_commits(
    sent, published, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        pack = evidence_pack_request(campaign=sent.campaign, by=sent.bob)
        assert published == []
    assert published == [(enqueue.EVIDENCE_PACK_BUILD, (pack.pk,))]
    entry = StaffAction.objects.get(action=AuditAction.EVIDENCE_PACK_REQUEST)
    assert (entry.by, entry.target_id, entry.detail) == (
        sent.bob,
        str(sent.campaign.pk),
        {"pack": pack.pk},
    )


def test_a_second_request_while_one_is_owed_is_refused_and_changes_nothing(sent):
    evidence_pack_request(campaign=sent.campaign, by=sent.bob)
    entries = StaffAction.objects.count()
    with pytest.raises(PackRefused, match="already being built"):
        evidence_pack_request(campaign=sent.campaign, by=sent.bob)
    assert EvidencePack.objects.count() == 1 and StaffAction.objects.count() == entries


def test_a_campaign_that_sent_nothing_has_no_pack(sent):
    with pytest.raises(PackRefused, match="not sent anything"):
        evidence_pack_request(campaign=draft_campaign(), by=sent.bob)
    assert not EvidencePack.objects.exists()


def test_the_task_run_twice_builds_once(sent):
    pack = evidence_pack_request(campaign=sent.campaign, by=sent.bob)
    assert evidence_pack_build_task(pack.pk) is True
    parts = EvidencePackPart.objects.count()
    assert evidence_pack_build_task(pack.pk) is False
    pack.refresh_from_db()
    assert (pack.state, pack.attempt, EvidencePackPart.objects.count()) == ("ready", 1, parts)


def test_a_live_build_is_left_alone_and_a_dead_one_is_taken_over(sent):
    pack = evidence_pack_request(campaign=sent.campaign, by=sent.bob)
    first = evidence_pack_claim(pack_id=pack.pk)  # a worker that then dies
    assert first is not None and first.attempt == 1
    assert evidence_pack_build(pack_id=pack.pk) is False  # its lease still runs
    EvidencePack.objects.filter(pk=pack.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert evidence_pack_build(pack_id=pack.pk, part_bytes=SMALL_PARTS) is True
    pack.refresh_from_db()
    assert (pack.state, pack.attempt) == (PackState.READY, 2)
    assert manifest(pack_zip(pack))["pack"]["build_attempt"] == 2


def test_a_failed_build_is_recorded_and_can_be_retried(sent, monkeypatch, published):
    pack = evidence_pack_request(campaign=sent.campaign, by=sent.bob)

    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(build.selectors, "pack_members", broken)
    with pytest.raises(RuntimeError):
        evidence_pack_build(pack_id=pack.pk)
    pack.refresh_from_db()
    assert pack.state == PackState.FAILED
    assert pack.error == "RuntimeError: the database went away"
    monkeypatch.undo()
    assert evidence_pack_build(pack_id=pack.pk) is False  # a failed pack waits for a retry
    retried = evidence_pack_retry(pack=pack, by=sent.bob)
    assert retried.state == PackState.REQUESTED and retried.error == ""
    assert StaffAction.objects.filter(action=AuditAction.EVIDENCE_PACK_RETRY).count() == 1
    assert evidence_pack_build(pack_id=pack.pk) is True


def test_a_ready_pack_is_not_retried(sent, built):
    with pytest.raises(PackRefused, match="Only a failed pack"):
        evidence_pack_retry(pack=built, by=sent.bob)
    assert not StaffAction.objects.filter(action=AuditAction.EVIDENCE_PACK_RETRY).exists()


def test_a_ready_pack_and_its_parts_never_change(built):
    built.error = "edited"
    with pytest.raises(ImmutableEvidenceError):
        built.save()
    with pytest.raises(ImmutableEvidenceError):
        built.delete()
    with pytest.raises(ImmutableEvidenceError):
        EvidencePackPart.objects.filter(pack=built).update(data=b"")
    with pytest.raises(ImmutableEvidenceError):
        EvidencePackPart.objects.filter(pack=built).delete()
    table = connection.ops.quote_name(EvidencePackPart._meta.db_table)
    packs = connection.ops.quote_name(EvidencePack._meta.db_table)
    for statement in (
        f"UPDATE {table} SET data = NULL",  # noqa: S608
        f"DELETE FROM {table}",  # noqa: S608
        f"UPDATE {packs} SET sums_sha256 = 'x'",  # noqa: S608
        f"DELETE FROM {packs}",  # noqa: S608
    ):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    built.refresh_from_db()
    assert built.sums_sha256 and built.state == PackState.READY


def _utc(value) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event_time(external_id: str, action: str) -> str:
    event = ConsentEvent.objects.filter(member__external_id=external_id, action=action).earliest(
        "seq"
    )
    return _utc(event.created_at)


def test_beat_builds_a_pack_whose_request_never_reached_a_worker(
    sent, published, django_capture_on_commit_callbacks
):
    # The request's publish was lost (the broker was down when it committed).
    pack = evidence_pack_request(campaign=sent.campaign, by=sent.bob)
    published.clear()
    assert evidence_packs_resume() == []  # within its first minute the kick may still come
    later = timezone.now() + timedelta(minutes=2)
    with django_capture_on_commit_callbacks(execute=True):
        assert evidence_packs_resume(now=later) == [pack.pk]
    assert published == [("evidence.tasks.evidence_pack_build_task", (pack.pk,))]
    assert evidence_pack_build_task(pack.pk) is True
    pack.refresh_from_db()
    assert pack.state == PackState.READY
    published.clear()
    assert evidence_packs_resume(now=later + timedelta(minutes=5)) == []
    assert published == []


def test_beat_takes_over_a_dead_build_but_leaves_a_live_one(
    sent, published, django_capture_on_commit_callbacks
):
    pack = evidence_pack_request(campaign=sent.campaign, by=sent.bob)
    assert evidence_pack_claim(pack_id=pack.pk) is not None  # a worker that then dies
    published.clear()
    assert evidence_packs_resume(now=timezone.now() + timedelta(minutes=2)) == []
    lapsed = timezone.now() + timedelta(seconds=settings.RENOTIFY_LEASE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert evidence_packs_resume(now=lapsed) == [pack.pk]
    assert published == [("evidence.tasks.evidence_pack_build_task", (pack.pk,))]


def test_beat_gives_up_on_a_build_that_keeps_dying_and_leaves_it_to_a_person(sent, published):
    pack = evidence_pack_request(campaign=sent.campaign, by=sent.bob)
    EvidencePack.objects.filter(pk=pack.pk).update(
        state=PackState.BUILDING,
        attempt=AUTOMATIC_ATTEMPTS,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    published.clear()
    assert evidence_packs_resume() == []
    assert published == []
    pack.refresh_from_db()
    assert pack_is_stalled(pack)  # the console offers Retry
    assert evidence_pack_retry(pack=pack, by=sent.bob).state == PackState.REQUESTED
