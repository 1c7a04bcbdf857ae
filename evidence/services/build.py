"""Building an evidence pack: the ZIP written as a stream into database parts.

Order of work: claim the pack; verify the whole ledger (``verify_ledger``'s full walk,
recorded as a LedgerCheck) and cut the pack at the head it verified; then write
README.txt, verify.py, each notice version's files, members.csv and ledger.csv (each
streamed from one query), manifest.json (last of the data files: its counts are those
of the rows just written), and SHA256SUMS over every file. The digest of SHA256SUMS
and of the whole ZIP are stored on the pack.

Memory is flat in the campaign's size: rows are read in chunks, text goes to the
compressor in blocks, and the ZIP leaves for the database a part at a time.
"""

import csv
import json
import logging
import zipfile
from collections.abc import Iterable
from datetime import datetime
from importlib import resources
from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.services.ledger_checks import ledger_check_run
from campaigns.models import Campaign, Delivery, NoticeVersion
from evidence import manifest as facts
from evidence import selectors
from evidence.models import PART_BYTES, EvidencePack, EvidencePackPart
from evidence.services.packs import (
    Claim,
    LeaseLost,
    evidence_pack_claim,
    evidence_pack_fail,
    evidence_pack_finish,
    evidence_pack_progress,
)
from evidence.zipstream import HashedText, PartSink

logger = logging.getLogger(__name__)

# Progress is recorded (and the lease renewed) every this many rows.
PROGRESS_ROWS = 20_000
VERIFY_SCRIPT = "pack_verify.py"


def evidence_pack_build(*, pack_id: int, part_bytes: int = PART_BYTES) -> bool:
    """Build the pack if it can be claimed; False when there was nothing to do (built,
    failed, or being built by a live worker). A failure is recorded on the pack, then
    raised again."""
    claim = evidence_pack_claim(pack_id=pack_id)
    if claim is None:
        return False
    try:
        _build(claim, part_bytes)
    except LeaseLost:
        logger.warning("evidence pack %s: build %s was taken over", pack_id, claim.attempt)
        return False
    except Exception as error:
        evidence_pack_fail(claim=claim, error=error)
        raise
    return True


class _Writer:
    """The archive being written, its files' digests, and the build's progress."""

    def __init__(self, claim: Claim, part_bytes: int, when: datetime) -> None:
        self.claim = claim
        self.when = when
        self.sink = PartSink(store=self._store, part_bytes=part_bytes)
        self.archive = zipfile.ZipFile(self.sink, mode="w", allowZip64=True)
        self.sums: list[tuple[str, str]] = []
        self.rows_done = 0

    def _store(self, index: int, data: bytes) -> None:
        EvidencePackPart.objects.create(
            pack_id=self.claim.pack_id, attempt=self.claim.attempt, index=index, data=data
        )

    def file(self, name: str, data: bytes) -> str:
        entry = HashedText(self.archive, name, when=self.when)
        entry.write_bytes(data)
        digest = entry.close()
        self.sums.append((name, digest))
        return digest

    def csv_file(self, name: str, header: Iterable[str], rows: Iterable[list[Any]]) -> None:
        entry = HashedText(self.archive, name, when=self.when)
        writer = csv.writer(entry, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            self.rows_done += 1
            if self.rows_done % PROGRESS_ROWS == 0:
                evidence_pack_progress(claim=self.claim, rows_done=self.rows_done)
        self.sums.append((name, entry.close()))

    def close(self) -> None:
        sums = "".join(f"{digest}  {name}\n" for name, digest in self.sums).encode()
        self.sums_sha256 = self.file("SHA256SUMS", sums)
        self.archive.close()
        self.sink.close()


def _build(claim: Claim, part_bytes: int) -> None:
    pack = EvidencePack.objects.select_related("campaign", "requested_by").get(pk=claim.pack_id)
    campaign = Campaign.objects.select_related(
        "notice_version__notice", "approved_by", "created_by", "purpose"
    ).get(pk=pack.campaign_id)
    check = ledger_check_run()
    head_seq = check.head_seq
    total = selectors.pack_rows_total(campaign=campaign, head_seq=head_seq)
    evidence_pack_progress(claim=claim, rows_done=0, rows_total=total)
    out = _Writer(claim, part_bytes, timezone.now())
    out.file("README.txt", _readme(campaign, pack))
    out.file("verify.py", resources.files("evidence").joinpath(VERIFY_SCRIPT).read_bytes())
    version_ids = selectors.pack_versions_sent(campaign=campaign)
    versions = _notices(out, campaign, version_ids)
    counts = _members(out, campaign, version_ids, head_seq)
    slice_facts = _ledger(out, campaign, head_seq)
    document = {
        "format": facts.FORMAT,
        "pack": {
            "id": pack.pk,
            "requested_by": pack.requested_by.get_username() if pack.requested_by else None,
            "requested_at": facts.when(pack.requested_at),
            "built_at": facts.when(out.when),
            "build_attempt": claim.attempt,
            "renotify_version": facts.renotify_version(),
        },
        "campaign": facts.campaign_facts(campaign),
        "approval": facts.approval_facts(campaign),
        "transitions": facts.transitions(campaign),
        "notice_versions": versions,
        "counts": counts,
        "ledger": {"verification": facts.check_facts(check), "slice": slice_facts},
    }
    out.file("manifest.json", _json(document))
    out.close()
    evidence_pack_finish(
        claim=claim,
        rows_done=out.rows_done,
        size=out.sink.size,
        parts=out.sink.parts,
        zip_sha256=out.sink.hexdigest(),
        sums_sha256=out.sums_sha256,
    )


def _json(document: dict) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode()


def _readme(campaign: Campaign, pack: EvidencePack) -> bytes:
    context = {"campaign": campaign, "pack": pack, "columns": selectors.MEMBER_COLUMNS}
    return render_to_string("evidence/pack-README.txt", context).encode()


def _notices(out: _Writer, campaign: Campaign, version_ids: list[int]) -> list[dict]:
    """Every version the campaign sent, each text as hashed and as rendered."""
    reminders = Delivery.objects.filter(campaign=campaign, wave__gt=0).exists()
    documented = []
    for version in NoticeVersion.objects.filter(pk__in=version_ids).order_by("pk"):
        approved = (
            campaign.approved_text_hashes if version.pk == campaign.notice_version_id else None
        )
        about = facts.version_facts(version, approved=approved)
        for path, data, text in facts.version_files(version, reminders=reminders):
            digest = out.file(path, data)
            entry = about["texts"].setdefault(text["locale"], {**text, "files": {}})
            entry["files"][path.rsplit("/", 1)[1]] = digest
        documented.append(about)
    return documented


def _members(out: _Writer, campaign: Campaign, version_ids: list[int], head_seq: int) -> dict:
    counted = [(name, selectors.MEMBER_COLUMNS.index(column)) for name, column in _COUNTS]
    reached_by = [selectors.MEMBER_COLUMNS.index(column) for column in selectors.REACHED_BY]
    waves = selectors.MEMBER_COLUMNS.index("waves")
    counts = dict.fromkeys(["members", "deliveries", *selectors.COUNTED, "reached"], 0)

    def rows():
        for line in selectors.pack_members(
            campaign=campaign, version_ids=version_ids, head_seq=head_seq, chunk=_chunk()
        ):
            counts["members"] += 1
            counts["deliveries"] += line[waves].count(";") + 1
            for name, index in counted:
                if line[index]:
                    counts[name] += 1
            if any(line[index] for index in reached_by):
                counts["reached"] += 1
            yield line

    out.csv_file("members.csv", selectors.MEMBER_COLUMNS, rows())
    return counts


_COUNTS = tuple(selectors.COUNTED.items())


def _ledger(out: _Writer, campaign: Campaign, head_seq: int) -> dict[str, Any]:
    """ledger.csv: the members' events up to the verified head (whose every hash the
    full walk just recomputed with the key), and how many."""
    seen = {"events": 0, "first_seq": None, "last_seq": None}

    def rows():
        for event in selectors.pack_ledger_slice(
            campaign=campaign, head_seq=head_seq, chunk=_chunk()
        ):
            seen["events"] += 1
            seen["first_seq"] = seen["first_seq"] or event["seq"]
            seen["last_seq"] = event["seq"]
            yield [_ledger_cell(event[name]) for name in selectors.LEDGER_COLUMNS]

    out.csv_file("ledger.csv", selectors.LEDGER_COLUMNS, rows())
    return seen


def _ledger_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()  # as hashed: the stored time, offset included
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _chunk() -> int:
    return settings.RENOTIFY_EXPORT_CHUNK_SIZE
