"""The suppression feed: one entry per change of a member's effective state, in cursor
order; a snapshot plus the entries after its cursor is exactly the suppression list."""

import io
import itertools
import json
import threading

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts import tasks
from accounts.jurisdictions import Jurisdiction
from accounts.models import (
    Action,
    ConsentEvent,
    FeedProgress,
    JurisdictionPolicy,
    Member,
    PolicyMode,
    Source,
    SuppressionChange,
    SuppressionState,
)
from accounts.selectors import suppression_changes_page, suppressions
from accounts.services.consent import consent_record
from accounts.services.member_import import members_import
from accounts.services.policies import policy_set_mode, purpose_create
from accounts.services.suppression_feed import suppression_feed_catch_up, suppression_feed_sync
from accounts.services.suppression_snapshot import suppression_snapshot_open
from tests.concurrency import at_once
from tests.factories import MemberFactory, ai_training

pytestmark = pytest.mark.django_db

COUNTRY_IN = {
    Jurisdiction.UK: "GB",
    Jurisdiction.EU: "DE",
    Jurisdiction.EEA: "NO",
    Jurisdiction.CH: "CH",
    Jurisdiction.US: "US",
    Jurisdiction.OTHER: "BR",
}


def entries(purpose) -> list[tuple]:
    return list(
        SuppressionChange.objects.filter(purpose=purpose)
        .order_by("pk")
        .values_list("external_id", "state", "reason")
    )


def choose(member, action, purpose):
    """The member's choice, then the feed's next catch-up (as beat runs it)."""
    consent_record(member=member, action=action, source=Source.API, purpose=purpose)
    suppression_feed_catch_up()


def set_mode(purpose, jurisdiction, mode):
    policy = JurisdictionPolicy.objects.get(purpose=purpose, jurisdiction=jurisdiction)
    policy_set_mode(policy=policy, mode=mode, by=None)


def suppression_set(purpose) -> set[tuple[str, str]]:
    return {(ext, reason) for ext, _jurisdiction, reason, _since in suppressions(purpose=purpose)}


class Follower:
    """A pipeline: takes the snapshot once, then applies the pages after its cursor."""

    def __init__(self, purpose, page_size: int = 3):
        self.purpose, self.page_size = purpose, page_size
        self.cursor: int | None = None
        self.start = 0  # the snapshot's cursor
        self.suppressed: dict[str, str] = {}
        self.seen: list[int] = []

    def read(self) -> None:
        if self.cursor is None:
            self._snapshot()
        self._follow()

    def _snapshot(self) -> None:
        snapshot = suppression_snapshot_open(purpose=self.purpose)
        rows = [json.loads(line) for line in b"".join(snapshot.lines).splitlines()]
        self.cursor = self.start = snapshot.cursor
        self.suppressed = {row["external_id"]: row["reason"] for row in rows}
        assert len(self.suppressed) == len(rows)  # no member twice

    def _follow(self) -> None:
        while True:
            page = suppression_changes_page(
                purpose=self.purpose, after=self.cursor, limit=self.page_size
            )
            for cursor, external_id, state, reason, _changed_at in page.entries:
                assert cursor > self.cursor  # strictly increasing: no repeats
                self.seen.append(cursor)
                self.cursor = cursor
                if state == "out":
                    self.suppressed[external_id] = reason
                else:
                    self.suppressed.pop(external_id, None)
            if not page.has_more:
                return

    def folded(self) -> set[tuple[str, str]]:
        return set(self.suppressed.items())


# --- Entries -------------------------------------------------------------------------


def test_every_member_gets_a_first_entry_in_or_out(purpose):
    here = MemberFactory(country="US")  # opt-out: in
    excluded = MemberFactory(country="GB")  # excluded: out
    assert suppression_feed_sync(purpose=purpose) == 2
    assert entries(purpose) == [
        (here.external_id, "in", "not-objected"),
        (excluded.external_id, "out", "jurisdiction-excluded"),
    ]
    assert SuppressionState.objects.filter(purpose=purpose).count() == 2
    assert suppression_feed_sync(purpose=purpose) == 0  # nothing changed: nothing appended


def test_an_objection_appends_its_entry_once_recorded(purpose):
    member = MemberFactory(country="US")
    suppression_feed_sync(purpose=purpose)
    choose(member, Action.OBJECT, purpose)
    last = SuppressionChange.objects.filter(purpose=purpose).last()
    assert (last.external_id, last.state, last.reason) == (member.external_id, "out", "objected")
    assert last.changed_at == member.consent_events.get().created_at
    state = SuppressionState.objects.get(purpose=purpose, member_id=member.pk)
    assert (state.state, state.cursor) == ("out", last.pk)


def test_a_re_allowed_member_appears_as_in_again(purpose):
    member = MemberFactory(country="US")
    suppression_feed_sync(purpose=purpose)
    choose(member, Action.OBJECT, purpose)
    choose(member, Action.WITHDRAW_OBJECTION, purpose)
    assert entries(purpose) == [
        (member.external_id, "in", "not-objected"),
        (member.external_id, "out", "objected"),
        (member.external_id, "in", "not-objected"),
    ]


def test_a_repeated_choice_appends_nothing(purpose):
    member = MemberFactory(country="US")
    choose(member, Action.OBJECT, purpose)
    before = entries(purpose)
    choose(member, Action.OBJECT, purpose)
    assert entries(purpose) == before and len(before) == 1


def test_a_policy_change_appends_an_entry_for_every_affected_member(
    purpose, django_capture_on_commit_callbacks
):
    bystanders = MemberFactory.create_batch(4, country="US")
    objector = MemberFactory(country="US")
    opted_in = MemberFactory(country="US")
    elsewhere = MemberFactory(country="BR")
    suppression_feed_sync(purpose=purpose)
    choose(objector, Action.OBJECT, purpose)
    choose(opted_in, Action.OPT_IN, purpose)
    head = SuppressionChange.objects.order_by("pk").last().pk

    with django_capture_on_commit_callbacks(execute=True):
        set_mode(purpose, Jurisdiction.US, PolicyMode.OPT_IN)

    after = set(
        SuppressionChange.objects.filter(pk__gt=head).values_list("external_id", "state", "reason")
    )
    # The objector stays out for the same reason and the opted-in member stays in:
    # no entry for either; everyone else there is now out.
    assert after == {(m.external_id, "out", "not-opted-in") for m in bystanders}
    assert not SuppressionChange.objects.filter(pk__gt=head, external_id=elsewhere.external_id)
    policy = JurisdictionPolicy.objects.get(purpose=purpose, jurisdiction=Jurisdiction.US)
    assert {c.changed_at for c in SuppressionChange.objects.filter(pk__gt=head)} == {
        policy.mode_since
    }


def test_a_policy_change_costs_the_same_queries_for_any_number_of_members(
    purpose, django_capture_on_commit_callbacks
):
    def queries_for_a_change(members: int, mode) -> int:
        MemberFactory.create_batch(members, country="DE")
        with django_capture_on_commit_callbacks() as callbacks:
            set_mode(purpose, Jurisdiction.EU, mode)
        with connection.execute_wrapper(counter := QueryCounter()):
            for callback in callbacks:
                callback()
        return counter.count

    assert queries_for_a_change(2, PolicyMode.OPT_OUT) == queries_for_a_change(
        40, PolicyMode.EXCLUDED
    )
    # First entries for the two (in), then out for them and first entries for the forty.
    assert SuppressionChange.objects.filter(purpose=purpose).count() == 2 + 42


class QueryCounter:
    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def test_a_new_purpose_gives_every_member_an_entry(db, django_capture_on_commit_callbacks):
    members = MemberFactory.create_batch(3, country="US")
    with django_capture_on_commit_callbacks(execute=True):
        ads = purpose_create(slug="ads", name="Ads", modes={Jurisdiction.US: PolicyMode.OPT_OUT})
    assert sorted(entries(ads)) == sorted((m.external_id, "in", "not-objected") for m in members)


def test_an_import_gives_new_members_and_new_countries_their_entries(
    purpose, django_capture_on_commit_callbacks
):
    def imported(rows: str) -> None:
        text = "external_id,email,country\n" + rows
        with django_capture_on_commit_callbacks(execute=True):
            members_import(stream=io.StringIO(text))

    imported("m1,m1@example.com,US\nm2,m2@example.com,US\n")
    assert sorted(entries(purpose)) == [("m1", "in", "not-objected"), ("m2", "in", "not-objected")]
    imported("m1,m1@example.com,DE\n")  # moved into the EU, where the use is excluded
    assert entries(purpose)[-1] == ("m1", "out", "jurisdiction-excluded")
    assert len(entries(purpose)) == 3


def test_the_reconcile_appends_what_a_missed_sync_left_out(purpose):
    member = MemberFactory(country="US")
    suppression_feed_sync(purpose=purpose)
    Member.objects.filter(pk=member.pk).update(country="FR", jurisdiction=Jurisdiction.EU)
    assert tasks.suppression_feed_reconcile() == 1
    assert entries(purpose)[-1] == (member.external_id, "out", "jurisdiction-excluded")
    assert tasks.suppression_feed_reconcile() == 0


def test_a_sync_of_many_members_works_in_slices(purpose, settings):
    settings.RENOTIFY_FEED_SYNC_CHUNK = 3
    members = MemberFactory.create_batch(10, country="GB")
    assert suppression_feed_sync() == 10
    assert [e[0] for e in entries(purpose)] == [m.external_id for m in members]
    assert suppression_feed_sync(member_ids=[m.pk for m in members]) == 0


def test_beat_catches_up_with_choices_within_seconds_and_reconciles_hourly(settings):
    entries_by_task = {e["task"]: e["schedule"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    assert entries_by_task["accounts.tasks.suppression_feed_catch_up_task"] <= 10
    assert entries_by_task["accounts.tasks.suppression_feed_reconcile"] <= 3600


def test_a_choice_waits_for_no_feed_work_and_the_catch_up_appends_it(
    purpose, django_assert_max_num_queries
):
    """Recording a choice does nothing for the feed (the notice page's hot path); the
    next catch-up appends its entry, and one after that finds nothing new."""
    member = MemberFactory(country="US")
    suppression_feed_sync(purpose=purpose)
    consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=purpose)
    assert entries(purpose)[-1][1] == "in"

    assert suppression_feed_catch_up() == 1
    assert entries(purpose)[-1] == (member.external_id, "out", "objected")
    # Nothing new: the progress row (made once, then locked) and one read of the ledger,
    # plus the savepoint a test's transaction adds around the block.
    with django_assert_max_num_queries(5):
        assert suppression_feed_catch_up() == 0


def test_the_first_catch_up_gives_members_made_before_the_feed_their_entries(purpose):
    """An upgrade, or members written by a path that does not sync (the demo's seed):
    the first catch-up syncs everyone, not only the members who chose."""
    excluded, here = MemberFactory(country="GB"), MemberFactory(country="US")
    assert suppression_feed_catch_up() == 2
    assert sorted(entries(purpose)) == sorted(
        [
            (excluded.external_id, "out", "jurisdiction-excluded"),
            (here.external_id, "in", "not-objected"),
        ]
    )
    assert suppression_feed_catch_up() == 0


def test_the_catch_up_takes_the_ledger_in_batches_and_misses_nothing(purpose, monkeypatch):
    from accounts.services import suppression_feed

    monkeypatch.setattr(suppression_feed, "CATCH_UP_BATCH", 2)
    members = MemberFactory.create_batch(5, country="US")
    suppression_feed_sync(purpose=purpose)
    for member in members:
        consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=purpose)
    consent_record(member=members[0], action=Action.ACKNOWLEDGE, source=Source.API)

    assert suppression_feed_catch_up() == 5
    assert {e[0] for e in entries(purpose) if e[1] == "out"} == {m.external_id for m in members}
    assert FeedProgress.objects.get().ledger_seq == ConsentEvent.objects.order_by("-seq")[0].seq


def test_a_catch_up_that_fails_leaves_its_batch_for_the_next(purpose, monkeypatch):
    from accounts.services import suppression_feed

    member = MemberFactory(country="US")
    consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=purpose)
    real = suppression_feed.suppression_feed_sync

    def broken(**_kwargs):
        raise DatabaseError("feed table unavailable")

    monkeypatch.setattr(suppression_feed, "suppression_feed_sync", broken)
    with pytest.raises(DatabaseError):
        suppression_feed_catch_up()
    monkeypatch.setattr(suppression_feed, "suppression_feed_sync", real)

    assert suppression_feed_catch_up() == 1
    assert entries(purpose) == [(member.external_id, "out", "objected")]


# --- Append-only ----------------------------------------------------------------------


def test_feed_entries_cannot_be_changed_or_deleted_even_in_raw_sql(purpose):
    MemberFactory(country="GB")
    suppression_feed_sync(purpose=purpose)
    entry = SuppressionChange.objects.get()
    with pytest.raises(TypeError):
        SuppressionChange.objects.filter(pk=entry.pk).update(state="in")
    for statement in (
        "UPDATE accounts_suppressionchange SET state = 'in'",
        "DELETE FROM accounts_suppressionchange",
    ):
        with (
            pytest.raises((IntegrityError, DatabaseError)),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    assert SuppressionChange.objects.get().state == "out"


# --- Snapshot ---------------------------------------------------------------------------


def test_the_snapshot_lists_the_suppressed_members_with_the_cursor_it_is_consistent_with(
    purpose,
):
    MemberFactory(country="US")
    excluded = MemberFactory(country="DE")
    objector = MemberFactory(country="US")
    suppression_feed_sync(purpose=purpose)
    choose(objector, Action.OBJECT, purpose)
    snapshot = suppression_snapshot_open(purpose=purpose)
    lines = [json.loads(line) for line in b"".join(snapshot.lines).splitlines()]
    assert snapshot.cursor == SuppressionChange.objects.order_by("pk").last().pk
    assert sorted((row["external_id"], row["reason"]) for row in lines) == sorted(
        [(excluded.external_id, "jurisdiction-excluded"), (objector.external_id, "objected")]
    )
    since = {row["external_id"]: row["since"] for row in lines}[objector.external_id]
    created = objector.consent_events.get().created_at
    assert since == created.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_an_empty_feed_has_an_empty_snapshot_at_cursor_zero(purpose):
    snapshot = suppression_snapshot_open(purpose=purpose)
    assert snapshot.cursor == 0 and b"".join(snapshot.lines) == b""


def test_an_external_id_with_quotes_and_control_characters_survives_the_snapshot(purpose):
    odd = 'a"b\\c\x01\x02,d\té'
    MemberFactory(country="GB", external_id=odd, email="odd@example.com")
    suppression_feed_sync(purpose=purpose)
    snapshot = suppression_snapshot_open(purpose=purpose)
    lines = b"".join(snapshot.lines).splitlines()
    assert [json.loads(line)["external_id"] for line in lines] == [odd]


# --- Snapshot plus follow reproduces the suppression list (property) ---------------------

_purposes = itertools.count()
member_index = st.integers(0, 20)
operation = st.one_of(
    st.tuples(st.just("choose"), member_index, st.sampled_from(list(Action)[:3])),
    st.tuples(st.just("policy"), st.sampled_from(list(Jurisdiction)), st.sampled_from(PolicyMode)),
    st.tuples(st.just("join"), st.sampled_from(sorted(COUNTRY_IN.values()))),
    st.tuples(st.just("move"), member_index, st.sampled_from(sorted(COUNTRY_IN.values()))),
    st.tuples(st.just("read"), st.integers(1, 4)),
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    modes=st.fixed_dictionaries({j: st.sampled_from(PolicyMode) for j in Jurisdiction}),
    operations=st.lists(operation, max_size=25),
)
def test_a_snapshot_then_the_changes_fold_into_exactly_the_suppression_list(
    db, django_capture_on_commit_callbacks, modes, operations
):
    run = next(_purposes)
    with django_capture_on_commit_callbacks(execute=True):
        purpose = purpose_create(slug=f"use-{run}", name=f"Use {run}", modes=modes)
    members = [MemberFactory(country="US"), MemberFactory(country="DE")]
    suppression_feed_sync(member_ids=[m.pk for m in members])
    follower = None
    for op, *args in operations:
        if op == "choose":
            choose(members[args[0] % len(members)], args[1], purpose)
        elif op == "policy":
            with django_capture_on_commit_callbacks(execute=True):
                set_mode(purpose, *args)
        elif op == "join":
            # A member made elsewhere gets its entry from its maker's sync (the contract).
            members.append(MemberFactory(country=args[0]))
            suppression_feed_sync(member_ids=[members[-1].pk])
        elif op == "move":
            member = members[args[0] % len(members)]
            line = f"{member.external_id},{member.email},{args[1]}\n"
            with django_capture_on_commit_callbacks(execute=True):
                members_import(stream=io.StringIO("external_id,email,country\n" + line))
        else:
            follower = follower or Follower(purpose, page_size=args[0])
            follower.read()
    follower = follower or Follower(purpose)
    follower.read()

    assert follower.folded() == suppression_set(purpose)
    after_snapshot = SuppressionChange.objects.filter(purpose=purpose, pk__gt=follower.start)
    assert follower.seen == list(after_snapshot.order_by("pk").values_list("pk", flat=True))


# --- Concurrent writers on PostgreSQL ------------------------------------------------------


def _writers_and_a_reader(purpose, members, eu_members):
    """Writers objecting and withdrawing (one member list each) and flipping the EU's
    policy, while a pipeline follows the feed in small pages until they are done."""
    writing = threading.Semaphore(0)
    follower = Follower(purpose, page_size=4)

    def writer(own):
        def run():
            try:
                for round_ in range(3):
                    for member in own:
                        action = Action.OBJECT if round_ % 2 == 0 else Action.WITHDRAW_OBJECTION
                        choose(member, action, purpose)
            finally:
                writing.release()

        return run

    def policy_flipper():
        try:
            for mode in (PolicyMode.OPT_IN, PolicyMode.EXCLUDED, PolicyMode.OPT_OUT):
                set_mode(purpose, Jurisdiction.EU, mode)
        finally:
            writing.release()

    def reader():
        follower.read()  # the snapshot, taken while the writers start
        done = 0
        while done < len(calls) - 1:
            follower.read()
            if writing.acquire(timeout=0.01):
                done += 1
        follower.read()

    slices = [members[i::3] for i in range(3)]
    calls = [*(writer(own) for own in slices), policy_flipper, reader]
    return at_once(*calls), follower


@pytest.mark.django_db(transaction=True)
def test_a_follower_misses_nothing_while_writers_append_concurrently(services):
    purpose = ai_training()
    members = MemberFactory.create_batch(12, country="US")
    eu_members = MemberFactory.create_batch(6, country="DE")
    suppression_feed_sync(purpose=purpose)

    errors, follower = _writers_and_a_reader(purpose, members, eu_members)

    assert errors == []
    after_snapshot = SuppressionChange.objects.filter(purpose=purpose, pk__gt=follower.start)
    assert follower.seen == list(after_snapshot.order_by("pk").values_list("pk", flat=True))
    assert len(follower.seen) >= 12 * 3  # every objection and withdrawal at least
    assert follower.folded() == suppression_set(purpose)


@pytest.mark.django_db(transaction=True)
def test_a_snapshot_stays_consistent_with_its_cursor_while_the_feed_moves_on(services):
    purpose = ai_training()
    members = MemberFactory.create_batch(3, country="US")
    suppression_feed_sync(purpose=purpose)
    snapshot = suppression_snapshot_open(purpose=purpose)  # head read, rows not yet

    # Another connection (this one is in the snapshot's transaction) records an objection.
    assert at_once(lambda: choose(members[0], Action.OBJECT, purpose)) == []
    assert b"".join(snapshot.lines) == b""  # as of its cursor: nobody out yet
    assert SuppressionChange.objects.order_by("pk").last().pk > snapshot.cursor
    follower = Follower(purpose)
    follower.read()
    assert follower.folded() == {(members[0].external_id, "objected")}
