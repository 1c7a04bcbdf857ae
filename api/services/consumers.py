"""Consumers' acknowledgements: how far a client has applied a purpose's suppression feed.

A position only moves forward: reports can arrive out of order (a retried request, two
workers of one pipeline), and the processing gate reads "applied up to cursor N" as a
promise that never shrinks. A cursor beyond the feed's head was never handed out, so
it is refused (``CursorBeyondHead``) rather than stored as a promise about entries that
do not exist yet.
"""

from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts.models import Purpose
from accounts.selectors import suppression_feed_head
from api.models import ApiClient, ConsumerPosition


class CursorBeyondHead(ValueError):
    """The reported cursor is past the purpose's last entry: nothing is stored."""


def consumer_position_report(
    *, client: ApiClient, purpose: Purpose, cursor: int
) -> ConsumerPosition:
    """Note that ``client`` has applied ``purpose``'s feed up to ``cursor``: the stored
    position becomes the higher of the two, reported now."""
    head = suppression_feed_head(purpose=purpose)
    if cursor > head:
        raise CursorBeyondHead(f"cursor {cursor} is beyond the feed's head ({head})")
    if not _position_advance(client, purpose, cursor):
        try:
            with transaction.atomic():
                ConsumerPosition.objects.create(client=client, purpose=purpose, cursor=cursor)
        except IntegrityError:  # a concurrent first report made the row: advance it
            _position_advance(client, purpose, cursor)
    return ConsumerPosition.objects.get(client=client, purpose=purpose)


def _position_advance(client: ApiClient, purpose: Purpose, cursor: int) -> bool:
    return bool(
        ConsumerPosition.objects.filter(client=client, purpose=purpose).update(
            cursor=Greatest(F("cursor"), Value(cursor)), reported_at=timezone.now()
        )
    )
