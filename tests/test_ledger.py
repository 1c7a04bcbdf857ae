"""The consent ledger is append-only and its hash chain catches tampering."""

from contextlib import contextmanager
from itertools import pairwise

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from accounts.models import Action, ConsentEvent, LedgerCheck, Preference, Source
from accounts.services.consent import consent_record
from tests.factories import MemberFactory
from tests.ledger_helpers import ledger_triggers_disabled

pytestmark = pytest.mark.django_db


@pytest.fixture
def ledger(purpose):
    """Five events by three members: objections, a withdrawal, an acknowledgement."""
    alice, bob, chloe = MemberFactory(), MemberFactory(country="US"), MemberFactory()
    consent_record(
        member=alice, action=Action.OBJECT, source=Source.PREFERENCE_PAGE, purpose=purpose
    )
    consent_record(member=bob, action=Action.OBJECT, source=Source.API, purpose=purpose)
    consent_record(member=bob, action=Action.WITHDRAW_OBJECTION, source=Source.API, purpose=purpose)
    consent_record(
        member=chloe,
        action=Action.ACKNOWLEDGE,
        source=Source.PREFERENCE_PAGE,
        notice_version_id=7,
        delivery_id=70,
        ip="203.0.113.9",
        user_agent="Mozilla/5.0",
    )
    consent_record(member=chloe, action=Action.UNSUBSCRIBE, source=Source.ONE_CLICK)
    return ConsentEvent.objects.order_by("seq")


def test_events_form_a_chain_from_genesis(ledger):
    events = list(ledger)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == "0" * 64
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(events))


def test_ip_is_stored_only_as_a_keyed_hash(ledger):
    acknowledged = ledger.get(action=Action.ACKNOWLEDGE)
    assert len(acknowledged.ip_hash) == 64
    assert "203.0.113" not in acknowledged.ip_hash
    assert ConsentEvent.objects.filter(ip_hash__contains="203.0.113").count() == 0


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE accounts_consentevent SET action = 'opt-in' WHERE seq = 1",
        "DELETE FROM accounts_consentevent WHERE seq = 1",
    ],
)
def test_raw_sql_update_and_delete_are_refused_by_the_database(ledger, statement):
    before = list(ledger.values_list("seq", "action", "hash"))
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert list(ledger.values_list("seq", "action", "hash")) == before


@pytest.mark.skipif(connection.vendor != "postgresql", reason="TRUNCATE is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_truncate_is_refused_on_postgresql(ledger):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("TRUNCATE accounts_consentevent CASCADE")
    assert ledger.count() == 5


@pytest.mark.django_db(transaction=True)
def test_committed_events_are_refused_updates_too(ledger):
    """Outside a test transaction, as in production: the trigger fires on committed rows."""
    with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_consentevent SET comment = 'x'")
    assert not ledger.filter(comment="x").exists()


def test_the_orm_refuses_to_change_or_delete_events(ledger):
    event = ledger.first()
    event.comment = "edited"
    with pytest.raises(TypeError, match="append-only"):
        event.save()
    with pytest.raises(TypeError, match="append-only"):
        event.delete()
    with pytest.raises(TypeError, match="append-only"):
        ConsentEvent.objects.filter(seq=1).update(comment="edited")
    with pytest.raises(TypeError, match="append-only"):
        ConsentEvent.objects.all().delete()
    assert ledger.first().comment == ""


def test_verify_ledger_passes_on_an_intact_chain(ledger, capsys):
    call_command("verify_ledger")
    assert "ledger intact: 5 events verified" in capsys.readouterr().out
    assert LedgerCheck.objects.get().intact


@pytest.mark.parametrize(
    ("tamper", "broken_at"),
    [
        ("UPDATE accounts_consentevent SET action = 'withdraw-objection' WHERE seq = 2", 2),
        ("UPDATE accounts_consentevent SET member_id = member_id + 1 WHERE seq = 3", 3),
        ("UPDATE accounts_consentevent SET created_at = created_at WHERE seq = 4", None),
        ("UPDATE accounts_consentevent SET comment = 'x' WHERE seq = 4", 4),
        ("DELETE FROM accounts_consentevent WHERE seq = 4", 4),
        ("UPDATE accounts_consentevent SET hash = prev_hash WHERE seq = 5", 5),
    ],
)
def test_verify_ledger_reports_the_first_tampered_event(ledger, tamper, broken_at):
    with ledger_triggers_disabled() as cursor:
        cursor.execute(tamper)
    if broken_at is None:  # a no-op "tamper" proves the check does not cry wolf
        call_command("verify_ledger")
        return
    with pytest.raises(CommandError, match=f"broken at sequence number {broken_at}:") as error:
        call_command("verify_ledger")
    assert error.value.returncode == 1
    check = LedgerCheck.objects.get()
    assert (check.intact, check.first_broken_seq) == (False, broken_at)


def test_cutting_events_off_the_end_is_caught_by_the_next_check(ledger):
    call_command("verify_ledger")
    with ledger_triggers_disabled() as cursor:
        cursor.execute("DELETE FROM accounts_consentevent WHERE seq = 5")
    with pytest.raises(CommandError, match="broken at sequence number 5"):
        call_command("verify_ledger")


def test_a_different_key_cannot_verify_the_chain(ledger, settings):
    settings.LEDGER_HMAC_KEY = "someone-elses-key"
    with pytest.raises(CommandError, match="broken at sequence number 1"):
        call_command("verify_ledger")


def test_objecting_twice_records_one_event(purpose):
    member = MemberFactory(country="US")
    first = consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=purpose)
    again = consent_record(
        member=member, action=Action.OBJECT, source=Source.PREFERENCE_PAGE, purpose=purpose
    )
    assert (first.created, again.created) == (True, False)
    assert again.event == first.event
    assert ConsentEvent.objects.count() == 1
    assert Preference.objects.get(member=member).choice == "out"


def test_choice_and_preference_change_together(purpose):
    member = MemberFactory(country="US")
    recorded = consent_record(
        member=member, action=Action.OBJECT, source=Source.ADMIN, purpose=purpose
    )
    pref = Preference.objects.get(member=member, purpose=purpose)
    assert (pref.choice, pref.last_event, pref.chosen_at) == (
        "out",
        recorded.event,
        recorded.event.created_at,
    )
    consent_record(
        member=member, action=Action.WITHDRAW_OBJECTION, source=Source.ADMIN, purpose=purpose
    )
    pref.refresh_from_db()
    assert pref.choice is None  # back to the jurisdiction's default, not an opt-in
    assert ConsentEvent.objects.count() == 2


def test_withdrawing_without_an_objection_records_nothing(purpose):
    member = MemberFactory(country="US")
    recorded = consent_record(
        member=member, action=Action.WITHDRAW_OBJECTION, source=Source.API, purpose=purpose
    )
    assert (recorded.event, recorded.created) == (None, False)
    assert ConsentEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)  # the real transaction, not a test's savepoint
def test_a_failed_preference_write_leaves_no_event(purpose):
    """The database refuses the Preference row (a trigger stands in for a full disk):
    the event written before it (or in the same statement) is gone with it."""
    member = MemberFactory(country="US")
    with disk_full_on_preference_insert(), pytest.raises(DatabaseError):
        consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=purpose)
    assert ConsentEvent.objects.count() == 0 and not Preference.objects.exists()


@contextmanager
def disk_full_on_preference_insert():
    """A trigger that refuses every Preference INSERT, dropped again afterwards (this is
    a transactional test: nothing is rolled back for it)."""
    postgresql = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        if postgresql:
            cursor.execute(
                "CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'disk full'; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER test_disk_full BEFORE INSERT ON accounts_preference"
                " FOR EACH ROW EXECUTE FUNCTION test_disk_full()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER test_disk_full BEFORE INSERT ON accounts_preference"
                " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER test_disk_full" + (" ON accounts_preference" if postgresql else "")
            )
            if postgresql:
                cursor.execute("DROP FUNCTION test_disk_full()")


def test_unsubscribe_marks_the_member_not_the_address_and_is_idempotent(purpose):
    member = MemberFactory()
    consent_record(member=member, action=Action.UNSUBSCRIBE, source=Source.ONE_CLICK)
    consent_record(member=member, action=Action.UNSUBSCRIBE, source=Source.ONE_CLICK)
    member.refresh_from_db()
    [event] = ConsentEvent.objects.filter(action=Action.UNSUBSCRIBE)
    assert (member.email_status, member.unsubscribed_at) == ("ok", event.created_at)


def test_acknowledging_the_same_delivery_twice_records_one_event(purpose):
    member = MemberFactory()
    for _ in range(2):
        consent_record(
            member=member,
            action=Action.ACKNOWLEDGE,
            source=Source.PREFERENCE_PAGE,
            notice_version_id=1,
            delivery_id=10,
        )
    consent_record(
        member=member,
        action=Action.ACKNOWLEDGE,
        source=Source.PREFERENCE_PAGE,
        notice_version_id=2,
        delivery_id=11,
    )
    assert ConsentEvent.objects.filter(action=Action.ACKNOWLEDGE).count() == 2


@pytest.mark.parametrize(
    ("action", "with_purpose"), [(Action.OBJECT, False), (Action.ACKNOWLEDGE, True)]
)
def test_purpose_must_match_the_action(purpose, action, with_purpose):
    with pytest.raises(ValueError, match="purpose"):
        consent_record(
            member=MemberFactory(),
            action=action,
            source=Source.API,
            purpose=purpose if with_purpose else None,
        )
    assert ConsentEvent.objects.count() == 0


@pytest.mark.parametrize(
    "action", [Action.OBJECT, Action.WITHDRAW_OBJECTION, Action.ACKNOWLEDGE, Action.UNSUBSCRIBE]
)
def test_a_ledger_write_inside_a_callers_transaction_is_refused_loudly(purpose, action):
    """Inside a caller's transaction the ledger would stay held until that one commits."""
    member = MemberFactory(country="US")
    kwargs = {"purpose": purpose} if action in (Action.OBJECT, Action.WITHDRAW_OBJECTION) else {}
    if action == Action.WITHDRAW_OBJECTION:
        consent_record(member=member, action=Action.OBJECT, source=Source.API, purpose=purpose)

    with pytest.raises(RuntimeError, match="inside another"), transaction.atomic():
        consent_record(member=member, action=action, source=Source.API, **kwargs)

    assert ConsentEvent.objects.filter(action=action).count() == 0
    recorded = consent_record(member=member, action=action, source=Source.API, **kwargs)
    assert recorded.created  # on its own, the same choice is recorded
