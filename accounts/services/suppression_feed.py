"""The suppression feed: one entry per change of a member's effective state for a
purpose, ordered by a cursor (``SuppressionChange.id``), so that a pipeline takes a
snapshot once and then follows the changes.

``suppression_feed_sync`` is the feed's only writer. It compares the effective state
(``accounts.selectors.members_with_effective_state``, the ``STATE_TABLE`` rule) with
the feed's last word (``SuppressionState``) and, for every member whose state or
reason differs, or who has no last word yet, appends an entry and updates the last
word: two set-based statements per purpose (``db.suppression_feed``), no per-member
loop. It is idempotent and compares what *is*, not what happened: calling it for a
member or a place whose state did not change appends nothing, and calling it late
(after a crash, from the reconcile) appends exactly what was missed.

**Cursor order is commit order.** A reader that has seen cursor N must have seen every
entry below N, or it would skip entries for good. On PostgreSQL a sequence hands out
ids in call order, not commit order, so writers serialize on an advisory lock of the
feed's own (not the ledger's: a choice never waits for the feed to append its entry),
taken before the diff and held until commit. PostgreSQL makes a transaction's commit
visible before it releases the transaction's locks, so the next writer's statements,
which start after it has the lock, read everything the previous one wrote, and its ids
come after them; a reader's snapshot that holds entry N holds every earlier writer's
entries too. On SQLite the IMMEDIATE transaction already holds the database's write
lock from BEGIN.

The purposes and their policies are read inside the lock: a sync that read a policy
before a concurrent policy change committed would write the old default's state after
the change's own sync had written the new one.

**Who calls it**, after their own commit, so the diff reads what they wrote: a policy
change (for that jurisdiction), a new purpose (for everyone), the importer, the API's
member writes and the admin's member save (for the members written), and two beat
tasks. Choices are not synced by the request that records them: every objection
would then wait for the feed's lock and its commit, one member at a time, on the
notice page's hot path. ``suppression_feed_catch_up`` (beat, every
``RENOTIFY_FEED_CATCH_UP_SECONDS``) follows the ledger instead: the members of the
preference events after the last one it handled (``FeedProgress``), synced together
in one transaction. The ledger appends in ``seq`` order, each event committed before
the next is written, so no event can appear behind its position later.
``accounts.tasks.suppression_feed_reconcile`` (everyone, rarely) repairs whatever a
crash between a commit and its sync left behind. Any other code that creates members
or changes a member's country must call the sync for those members after committing.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Action, ConsentEvent, FeedProgress, Member, Purpose
from accounts.selectors import members_with_effective_state
from db import suppression_feed as db_feed

# Arbitrary constant naming the feed's advisory lock on PostgreSQL ("rnfd").
FEED_LOCK_ID = 0x726E6664
# The ledger's actions that can change an effective state (``consent.PREFERENCE_EFFECT``).
PREFERENCE_ACTIONS = (Action.OBJECT, Action.WITHDRAW_OBJECTION, Action.OPT_IN)
# Ledger events read per catch-up transaction.
CATCH_UP_BATCH = 20_000


def suppression_feed_sync(
    *,
    purpose: Purpose | None = None,
    member_ids: Iterable[int] | None = None,
    jurisdiction: str | None = None,
) -> int:
    """Append an entry for every member whose effective state (or its reason) for
    ``purpose`` (every purpose when None) differs from what the feed last said; return
    how many were appended.

    ``member_ids`` limits it to those members, ``jurisdiction`` to the members there;
    neither: every member. Members are taken in slices of
    ``RENOTIFY_FEED_SYNC_CHUNK`` (by id range, or of the ids given), each slice in a
    transaction of its own, so a sync of millions holds the feed's lock for one slice
    at a time and a member's choice waits for one slice at most.
    """
    appended = 0
    for members in _slices(member_ids, jurisdiction):
        appended += _slice_sync(members, purpose)
    return appended


def suppression_feed_sync_after_commit(
    *,
    purpose: Purpose | None = None,
    member_ids: Sequence[int] | None = None,
    jurisdiction: str | None = None,
) -> None:
    """``suppression_feed_sync`` once the caller's transaction commits (at once outside
    one). Robust: a failed sync is logged and left to the reconcile, since what the
    caller committed stands."""
    transaction.on_commit(
        lambda: suppression_feed_sync(
            purpose=purpose, member_ids=member_ids, jurisdiction=jurisdiction
        ),
        robust=True,
    )


def suppression_feed_catch_up() -> int:
    """Sync the members whose preference events the feed has not handled yet, in ledger
    order, ``CATCH_UP_BATCH`` events per transaction; return the entries appended.

    Each batch moves ``FeedProgress`` on in the transaction that appends its entries,
    so a run that dies leaves the batch for the next one (the sync compares what is,
    so doing a batch twice appends nothing twice). Two runs at once take turns on the
    progress row."""
    appended = 0 if FeedProgress.objects.filter(pk=1).exists() else _first_sync()
    while True:
        with transaction.atomic():
            progress = _progress_locked()
            events = list(
                ConsentEvent.objects.filter(seq__gt=progress.ledger_seq)
                .order_by("seq")
                .values_list("seq", "member_id", "action")[:CATCH_UP_BATCH]
            )
            if not events:
                return appended
            chose = {member for _seq, member, action in events if action in PREFERENCE_ACTIONS}
            if chose:
                appended += suppression_feed_sync(member_ids=chose)
            progress.ledger_seq = events[-1][0]
            progress.save(update_fields=["ledger_seq"])
        if len(events) < CATCH_UP_BATCH:
            return appended


def _first_sync() -> int:
    """The first catch-up ever (a new install, or members that arrived before the feed
    existed, as on an upgrade): every member gets an entry now, not at the hourly
    reconcile. It starts from the ledger's head as it was before the sync, so what is
    recorded meanwhile is caught up next."""
    head = ConsentEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    appended = suppression_feed_sync()
    FeedProgress.objects.get_or_create(pk=1, defaults={"ledger_seq": head})
    return appended


def _progress_locked() -> FeedProgress:
    """The progress row (made by ``_first_sync``), held until commit."""
    return FeedProgress.objects.select_for_update().get(pk=1)


def _slices(member_ids: Iterable[int] | None, jurisdiction: str | None) -> Iterable[QuerySet]:
    chunk = settings.RENOTIFY_FEED_SYNC_CHUNK
    members = Member.objects.order_by()
    if jurisdiction is not None:
        members = members.filter(jurisdiction=jurisdiction)
    if member_ids is not None:
        ids = sorted(set(member_ids))
        for start in range(0, len(ids), chunk):
            yield members.filter(pk__in=ids[start : start + chunk])
        return
    # By id range: members created while this runs are taken too (the range moves on
    # until it passes the highest id).
    every_id = Member.objects.order_by("pk").values_list("pk", flat=True)
    low = every_id.first()
    while low is not None and low <= (every_id.last() or 0):
        yield members.filter(pk__gte=low, pk__lt=low + chunk)
        low += chunk


def _slice_sync(members: QuerySet, given: Purpose | None) -> int:
    appended = 0
    # No savepoint: the sync is its caller's transaction when it has one (it commits
    # or fails with it), and its own otherwise.
    with transaction.atomic(savepoint=False):
        if connection.vendor == "postgresql":
            db_feed.feed_lock(lock_id=FEED_LOCK_ID)
        now = timezone.now()
        for purpose in _purposes_fresh(given):
            appended += _purpose_sync(purpose, members, now)
    return appended


def _purposes_fresh(given: Purpose | None) -> Iterable[Purpose]:
    """The purposes to compare (``given``, else all), their policies still to be read,
    inside the lock (module docstring): the given one is copied without any policies
    it may hold (its id and creation time never change), the others are read."""
    if given is not None:
        return [Purpose(pk=given.pk, slug=given.slug, created_at=given.created_at)]
    return Purpose.objects.order_by("pk")


def _purpose_sync(purpose: Purpose, members: QuerySet, now) -> int:
    effective = members_with_effective_state(purpose=purpose, members=members).values(
        "id", "external_id", "effective_state", "effective_reason", "effective_since"
    )
    query_sql, query_params = effective.query.sql_with_params()
    statement: dict[str, Any] = {
        "purpose_id": purpose.pk,
        "query_sql": query_sql,
        "query_params": query_params,
        "recorded_at": now,
    }
    if connection.vendor == "postgresql":
        return db_feed.changes_append_with_states(**statement)
    head = db_feed.feed_head(purpose_id=purpose.pk)
    appended = db_feed.changes_append(**statement)
    if appended:
        db_feed.states_upsert(purpose_id=purpose.pk, after=head)
    return appended
