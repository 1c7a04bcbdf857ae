"""What needs attention on the dashboard: each item says what, why, and where to act.

Every item comes from one read in ``console.selectors``; docs/console.md lists them."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from console import selectors
from console.links import campaign_url


@dataclass(frozen=True)
class Attention:
    kind: str
    title: str
    why: str
    url: str
    link: str


def attention_items(*, now: datetime) -> list[Attention]:
    return [
        *_paused_by_breaker(),
        *_unknown_deliveries(),
        *_failed_receipts(),
        *_ledger_check(now),
        *_feed_consumers(now),
    ]


def _paused_by_breaker() -> list[Attention]:
    return [
        Attention(
            "breaker",
            f"“{c.name}” was paused automatically",
            note,
            campaign_url(c.pk),
            "Open the campaign to resume or cancel it",
        )
        for c, note in selectors.campaigns_paused_by_breaker()
    ]


def _unknown_deliveries() -> list[Attention]:
    return [
        Attention(
            "unknown",
            f"“{row['campaign__name']}”: {row['n']:,} deliver{'y' if row['n'] == 1 else 'ies'}"
            " with an unknown outcome",
            "The transport may or may not have sent them; the campaign cannot complete until "
            "someone decides to send them again or give up on them.",
            campaign_url(row["campaign_id"]),
            "Decide on the campaign's page",
        )
        for row in selectors.unknown_deliveries_by_campaign()
    ]


def _failed_receipts() -> list[Attention]:
    failed = selectors.failed_receipts_count()
    if not failed:
        return []
    return [
        Attention(
            "receipts",
            f"{failed:,} objection receipt{'' if failed == 1 else 's'} failed",
            "Members who objected were not sent their confirmation email.",
            reverse("admin:campaigns_objectionreceipt_changelist") + "?status__exact=failed",
            "See the failed receipts in the admin",
        )
    ]


def _ledger_check(now: datetime) -> list[Attention]:
    last = selectors.ledger_check_last()
    url = reverse("admin:accounts_ledgercheck_changelist")
    stale_after = selectors.ledger_check_stale_after()
    if last is not None and not last.intact:
        why = last.detail or f"The chain breaks at event {last.first_broken_seq}."
        return [Attention("ledger", "The consent ledger check failed", why, url, "See the checks")]
    if last is None or last.checked_at < now - stale_after:
        when = (
            f"The last one ran {timezone.localtime(last.checked_at):%Y-%m-%d %H:%M %Z}"
            if last
            else "None has run yet"
        )
        return [
            Attention(
                "ledger",
                "The consent ledger has not been checked recently",
                f"{when}; beat checks it every {_duration(stale_after / 2)}. "
                "Is the beat or a worker down?",
                url,
                "See the checks",
            )
        ]
    return []


def _feed_consumers(now: datetime) -> list[Attention]:
    older_than = timedelta(seconds=settings.RENOTIFY_CONSOLE_FEED_LAG_SECONDS)
    return [
        Attention(
            "feed",
            f"API client “{lag.position.client.name}” is behind on the "
            f"{lag.position.purpose.slug} suppression feed",
            f"{lag.entries_behind:,} entries not applied, the oldest from "
            f"{_duration(timedelta(seconds=lag.seconds_behind))} ago "
            f"(its cursor {lag.position.cursor:,}; the feed is at {lag.head:,}).",
            reverse("admin:api_apiclient_change", args=[lag.position.client_id]),
            "See the client in the admin",
        )
        for lag in selectors.feed_consumers_behind(now=now, older_than=older_than)
    ]


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    hours = minutes // 60
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"
