"""Cutting the ledger's tail is noticed: checks are append-only, the head is checked
often and exported to a sink the database's users cannot rewrite, and the stored
state is replayed against the ledger."""

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts import ledger, tasks
from accounts.models import Action, ConsentEvent, LedgerCheck, Member, Source
from accounts.services.consent import consent_record
from tests.factories import MemberFactory
from tests.ledger_helpers import ledger_triggers_disabled

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(purpose):
    """Alice objected; Bob objected and withdrew; Chloe unsubscribed: five events."""
    alice, bob, chloe = (
        MemberFactory(external_id="alice", country="US"),
        MemberFactory(external_id="bob", country="US"),
        MemberFactory(external_id="chloe"),
    )
    consent_record(member=alice, action=Action.OBJECT, source=Source.API, purpose=purpose)
    consent_record(member=bob, action=Action.OBJECT, source=Source.API, purpose=purpose)
    consent_record(member=bob, action=Action.WITHDRAW_OBJECTION, source=Source.API, purpose=purpose)
    consent_record(
        member=chloe,
        action=Action.ACKNOWLEDGE,
        source=Source.PREFERENCE_PAGE,
        notice_version_id=7,
        delivery_id=70,
    )
    consent_record(member=chloe, action=Action.UNSUBSCRIBE, source=Source.ONE_CLICK)
    return {"alice": alice, "bob": bob, "chloe": chloe}


@pytest.fixture
def sink_file(settings, tmp_path):
    path = tmp_path / "ledger-heads.jsonl"
    settings.RENOTIFY_LEDGER_HEAD_SINK = str(path)
    return path


def more_events(purpose, count: int) -> None:
    for _ in range(count):
        consent_record(
            member=MemberFactory(country="US"),
            action=Action.OBJECT,
            source=Source.PREFERENCE_PAGE,
            purpose=purpose,
        )


def cut_the_tail(after_seq: int, *, checks_too: bool = False) -> None:
    """What an attacker with the database's rights does: triggers off, delete."""
    with ledger_triggers_disabled() as cursor:
        cursor.execute(
            "DELETE FROM accounts_preference WHERE last_event_id IN"
            " (SELECT id FROM accounts_consentevent WHERE seq > %s)",
            [after_seq],
        )
        cursor.execute("DELETE FROM accounts_consentevent WHERE seq > %s", [after_seq])
        if checks_too:
            cursor.execute("DELETE FROM accounts_ledgercheck")


def sink_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- Ledger checks are append-only -----------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE accounts_ledgercheck SET head_seq = 0",
        "DELETE FROM accounts_ledgercheck",
    ],
)
def test_the_database_refuses_to_change_or_delete_ledger_checks(people, statement):
    call_command("verify_ledger")
    before = list(LedgerCheck.objects.values_list("pk", "head_seq", "head_hash"))
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert list(LedgerCheck.objects.values_list("pk", "head_seq", "head_hash")) == before


@pytest.mark.skipif(connection.vendor != "postgresql", reason="TRUNCATE is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_truncating_ledger_checks_is_refused_on_postgresql(people):
    call_command("verify_ledger")
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("TRUNCATE accounts_ledgercheck")
    assert LedgerCheck.objects.count() == 1


def test_the_orm_refuses_to_change_or_delete_ledger_checks(people):
    call_command("verify_ledger")
    check = LedgerCheck.objects.get()
    check.head_seq = 0
    with pytest.raises(TypeError, match="append-only"):
        check.save()
    with pytest.raises(TypeError, match="append-only"):
        check.delete()
    with pytest.raises(TypeError, match="append-only"):
        LedgerCheck.objects.update(head_seq=0)
    with pytest.raises(TypeError, match="append-only"):
        LedgerCheck.objects.all().delete()
    assert LedgerCheck.objects.get().head_seq == 5


def test_cutting_the_tail_is_noticed_because_the_checks_cannot_be_deleted(people):
    call_command("verify_ledger")
    cut_the_tail(3)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM accounts_ledgercheck")

    with pytest.raises(CommandError, match="broken at sequence number 4") as error:
        call_command("verify_ledger")
    assert error.value.returncode == 1


# --- The frequent head check ----------------------------------------------------------


def test_events_added_after_a_check_and_cut_before_the_next_are_noticed(people, purpose):
    tasks.ledger_verify()  # the nightly walk: head 5
    more_events(purpose, 2)
    first = LedgerCheck.objects.get(pk=tasks.ledger_head_verify())
    assert (first.intact, first.head_seq, first.kind) == (True, 7, "head")

    cut_the_tail(5)

    second = LedgerCheck.objects.get(pk=tasks.ledger_head_verify())
    assert (second.intact, second.first_broken_seq) == (False, 6)
    assert "event 7" in second.detail
    with pytest.raises(CommandError, match="broken at sequence number 6"):
        call_command("verify_ledger")


def test_the_head_check_walks_only_the_events_since_the_last_verified_head(
    people, purpose, django_assert_num_queries
):
    tasks.ledger_verify()
    more_events(purpose, 3)
    # One query for the last verified head, one for the events from it on, one insert.
    with django_assert_num_queries(3):
        check_id = tasks.ledger_head_verify()
    check = LedgerCheck.objects.get(pk=check_id)
    assert (check.intact, check.events_checked, check.head_seq) == (True, 3, 8)
    assert check.head_hash == ConsentEvent.objects.get(seq=8).hash


def test_the_head_check_finds_a_changed_event_after_the_verified_head(people, purpose):
    tasks.ledger_verify()
    more_events(purpose, 2)
    with ledger_triggers_disabled() as cursor:
        cursor.execute("UPDATE accounts_consentevent SET comment = 'x' WHERE seq = 6")
    check = LedgerCheck.objects.get(pk=tasks.ledger_head_verify())
    assert (check.intact, check.first_broken_seq) == (False, 6)


def test_the_head_check_finds_the_verified_head_replaced(people, purpose):
    """The tail is cut and new choices arrive: the event at the verified head's seq
    exists again, with another hash."""
    tasks.ledger_verify()
    cut_the_tail(4)
    more_events(purpose, 2)
    check = LedgerCheck.objects.get(pk=tasks.ledger_head_verify())
    assert (check.intact, check.first_broken_seq) == (False, 5)
    assert "changed" in check.detail


def test_a_head_check_during_the_nightly_walk_is_no_cut_tail(people, purpose, monkeypatch):
    """The walk reads a snapshot; a head check recorded meanwhile saw later events."""
    tasks.ledger_head_verify()
    walk = ledger.chain_verify

    def walk_while_choices_arrive(events, **kwargs):
        verdict = walk(events, **kwargs)
        monkeypatch.setattr(ledger, "chain_verify", walk)  # the head check walks plainly
        more_events(purpose, 2)
        assert LedgerCheck.objects.get(pk=tasks.ledger_head_verify()).head_seq == 7
        return verdict

    monkeypatch.setattr(ledger, "chain_verify", walk_while_choices_arrive)
    check = LedgerCheck.objects.get(pk=tasks.ledger_verify())
    assert (check.intact, check.head_seq) == (True, 5)


def test_the_first_head_check_walks_the_whole_chain(people):
    check = LedgerCheck.objects.get(pk=tasks.ledger_head_verify())
    assert (check.intact, check.events_checked, check.head_seq) == (True, 5, 5)


def test_beat_checks_the_head_every_few_minutes(settings):
    entries = {e["task"]: e["schedule"] for e in settings.CELERY_BEAT_SCHEDULE.values()}
    every = settings.RENOTIFY_LEDGER_HEAD_CHECK_SECONDS
    assert entries["accounts.tasks.ledger_head_verify"] == every <= 600
    assert "accounts.tasks.ledger_verify" in entries


# --- The head sink ---------------------------------------------------------------------


def test_each_check_appends_its_head_to_the_sink_file(people, purpose, sink_file):
    call_command("verify_ledger")
    more_events(purpose, 1)
    tasks.ledger_head_verify()

    lines = sink_lines(sink_file)
    checks = LedgerCheck.objects.order_by("pk")
    assert [(line["seq"], line["hash"]) for line in lines] == [
        (5, ConsentEvent.objects.get(seq=5).hash),
        (6, ConsentEvent.objects.get(seq=6).hash),
    ]
    assert [line["checked_at"] for line in lines] == [c.checked_at.isoformat() for c in checks]
    assert [c.sink_error for c in checks] == ["", ""]


def test_cutting_the_tail_and_the_checks_is_caught_against_the_sink_file(people, sink_file):
    call_command("verify_ledger")
    cut_the_tail(3, checks_too=True)  # every trigger off: nothing in the database remains

    with pytest.raises(CommandError, match="broken at sequence number 4") as error:
        call_command("verify_ledger", "--against", str(sink_file))
    assert error.value.returncode == 1
    assert "event 5" in str(error.value)


def test_against_a_sink_file_that_agrees_the_ledger_is_intact(people, sink_file, capsys):
    call_command("verify_ledger")
    tasks.ledger_head_verify()
    call_command("verify_ledger", "--against", str(sink_file))
    assert "2 recorded heads agree" in capsys.readouterr().out


def test_against_finds_a_recorded_head_whose_event_changed(people, purpose, sink_file):
    call_command("verify_ledger")
    cut_the_tail(4, checks_too=True)
    more_events(purpose, 1)  # a new event 5, with another hash
    with pytest.raises(CommandError, match="broken at sequence number 5"):
        call_command("verify_ledger", "--against", str(sink_file))


def test_against_reads_heads_from_syslog_lines(people, tmp_path, capsys):
    head = ConsentEvent.objects.get(seq=5)
    collected = tmp_path / "syslog"
    collected.write_text(
        "Dec  3 03:17:02 web1 CRON[812]: (root) CMD (run-parts /etc/cron.hourly)\n"
        f'Dec  3 03:17:05 web1 renotify-ledger-head: {{"seq":5,"hash":"{head.hash}",'
        '"checked_at":"2026-12-03T03:17:05+00:00","intact":true}\n'
    )
    call_command("verify_ledger", "--against", str(collected))
    assert "1 recorded heads agree" in capsys.readouterr().out

    cut_the_tail(4, checks_too=True)
    with pytest.raises(CommandError, match="broken at sequence number 5"):
        call_command("verify_ledger", "--against", str(collected))


def test_against_a_missing_file_is_an_error(people, tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("verify_ledger", "--against", str(tmp_path / "nowhere.jsonl"))


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers["Content-Length"])
        self.server.received.append(
            (self.path, self.headers["Content-Type"], json.loads(self.rfile.read(length)))
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass  # keep the test output quiet


@pytest.fixture
def http_receiver():
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_each_check_posts_its_head_to_an_http_sink(people, settings, http_receiver):
    settings.RENOTIFY_LEDGER_HEAD_SINK = f"http://127.0.0.1:{http_receiver.server_port}/heads"
    check = LedgerCheck.objects.get(pk=tasks.ledger_head_verify())

    [(path, content_type, body)] = http_receiver.received
    assert (path, content_type) == ("/heads", "application/json")
    assert body == {
        "seq": 5,
        "hash": check.head_hash,
        "checked_at": check.checked_at.isoformat(),
        "intact": True,
    }
    assert check.sink_error == ""


def test_an_unreachable_sink_is_recorded_and_logged_and_the_check_still_counts(
    people, settings, caplog
):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.RENOTIFY_LEDGER_HEAD_SINK = f"http://127.0.0.1:{port}/heads"
    with caplog.at_level(logging.ERROR, logger="accounts"):
        check = LedgerCheck.objects.get(pk=tasks.ledger_head_verify())
    assert check.intact and check.head_seq == 5
    assert "refused" in check.sink_error.lower()
    assert "head sink" in caplog.text


def test_plain_http_to_another_host_is_refused(people, settings, caplog):
    settings.RENOTIFY_LEDGER_HEAD_SINK = "http://heads.example.com/ledger"
    check = LedgerCheck.objects.get(pk=tasks.ledger_head_verify())
    assert check.intact
    assert "use https://" in check.sink_error


def test_a_hung_sink_gives_up_after_the_timeout(people, settings):
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        settings.RENOTIFY_LEDGER_HEAD_SINK = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        settings.RENOTIFY_LEDGER_HEAD_SINK_TIMEOUT = 0.3
        check = LedgerCheck.objects.get(pk=tasks.ledger_head_verify())
    assert check.intact
    assert "timed out" in check.sink_error


def test_each_check_sends_its_head_to_syslog(people, settings):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as syslog:
        syslog.bind(("127.0.0.1", 0))
        syslog.settimeout(5)
        settings.RENOTIFY_LEDGER_HEAD_SINK = f"syslog:127.0.0.1:{syslog.getsockname()[1]}"
        check = LedgerCheck.objects.get(pk=tasks.ledger_head_verify())
        datagram = syslog.recv(4096).decode()
    assert "renotify-ledger-head" in datagram
    payload = json.loads(datagram[datagram.index("{") :].rstrip("\x00"))
    assert (payload["seq"], payload["hash"]) == (5, check.head_hash)


# --- Replaying the ledger into the stored state --------------------------------------


def test_verify_ledger_reports_a_preference_with_no_event_behind_it(people, capsys):
    with connection.cursor() as cursor:  # no trigger guards preferences: plain SQL
        cursor.execute(
            "UPDATE accounts_preference SET choice = 'in' WHERE member_id = %s",
            [people["alice"].pk],
        )
    with pytest.raises(CommandError, match="1 member state") as error:
        call_command("verify_ledger")
    assert error.value.returncode == 1
    out = capsys.readouterr().out
    assert "alice" in out and "stored 'in', ledger 'out'" in out
    assert "bob" not in out and "chloe" not in out
    # The chain itself is intact, and the check says so.
    assert LedgerCheck.objects.get().intact


def test_verify_ledger_reports_a_lost_objection(people, capsys):
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM accounts_preference WHERE member_id = %s", [people["alice"].pk])
    with pytest.raises(CommandError, match="1 member state"):
        call_command("verify_ledger")
    assert "stored none, ledger 'out'" in capsys.readouterr().out


def test_verify_ledger_reports_a_choice_made_up_without_the_ledger(people, purpose, capsys):
    dora = MemberFactory(external_id="dora", country="US")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO accounts_preference (member_id, purpose_id, choice, chosen_at)"
            " VALUES (%s, %s, 'out', CURRENT_TIMESTAMP)",
            [dora.pk, purpose.pk],
        )
    with pytest.raises(CommandError, match="1 member state"):
        call_command("verify_ledger")
    assert "dora" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("who", "unsubscribed", "expected"),
    [
        ("alice", True, "alice: stored unsubscribed, no unsubscribe in the ledger"),
        ("chloe", False, "chloe: ledger unsubscribed, stored not unsubscribed"),
    ],
)
def test_verify_ledger_reports_an_unsubscribe_state_without_its_event(
    people, capsys, who, unsubscribed, expected
):
    at = timezone.now() if unsubscribed else None
    Member.objects.filter(pk=people[who].pk).update(unsubscribed_at=at)
    with pytest.raises(CommandError, match="1 member state"):
        call_command("verify_ledger")
    assert expected in capsys.readouterr().out


def test_an_intact_ledger_and_state_pass_every_check(people, capsys):
    call_command("verify_ledger")
    out = capsys.readouterr().out
    assert "ledger intact: 5 events verified" in out
    assert "stored state matches the ledger" in out
