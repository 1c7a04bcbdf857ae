"""Reads for the API and its admin: where each consumer stands in the suppression feed."""

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from accounts.models import SuppressionChange
from accounts.selectors import suppression_feed_head
from api.models import ApiClient, ConsumerPosition


@dataclass(frozen=True)
class FeedLag:
    """How far a consumer's applied cursor is behind the feed of its purpose."""

    position: ConsumerPosition
    head: int
    entries_behind: int
    # When the oldest entry it has not applied was recorded (None: it is up to date).
    oldest_unapplied_at: datetime | None

    @property
    def seconds_behind(self) -> float:
        if self.oldest_unapplied_at is None:
            return 0.0
        return max(0.0, (timezone.now() - self.oldest_unapplied_at).total_seconds())


def consumer_lag(*, position: ConsumerPosition) -> FeedLag:
    """The lag of one position: a count over the (purpose, id) index range after its
    cursor, the first entry there, and the head (no per-entry work in Python)."""
    unapplied = SuppressionChange.objects.filter(
        purpose_id=position.purpose_id, pk__gt=position.cursor
    ).order_by("pk")
    head = suppression_feed_head(purpose=position.purpose)
    oldest = unapplied.values_list("recorded_at", flat=True).first()
    if oldest is None:
        return FeedLag(position, head, 0, None)
    return FeedLag(position, head, unapplied.count(), oldest)


def consumer_lags(*, client: ApiClient) -> list[FeedLag]:
    """Every feed position of ``client`` with its lag, by purpose slug."""
    positions = ConsumerPosition.objects.filter(client=client).select_related("purpose")
    return [consumer_lag(position=p) for p in positions.order_by("purpose__slug")]
