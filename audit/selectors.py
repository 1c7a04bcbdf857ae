"""Reading the staff audit trail: filtered, newest first, a page at a time by id.

Pages are keyset pages (``id < before``), never OFFSET and never a COUNT over the
table: each is an index range read backwards (``StaffAction.Meta.indexes``), as fast
on the millionth entry as on the first."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.models import StaffAction
from db.plans import custom_plans

PAGE_SIZE = 50


@dataclass(frozen=True)
class TrailFilter:
    """What the console's filter form asks for; every part optional."""

    by: User | None = None
    action: str = ""
    target_type: str = ""
    target_id: str = ""
    since: date | None = None
    until: date | None = None  # inclusive: the whole day
    text: str = ""


def staff_actions_filtered(*, where: TrailFilter) -> QuerySet[StaffAction]:
    """The entries matching ``where``, newest first."""
    entries = StaffAction.objects.all()
    if where.by is not None:
        entries = entries.filter(by=where.by)
    if where.action:
        entries = entries.filter(action=where.action)
    if where.target_type:
        entries = entries.filter(target_type=where.target_type)
    if where.target_id:
        entries = entries.filter(target_id=where.target_id)
    if where.since:
        entries = entries.filter(at__gte=_day_start(where.since))
    if where.until:
        entries = entries.filter(at__lt=_day_start(where.until + timedelta(days=1)))
    if where.text:
        entries = entries.filter(
            Q(username__icontains=where.text) | Q(target_label__icontains=where.text)
        )
    return entries.order_by("-id")


@dataclass(frozen=True)
class TrailPage:
    entries: list[StaffAction]
    # The cursors of the older and the newer page; None where there is none.
    older: int | None
    newer: int | None


def staff_actions_page(
    *,
    entries: QuerySet[StaffAction],
    before: int | None = None,
    after: int | None = None,
    size: int = PAGE_SIZE,
    searching: bool = False,
) -> TrailPage:
    """One page of ``entries`` (newest first): the newest, those older than ``before``
    or those newer than ``after``. One query: it reads one entry more than it shows
    to know whether there is another page that way. ``searching``: the filter holds
    a text search, planned for its own pattern (``db.plans``)."""
    if searching:
        with custom_plans():
            return staff_actions_page(entries=entries, before=before, after=after, size=size)
    if after is not None:
        rows = list(entries.filter(id__gt=after).order_by("id")[: size + 1])
        more, rows = len(rows) > size, rows[:size][::-1]
        return TrailPage(
            rows, older=rows[-1].pk if rows else None, newer=rows[0].pk if more else None
        )
    if before is not None:
        entries = entries.filter(id__lt=before)
    rows = list(entries[: size + 1])
    more, rows = len(rows) > size, rows[:size]
    return TrailPage(
        rows,
        older=rows[-1].pk if more else None,
        newer=rows[0].pk if rows and before is not None else None,
    )


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))
