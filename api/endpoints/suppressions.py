"""``/suppressions/{purpose}``: the suppression feed (``suppressions:read``).

``changes`` pages through the entries after a cursor (keyset on the cursor, never an
OFFSET); ``snapshot`` streams every suppressed member as NDJSON, headed by the cursor
the rows are consistent with. A pipeline takes the snapshot once, then follows the
changes after its cursor.
"""

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Schema
from pydantic import Field

from accounts.models import Purpose
from accounts.selectors import suppression_changes_page_json
from accounts.services.suppression_snapshot import suppression_snapshot_open
from api.auth import scope_require
from api.models import Scope

router = Router(tags=["suppressions"])
NDJSON = "application/x-ndjson"
CURSOR_HEADER = "Renotify-Cursor"


class FeedEntryOut(Schema):
    cursor: int
    external_id: str
    state: str = Field(description='"out": suppressed from then on; "in": no longer')
    reason: str
    changed_at: str = Field(description="when the state took effect, UTC")


class ChangesOut(Schema):
    purpose: str
    entries: list[FeedEntryOut]
    next_cursor: int = Field(description="pass as ``after`` for the next page")
    has_more: bool


class ChangesQuery(Schema):
    after: int = Field(0, ge=0, description="the last cursor applied; 0 from the start")
    limit: int = Field(1000, ge=1, le=settings.RENOTIFY_FEED_PAGE_MAX)


@router.get("/{purpose_slug}/changes", response=ChangesOut)
def suppression_changes_read(
    request: HttpRequest, purpose_slug: str, query: Query[ChangesQuery]
) -> HttpResponse:
    """The purpose's feed entries after ``after``, in cursor order, up to ``limit``
    (``suppressions:read``)."""
    scope_require(request, Scope.SUPPRESSIONS_READ)
    purpose = get_object_or_404(Purpose, slug=purpose_slug)
    page = suppression_changes_page_json(purpose=purpose, after=query.after, limit=query.limit)
    # Written directly (the schema above documents it): the entries come as JSON text,
    # and pages of 10,000 would spend more time in validation than in the database.
    body = (
        f'{{"purpose": {json.dumps(purpose.slug)}, "entries": {page.entries_json},'
        f' "next_cursor": {page.next_cursor}, "has_more": {json.dumps(page.has_more)}}}'
    )
    return HttpResponse(body, content_type="application/json")


SNAPSHOT_DOC = {
    "responses": {
        200: {
            "description": (
                'NDJSON: a first line {"purpose", "cursor", "taken_at"}, then one line '
                '{"external_id", "reason", "since"} per suppressed member. Follow the '
                "changes after ``cursor``."
            ),
            "content": {NDJSON: {"schema": {"type": "string"}}},
        }
    }
}


@router.get("/{purpose_slug}/snapshot", openapi_extra=SNAPSHOT_DOC)
def suppression_snapshot_read(request: HttpRequest, purpose_slug: str) -> StreamingHttpResponse:
    """Every member suppressed for the purpose, streamed as NDJSON, consistent with the
    cursor in the first line and the ``Renotify-Cursor`` header (``suppressions:read``)."""
    scope_require(request, Scope.SUPPRESSIONS_READ)
    purpose = get_object_or_404(Purpose, slug=purpose_slug)
    snapshot = suppression_snapshot_open(purpose=purpose)
    response = StreamingHttpResponse(_with_header(snapshot), content_type=NDJSON)
    response[CURSOR_HEADER] = str(snapshot.cursor)
    return response


def _with_header(snapshot):
    yield snapshot.header()
    yield from snapshot.lines
