"""``/members/{external_id}/...``: a member's choices, read (``preferences:read``) and
recorded from the platform's own channels (``preferences:write``): choices made in its
settings screen, notices shown and acknowledged in its app, links to the standing
preference page."""

from datetime import date, datetime
from typing import Any, Literal

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Header, Query, Router, Schema
from ninja.errors import HttpError
from ninja.responses import Status

from accounts.models import Member
from accounts.selectors import purpose_by_slug
from api.auth import scope_require
from api.models import Scope
from api.selectors import EVENTS_MOST, EVENTS_SHOWN, member_preferences
from api.services import choices
from api.services.idempotency import Answer, KeyBusy, KeyReused
from campaigns.models import NoticeVersion

router = Router(tags=["preferences"])
# Printable ASCII, as a header value carries it.
KEY_PATTERN = r"^[ -~]+$"


class StateOut(Schema):
    purpose: str
    state: Literal["in", "out"]
    reason: str
    since: datetime
    policy_mode: str
    explicit_choice: Literal["in", "out"] | None
    planned_mode: Literal["opt_out", "opt_in"] | None = Field(
        None,
        description=(
            "excluded where the member lives, with a planned opening (a processing gate): "
            "the mode planned; an objection recorded now applies then too"
        ),
    )
    planned_from: date | None = Field(None, description="from when the opening is planned")


class EventOut(Schema):
    seq: int
    action: str
    source: str
    purpose: str | None
    notice_version_id: int | None
    created_at: datetime
    occurred_at: datetime | None = Field(None, description="the client's own time, if sent")


class PreferencesOut(Schema):
    external_id: str
    jurisdiction: str
    purposes: list[StateOut]
    events: list[EventOut]


class EventsQuery(Schema):
    events: int = Field(EVENTS_SHOWN, ge=0, le=EVENTS_MOST)


class ChoiceIn(Schema):
    purpose: str = Field(max_length=64, description="the purpose's slug")
    action: Literal["object", "withdraw-objection", "opt-in"]
    occurred_at: datetime | None = Field(
        None, description="when the member chose, with a UTC offset; not in the future"
    )
    comment: str = Field("", max_length=choices.COMMENT_LONGEST)


class ChoiceOut(Schema):
    recorded: bool
    event: EventOut | None
    preference: StateOut


class InAppOut(Schema):
    recorded: bool
    event: EventOut | None


class LinkOut(Schema):
    url: str


def _member(external_id: str) -> Member:
    if "\x00" in external_id:  # no member has one, and PostgreSQL refuses it in a query
        raise Http404
    return get_object_or_404(Member, external_id=external_id)


def _live_member(external_id: str) -> Member:
    """The member a write is for: an erased member is only facts now (nothing new is
    recorded for them, no link made): 409."""
    member = _member(external_id)
    if member.erased_at is not None:
        raise HttpError(409, "this member was erased: nothing more is recorded for them")
    return member


def _answered(answer: Answer) -> Status[dict[str, Any]]:
    return Status(answer.status, answer.body)


@router.get("/{external_id}/preferences", response=PreferencesOut)
def member_preferences_read(
    request: HttpRequest, external_id: str, query: Query[EventsQuery]
) -> dict[str, Any]:
    """The member's effective state per purpose (the rule the pages use) and their last
    ledger events, newest first (``?events=``, 20 unless asked, at most 100)."""
    scope_require(request, Scope.PREFERENCES_READ)
    return member_preferences(member=_member(external_id), events=query.events)


@router.post("/{external_id}/choices", response={200: ChoiceOut, 201: ChoiceOut})
def member_choice_record(
    request: HttpRequest,
    external_id: str,
    body: ChoiceIn,
    idempotency_key: str | None = Header(
        None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=KEY_PATTERN,
        description="any printable ASCII, up to 255 characters (a UUID is a good one)",
    ),
) -> Status[dict[str, Any]]:
    """Record a choice made in the platform's own UI (``source=api``): 201 with the new
    event, 200 when the choice already stood. With an ``Idempotency-Key``, a retry gets
    the first answer and records nothing; the key with another request is 409."""
    client = scope_require(request, Scope.PREFERENCES_WRITE)
    member = _live_member(external_id)
    purpose = purpose_by_slug(body.purpose)
    if purpose is None:
        raise HttpError(422, f"no purpose {body.purpose!r}")
    try:
        answer = choices.choice_record(
            client=client,
            member=member,
            purpose=purpose,
            action=body.action,
            occurred_at=body.occurred_at,
            comment=body.comment,
            idempotency_key=idempotency_key,
        )
    except choices.ChoiceRefused as exc:
        raise HttpError(422, str(exc)) from exc
    except (KeyReused, KeyBusy) as exc:
        raise HttpError(409, str(exc)) from exc
    return _answered(answer)


def _in_app(
    request: HttpRequest, external_id: str, notice_version_id: int, kind: str
) -> Status[dict[str, Any]]:
    client = scope_require(request, Scope.PREFERENCES_WRITE)
    member = _live_member(external_id)
    version = get_object_or_404(NoticeVersion, pk=notice_version_id)
    try:
        answer = choices.notice_in_app_record(
            client=client, member=member, version=version, kind=kind
        )
    except choices.NoticeNotSent as exc:
        raise HttpError(409, str(exc)) from exc
    return _answered(answer)


@router.post(
    "/{external_id}/notices/{notice_version_id}/served",
    response={200: InAppOut, 201: InAppOut},
)
def member_notice_served(
    request: HttpRequest, external_id: str, notice_version_id: int
) -> Status[dict[str, Any]]:
    """The platform showed the member this notice version in its app (``source=in_app``):
    201 the first time, 200 after. It counts in the reach of the version's campaigns."""
    return _in_app(request, external_id, notice_version_id, "served")


@router.post(
    "/{external_id}/notices/{notice_version_id}/acknowledged",
    response={200: InAppOut, 201: InAppOut},
)
def member_notice_acknowledged(
    request: HttpRequest, external_id: str, notice_version_id: int
) -> Status[dict[str, Any]]:
    """The member acknowledged this notice version in the platform's app
    (``source=in_app``): 201 the first time, 200 after."""
    return _in_app(request, external_id, notice_version_id, "acknowledged")


@router.post("/{external_id}/preference-link", response=LinkOut)
def member_preference_link(
    request: HttpRequest, response: HttpResponse, external_id: str
) -> dict[str, str]:
    """A signed, absolute link to the member's standing preference page. It never
    expires and acts for the member: hand it to them only, never log it."""
    scope_require(request, Scope.PREFERENCES_WRITE)
    response["Cache-Control"] = "no-store"
    return {"url": choices.preference_link_mint(member=_live_member(external_id))}
