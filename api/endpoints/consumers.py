"""``/consumers/me``: how far the calling client has applied each suppression feed
(``suppressions:read``). The processing gate relies on these reports."""

from datetime import datetime

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from accounts.models import Purpose
from api.auth import scope_require
from api.models import Scope
from api.selectors import FeedLag, consumer_lag, consumer_lags
from api.services.consumers import CursorBeyondHead, consumer_position_report

router = Router(tags=["consumers"])


class AppliedIn(Schema):
    purpose: str = Field(description="the purpose's slug")
    cursor: int = Field(ge=0, description="the last feed cursor this consumer has applied")


class PositionOut(Schema):
    purpose: str
    cursor: int = Field(description="the highest cursor reported applied")
    reported_at: datetime
    head: int = Field(description="the purpose's last cursor")
    entries_behind: int
    seconds_behind: float = Field(description="age of the oldest entry not yet applied")


class ConsumerOut(Schema):
    client: str
    positions: list[PositionOut]


def _position(lag: FeedLag) -> dict:
    return {
        "purpose": lag.position.purpose.slug,
        "cursor": lag.position.cursor,
        "reported_at": lag.position.reported_at,
        "head": lag.head,
        "entries_behind": lag.entries_behind,
        "seconds_behind": lag.seconds_behind,
    }


@router.get("/me", response=ConsumerOut)
def consumer_read(request: HttpRequest) -> dict:
    """The calling client's position and lag in each feed it reported on."""
    client = scope_require(request, Scope.SUPPRESSIONS_READ)
    return {
        "client": client.name,
        "positions": [_position(lag) for lag in consumer_lags(client=client)],
    }


@router.post("/me/applied", response=PositionOut)
def consumer_applied_report(request: HttpRequest, body: AppliedIn) -> dict:
    """Report that the feed of ``purpose`` is applied up to ``cursor``. Positions only
    move forward (a lower cursor is noted as a report and changes nothing); a cursor
    beyond the feed's head is 422."""
    client = scope_require(request, Scope.SUPPRESSIONS_READ)
    purpose = get_object_or_404(Purpose, slug=body.purpose)
    try:
        position = consumer_position_report(client=client, purpose=purpose, cursor=body.cursor)
    except CursorBeyondHead as refused:
        raise HttpError(422, str(refused)) from refused
    position.purpose = purpose
    return _position(consumer_lag(position=position))
