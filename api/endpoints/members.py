"""``/members``: keep members in sync and erase them (``members:write``).

- ``PUT /members/{external_id}``: create (201) or update (200) one member; the body
  answered is the member as stored. Invalid: 422; an erased member: 409.
- ``POST /members/bulk``: up to ``BATCH_MAX`` members; 200 with a result per item (the
  valid ones written in one statement); more items: 413.
- ``DELETE /members/{external_id}``: erase the member's personal data (204, also when
  repeated); unknown: 404.
"""

import json
from datetime import datetime
from typing import Annotated, Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from pydantic import BaseModel, WithJsonSchema

from accounts.models import Member, Source
from api.auth import scope_require
from api.models import Scope
from api.problems import problem
from api.services.members import (
    BATCH_MAX,
    BatchTooLarge,
    ItemStatus,
    member_upsert,
    members_upsert,
)
from campaigns.services.erasure import member_erase

router = Router(tags=["members"])

# A value the service checks itself (and reports per item), documented as a string.
Text = Annotated[Any, WithJsonSchema({"type": "string"})]
OptionalText = Annotated[Any, WithJsonSchema({"type": ["string", "null"]})]


class MemberIn(Schema):
    email: str
    country: str
    locale: str | None = None
    # Absent: the member keeps their person key; null or "": not linked.
    person_key: str | None = None


class MemberOut(Schema):
    external_id: str
    email: str
    locale: str
    country: str
    jurisdiction: str
    person_key: str
    email_status: str
    unsubscribed_at: datetime | None
    erased_at: datetime | None
    created_at: datetime
    updated_at: datetime


# A plain model: ninja's Schema would read an item that is not an object as one without
# fields, where it should make the request a 422.
class MemberItem(BaseModel):
    """One member of a batch. Each item is checked on its own: a wrong value makes that
    item `invalid`, never the request."""

    external_id: Text = None
    email: Text = None
    country: Text = None
    locale: OptionalText = None
    person_key: OptionalText = None


class BatchIn(Schema):
    members: list[MemberItem]


class ItemOut(Schema):
    index: int
    external_id: str
    status: ItemStatus
    errors: list[str]


class BatchOut(Schema):
    created: int
    updated: int
    unchanged: int
    invalid: int
    erased: int
    results: list[ItemOut]


# Before the external id's routes: /bulk would match those too.
@router.post("/bulk", response=BatchOut, summary="Create or update up to 1,000 members")
def members_bulk(request: HttpRequest, payload: BatchIn) -> HttpResponse:
    """Create or update each member of ``members`` (at most 1,000; more: 413), matched on
    external id (``members:write``). The answer has one result per item, by index:
    ``created``, ``updated``, ``unchanged``, ``invalid`` (with the reasons: nothing of
    that item is written) or ``erased`` (refused). The valid items are written in one
    statement."""
    scope_require(request, Scope.MEMBERS_WRITE)
    try:
        results = members_upsert(
            items=[item.model_dump(exclude_unset=True) for item in payload.members]
        )
    except BatchTooLarge as exc:
        return problem(413, str(exc), max_members=BATCH_MAX)
    counts = dict.fromkeys(ItemStatus, 0)
    for result in results:
        counts[result.status] += 1
    body = {
        **{status.value: n for status, n in counts.items()},
        "results": [
            {"index": r.index, "external_id": r.external_id, "status": r.status, "errors": r.errors}
            for r in results
        ],
    }
    # Written as built here, from values the service checked (BatchOut documents the
    # shape, and a test holds the answer to it): ninja would check each result again
    # (bench/README.md, Measurements).
    return HttpResponse(json.dumps(body), content_type="application/json")


@router.put(
    "/{path:external_id}",
    response={200: MemberOut, 201: MemberOut},
    summary="Create or update a member",
)
def member_put(
    request: HttpRequest, external_id: str, payload: MemberIn
) -> Status[Member] | HttpResponse:
    """Create (201) or update (200) the member with this external id (``members:write``).
    ``locale`` defaults to en; ``person_key`` absent keeps the member's. 422 when a
    value is invalid, 409 when the member was erased."""
    scope_require(request, Scope.MEMBERS_WRITE)
    result, member = member_upsert(
        external_id=external_id, fields=payload.model_dump(exclude_unset=True)
    )
    if result.status == ItemStatus.INVALID:
        # As the schema's own 422s list theirs: one object per error.
        errors = [{"loc": ["body"], "msg": reason} for reason in result.errors]
        return problem(422, "the member is not valid", errors=errors)
    if result.status == ItemStatus.ERASED or member is None:
        return problem(409, f"member {external_id} was erased: it cannot be written again")
    return Status(201 if result.status == ItemStatus.CREATED else 200, member)


@router.delete("/{path:external_id}", response={204: None}, summary="Erase a member")
def member_delete(request: HttpRequest, external_id: str) -> Status[None]:
    """Erase the member's personal data (``members:write``): they are unsubscribed and
    never emailed again, their address is removed; the external id, country and their
    choices stay, in the ledger and the suppression lists. 204, also when repeated;
    404 for an unknown member."""
    client = scope_require(request, Scope.MEMBERS_WRITE)
    member = get_object_or_404(Member, external_id=external_id)
    member_erase(member=member, source=Source.API, metadata={"api_client": client.pk})
    return Status(204, None)
