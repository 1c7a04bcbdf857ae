"""Members from the platform's systems: upsert one or a batch, erase one.

Invariants:
- One rule for what a valid member is and how a member is written, whatever the
  channel: rows are checked by the importer's ``validate_row`` and written by its
  set-based upsert (``db.member_import``), so an address change resets the address's
  health and never the member's unsubscribe, here as in an import.
- A batch is one write: the valid items go to the members table in one statement; the
  invalid ones (and repeats of an external id within the batch) are reported by index
  and change nothing.
- An erased member is never written again: their items are refused (``erased``) and
  nothing changes.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import EmailStatus, Member
from accounts.services.member_import import RowError, validate_row
from accounts.services.members import HEALTH_OF_NEW_ADDRESS
from accounts.services.suppression_feed import suppression_feed_sync_after_commit
from db import member_import as db_member_import

# The most members one batch may carry: a request's work stays bounded.
BATCH_MAX = 1000
# An item's fields, as the importer reads them (person_key optional: absent keeps it).
FIELDS = ("external_id", "email", "locale", "country")
PERSON_KEY = "person_key"
ERASED_REASON = db_member_import.ERASED_REASON


class ItemStatus(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    INVALID = "invalid"
    ERASED = "erased"


@dataclass(frozen=True)
class ItemResult:
    index: int
    external_id: str
    status: ItemStatus
    errors: list[str] = field(default_factory=list)


class BatchTooLarge(ValueError):
    """More members than ``BATCH_MAX`` in one request: nothing is written."""


def members_upsert(*, items: Sequence[Mapping[str, Any]]) -> list[ItemResult]:
    """Create or update each item's member (matched on external_id); one result per
    item, in order. The valid items are written in one statement."""
    if len(items) > BATCH_MAX:
        raise BatchTooLarge(
            f"at most {BATCH_MAX} members per request; this one has {len(items)}:"
            " send them in smaller batches"
        )
    results: dict[int, ItemResult] = {}
    valid: dict[str, tuple[int, db_member_import.SourceRow]] = {}
    for index, item in enumerate(items):
        row = _item_validate(index, item)
        if isinstance(row, RowError):
            external_id = item.get("external_id")
            shown = external_id if isinstance(external_id, str) else ""
            results[index] = ItemResult(index, shown, ItemStatus.INVALID, [row.reason])
        elif row[1] in valid:
            first = valid[row[1]][0]
            reason = f"duplicate external_id (first seen at index {first})"
            results[index] = ItemResult(index, row[1], ItemStatus.INVALID, [reason])
        else:
            valid[row[1]] = (index, row[1:])
    results.update(_write(valid))
    return [results[index] for index in range(len(items))]


def _item_validate(index: int, item: Mapping[str, Any]) -> db_member_import.StagedRow | RowError:
    """The importer's checks for one item (its index as the line)."""
    for name in (*FIELDS, PERSON_KEY):
        value = item.get(name)
        if value is not None and not isinstance(value, str):
            return RowError(index, f"{name} must be a string")
    external_id, email, locale, country = (item.get(name) or "" for name in FIELDS)
    # Absent keeps the member's key; null unlinks, as in an import.
    person_key = (item[PERSON_KEY] or "") if PERSON_KEY in item else None
    return validate_row(index, external_id, email, locale, country, person_key)


def _write(valid: dict[str, tuple[int, db_member_import.SourceRow]]) -> dict[int, ItemResult]:
    if not valid:
        return {}
    with transaction.atomic():
        erased = db_member_import.members_erased(external_ids=list(valid))
        written = db_member_import.stager(connection.vendor).rows_upsert(
            [row for external_id, (_, row) in valid.items() if external_id not in erased],
            status=EmailStatus.OK.value,
            new_address_health=HEALTH_OF_NEW_ADDRESS.value,
            now=timezone.now(),
        )
        _feed_sync_after_commit(written)
    return {
        index: _result(index, external_id, erased=external_id in erased, written=written)
        for external_id, (index, _) in valid.items()
    }


def _feed_sync_after_commit(written: dict[str, bool]) -> None:
    """A new member, or a new country, can change a member's effective state: the
    suppression feed says so once the write commits (only the members written)."""
    if written:
        ids = list(
            Member.objects.filter(external_id__in=list(written)).values_list("pk", flat=True)
        )
        suppression_feed_sync_after_commit(member_ids=ids)


def _result(index: int, external_id: str, *, erased: bool, written: dict[str, bool]) -> ItemResult:
    if erased:
        return ItemResult(index, external_id, ItemStatus.ERASED, [ERASED_REASON])
    if external_id not in written:
        return ItemResult(index, external_id, ItemStatus.UNCHANGED)
    created = written[external_id]
    return ItemResult(index, external_id, ItemStatus.CREATED if created else ItemStatus.UPDATED)


def member_upsert(
    *, external_id: str, fields: Mapping[str, Any]
) -> tuple[ItemResult, Member | None]:
    """Create or update one member; the result and the member as stored (None when the
    item was invalid and no such member exists)."""
    (result,) = members_upsert(items=[{**fields, "external_id": external_id}])
    return result, Member.objects.filter(external_id=result.external_id or external_id).first()
