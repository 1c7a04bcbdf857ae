"""Consumers' acknowledgements: how far a client has applied a purpose's suppression feed.

A position only moves forward: reports can arrive out of order (a retried request, two
workers of one pipeline), and the processing gate reads "applied up to cursor N" as a
promise that never shrinks. A cursor beyond the feed's head was never handed out, so
it is refused (``CursorBeyondHead``) rather than stored as a promise about entries that
do not exist yet.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Purpose
from accounts.selectors import suppression_feed_head
from api.models import ApiClient, ConsumerPosition, ConsumerPositionReport


class CursorBeyondHead(ValueError):
    """The reported cursor is past the purpose's last entry: nothing is stored."""


def consumer_position_report(
    *, client: ApiClient, purpose: Purpose, cursor: int
) -> ConsumerPosition:
    """Note that ``client`` has applied ``purpose``'s feed up to ``cursor``: the stored
    position becomes the higher of the two, reported now. When the position advances
    (or is first made), a ``ConsumerPositionReport`` is appended in the same
    transaction: the history the effectiveness report reads acknowledgement times from."""
    head = suppression_feed_head(purpose=purpose)
    if cursor > head:
        raise CursorBeyondHead(f"cursor {cursor} is beyond the feed's head ({head})")
    with transaction.atomic():
        if _position_advance(client, purpose, cursor):
            _report_append(client, purpose, cursor)
        elif not _position_touch(client, purpose):
            _position_create(client, purpose, cursor)
    return ConsumerPosition.objects.get(client=client, purpose=purpose)


def _position_advance(client: ApiClient, purpose: Purpose, cursor: int) -> bool:
    """Move the position to ``cursor`` if it is behind it. The conditional UPDATE locks
    the row, and a concurrent report re-reads its condition after that lock: of two
    reports of the same cursor, only one advances (and appends its report)."""
    return bool(
        ConsumerPosition.objects.filter(client=client, purpose=purpose, cursor__lt=cursor).update(
            cursor=cursor, reported_at=timezone.now()
        )
    )


def _position_touch(client: ApiClient, purpose: Purpose) -> bool:
    """A report at or behind the position: it stays, reported now. False: no position yet."""
    return bool(
        ConsumerPosition.objects.filter(client=client, purpose=purpose).update(
            reported_at=timezone.now()
        )
    )


def _position_create(client: ApiClient, purpose: Purpose, cursor: int) -> None:
    try:
        with transaction.atomic():
            ConsumerPosition.objects.create(client=client, purpose=purpose, cursor=cursor)
    except IntegrityError:  # a concurrent first report made the row: advance it
        if _position_advance(client, purpose, cursor):
            _report_append(client, purpose, cursor)
        return
    _report_append(client, purpose, cursor)


def _report_append(client: ApiClient, purpose: Purpose, cursor: int) -> None:
    ConsumerPositionReport.objects.create(client=client, purpose=purpose, cursor=cursor)
