"""Suppression export: exactly the members who are out, why, since when, streamed.

Every assertion runs unchanged on SQLite (Python's csv writer) and on PostgreSQL
(where the CSV comes from COPY), so the two paths cannot drift apart.
"""

import csv
import io
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext

from accounts.models import Action, JurisdictionPolicy, Member, PolicyMode, Source
from accounts.services.consent import consent_record
from accounts.services.policies import policy_set_mode
from accounts.services.suppression_export import suppressions_export
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

HEADER = ("external_id", "jurisdiction", "reason", "since")
# Fractions of a second on purpose: "since" is truncated to whole seconds, never rounded.
JOINED = datetime(2031, 3, 1, 10, 0, 0, 250_000, tzinfo=UTC)
CHOSE = datetime(2031, 3, 2, 9, 30, 15, 900_000, tzinfo=UTC)
OTHER_BECAME_OPT_IN = datetime(2031, 3, 3, tzinfo=UTC)
JOINED_LATE = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)

# Members in creation (= id) order. Names run backwards through the alphabet so that
# ordering by external_id could not pass for ordering by id.
POPULATION = [
    # (external_id, country, what they did)
    ("zoe-gb", "GB", []),
    ("yan-de", "DE", []),
    ("xia-is", "IS", []),
    ("wim-ch", "CH", []),
    ("vic-de-objected", "DE", [Action.OBJECT]),
    ("uma-us", "US", []),
    ("tom-us-objected", "US", [Action.OBJECT]),
    ("sam-us-withdrew", "US", [Action.OBJECT, Action.WITHDRAW_OBJECTION]),
    ("rio-br", "BR", []),
    ("quinn-br-opted-in", "BR", [Action.OPT_IN]),
    ("pia-br-objected", "BR", [Action.OBJECT]),
    ("nia-us-opted-in", "US", [Action.OPT_IN]),
]
# ai-training: UK/EU/EEA/CH excluded, US opt-out, OTHER switched to opt-in for these tests.
EXPECTED = [
    ("zoe-gb", "UK", "jurisdiction-excluded", "2031-03-01T10:00:00Z"),
    ("yan-de", "EU", "jurisdiction-excluded", "2031-03-01T10:00:00Z"),
    ("xia-is", "EEA", "jurisdiction-excluded", "2031-03-01T10:00:00Z"),
    ("wim-ch", "CH", "jurisdiction-excluded", "2031-03-01T10:00:00Z"),
    # Objecting changes nothing where the data is not used anyway.
    ("vic-de-objected", "EU", "jurisdiction-excluded", "2031-03-01T10:00:00Z"),
    ("tom-us-objected", "US", "objected", "2031-03-02T09:30:15Z"),
    # Out since the policy changed, not since they joined.
    ("rio-br", "OTHER", "not-opted-in", "2031-03-03T00:00:00Z"),
    ("pia-br-objected", "OTHER", "objected", "2031-03-02T09:30:15Z"),
    # Joined after the change: out since they joined.
    ("ola-br-late", "OTHER", "not-opted-in", "2031-03-04T12:00:00Z"),
]
EXPECTED_CSV = (
    b"external_id,jurisdiction,reason,since\n"
    b"zoe-gb,UK,jurisdiction-excluded,2031-03-01T10:00:00Z\n"
    b"yan-de,EU,jurisdiction-excluded,2031-03-01T10:00:00Z\n"
    b"xia-is,EEA,jurisdiction-excluded,2031-03-01T10:00:00Z\n"
    b"wim-ch,CH,jurisdiction-excluded,2031-03-01T10:00:00Z\n"
    b"vic-de-objected,EU,jurisdiction-excluded,2031-03-01T10:00:00Z\n"
    b"tom-us-objected,US,objected,2031-03-02T09:30:15Z\n"
    b"rio-br,OTHER,not-opted-in,2031-03-03T00:00:00Z\n"
    b"pia-br-objected,OTHER,objected,2031-03-02T09:30:15Z\n"
    b"ola-br-late,OTHER,not-opted-in,2031-03-04T12:00:00Z\n"
)


@pytest.fixture
def population(purpose):
    """The members above; returns the objection event of each member who objected."""
    with time_machine.travel(JOINED, tick=False):
        members = {ext: MemberFactory(external_id=ext, country=c) for ext, c, _ in POPULATION}
    objections = {}
    with time_machine.travel(CHOSE, tick=False):
        for ext, _country, actions in POPULATION:
            for action in actions:
                recorded = consent_record(
                    member=members[ext], action=action, source=Source.ADMIN, purpose=purpose
                )
                if action == Action.OBJECT:
                    objections[ext] = recorded.event
    with time_machine.travel(OTHER_BECAME_OPT_IN, tick=False):
        policy = JurisdictionPolicy.objects.get(purpose=purpose, jurisdiction="OTHER")
        policy_set_mode(policy=policy, mode=PolicyMode.OPT_IN, by=None)
    with time_machine.travel(JOINED_LATE, tick=False):
        MemberFactory(external_id="ola-br-late", country="BR")
    return objections


def export_bytes(purpose, fmt: str) -> bytes:
    out = io.BytesIO()
    suppressions_export(purpose=purpose, out=out, fmt=fmt)
    return out.getvalue()


def parse(data: bytes, fmt: str) -> list[tuple]:
    """The rows of an export as tuples in column order; a CSV's header is checked and dropped."""
    text = data.decode("utf-8")
    if fmt == "csv":
        header, *rows = csv.reader(io.StringIO(text, newline=""))
        assert tuple(header) == HEADER
        return [tuple(row) for row in rows]
    objects = [json.loads(line) for line in text.splitlines()]
    assert all(tuple(obj) == HEADER for obj in objects), "every object has the columns in order"
    return [tuple(obj.values()) for obj in objects]


FORMATS = pytest.mark.parametrize("fmt", ["csv", "jsonl"])


@FORMATS
def test_export_lists_exactly_the_members_who_are_out_with_reasons_in_id_order(
    population, purpose, fmt
):
    assert parse(export_bytes(purpose, fmt), fmt) == EXPECTED


def test_csv_export_is_exactly_these_bytes(population, purpose):
    assert export_bytes(purpose, "csv") == EXPECTED_CSV


@FORMATS
def test_export_returns_the_number_of_rows_written(population, purpose, fmt):
    assert suppressions_export(purpose=purpose, out=io.BytesIO(), fmt=fmt) == len(EXPECTED)


@FORMATS
def test_since_of_an_objection_is_when_the_member_objected_in_utc(population, purpose, fmt):
    rows = {row[0]: row for row in parse(export_bytes(purpose, fmt), fmt)}

    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[3]) for row in rows.values())
    objected = {ext for ext, row in rows.items() if row[2] == "objected"}
    assert objected == {"tom-us-objected", "pia-br-objected"}
    for ext in objected:
        since = datetime.fromisoformat(rows[ext][3].replace("Z", "+00:00"))
        assert since == population[ext].created_at.replace(microsecond=0)


@FORMATS
def test_export_follows_a_later_change_of_mind(population, purpose, fmt):
    tom = Member.objects.get(external_id="tom-us-objected")
    consent_record(
        member=tom, action=Action.WITHDRAW_OBJECTION, source=Source.ADMIN, purpose=purpose
    )
    rio = Member.objects.get(external_id="rio-br")
    consent_record(member=rio, action=Action.OPT_IN, source=Source.ADMIN, purpose=purpose)

    exported = [row[0] for row in parse(export_bytes(purpose, fmt), fmt)]

    assert exported == [row[0] for row in EXPECTED if row[0] not in {"tom-us-objected", "rio-br"}]


@FORMATS
def test_nobody_out_gives_a_header_only_csv_and_an_empty_jsonl(purpose, fmt):
    MemberFactory(external_id="uma-us", country="US")

    out = io.BytesIO()
    count = suppressions_export(purpose=purpose, out=out, fmt=fmt)

    assert count == 0
    assert out.getvalue() == (b"external_id,jurisdiction,reason,since\n" if fmt == "csv" else b"")


@FORMATS
def test_awkward_external_ids_are_quoted_and_encoded_the_same_on_every_database(purpose, fmt):
    awkward = ["comma,id", 'say "hi"', "jörg", "two\nlines"]
    with time_machine.travel(JOINED, tick=False):
        for ext in awkward:
            MemberFactory(external_id=ext, country="GB")

    data = export_bytes(purpose, fmt)

    assert [row[0] for row in parse(data, fmt)] == awkward
    if fmt == "csv":
        since = ",UK,jurisdiction-excluded,2031-03-01T10:00:00Z\n"
        assert (
            data
            == (
                "external_id,jurisdiction,reason,since\n"
                f'"comma,id"{since}"say ""hi"""{since}jörg{since}"two\nlines"{since}'
            ).encode()
        )


def test_export_leaves_the_output_open_for_the_caller(population, purpose):
    out = io.BytesIO()
    suppressions_export(purpose=purpose, out=out, fmt="jsonl")
    suppressions_export(purpose=purpose, out=out, fmt="csv")

    assert not out.closed
    assert out.getvalue().endswith(EXPECTED_CSV)


def test_unknown_format_is_refused(purpose):
    with pytest.raises(ValueError, match="unknown format 'xml'; expected one of csv, jsonl"):
        suppressions_export(purpose=purpose, out=io.BytesIO(), fmt="xml")


# --- Streaming ------------------------------------------------------------------------


@FORMATS
def test_export_with_a_tiny_chunk_size_is_still_complete(population, purpose, settings, fmt):
    settings.RENOTIFY_EXPORT_CHUNK_SIZE = 2

    assert parse(export_bytes(purpose, fmt), fmt) == EXPECTED


def test_export_fetches_rows_through_a_chunked_iterator(population, purpose, settings, monkeypatch):
    # The Python path (JSON Lines everywhere, CSV on SQLite); PostgreSQL's CSV streams via COPY.
    settings.RENOTIFY_EXPORT_CHUNK_SIZE = 2
    asked = []
    iterator = QuerySet.iterator

    def spy(self, chunk_size=None):
        asked.append(chunk_size)
        return iterator(self, chunk_size=chunk_size)

    monkeypatch.setattr(QuerySet, "iterator", spy)

    assert parse(export_bytes(purpose, "jsonl"), "jsonl") == EXPECTED
    assert asked == [2]


@FORMATS
def test_export_runs_as_many_queries_for_many_members_as_for_few(population, purpose, fmt):
    def queries_to_export() -> int:
        with CaptureQueriesContext(connection) as queries:
            export_bytes(purpose, fmt)
        return len(queries)

    few = queries_to_export()
    Member.objects.bulk_create(
        MemberFactory.build(country=country) for country in ["GB", "DE", "BR", "US"] * 25
    )

    assert queries_to_export() == few


# --- The command ----------------------------------------------------------------------


@FORMATS
def test_command_writes_the_export_to_the_output_file(population, purpose, tmp_path, fmt):
    path = tmp_path / f"suppressions.{fmt}"
    err = io.StringIO()

    call_command(
        "export_suppressions",
        "--purpose",
        "ai-training",
        "--format",
        fmt,
        "--output",
        str(path),
        stderr=err,
    )

    assert path.read_bytes() == export_bytes(purpose, fmt)
    assert parse(path.read_bytes(), fmt) == EXPECTED
    assert err.getvalue().strip() == f"wrote {len(EXPECTED)} suppressed member(s) to {path}"


def test_command_without_output_writes_csv_to_standard_output(population, capsysbinary):
    call_command("export_suppressions", "--purpose", "ai-training")

    assert capsysbinary.readouterr().out == EXPECTED_CSV


@pytest.mark.parametrize("slug", ["ai-training", "AI-Training", "marketing"])
def test_unknown_purpose_is_refused_and_no_file_is_written(population, tmp_path, slug):
    path = tmp_path / "suppressions.csv"
    args = ["export_suppressions", "--purpose", slug, "--output", str(path)]

    if slug == "ai-training":
        call_command(*args, stderr=io.StringIO())
        assert path.read_bytes() == EXPECTED_CSV
    else:
        with pytest.raises(CommandError) as refused:
            call_command(*args, stderr=io.StringIO())
        assert str(refused.value) == f"unknown purpose {slug!r} (known: ai-training)"
        assert not path.exists()


def test_a_reader_that_closes_the_pipe_ends_the_export_quietly(tmp_path):
    """``export_suppressions ... | head`` ended with a BrokenPipeError traceback."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}},
        "DEBUG": "1",
        "RENOTIFY_VAR_DIR": str(tmp_path),
    }
    manage = [sys.executable, "manage.py"]
    root = Path(__file__).resolve().parent.parent
    for command in (["migrate", "--noinput", "-v0"], ["seed_demo"]):
        subprocess.run([*manage, *command], cwd=root, env=env, check=True, capture_output=True)
    export = subprocess.Popen(
        [*manage, "export_suppressions", "--purpose", "ai-training"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert export.stdout is not None and export.stderr is not None
    assert export.stdout.readline().startswith(b"external_id,")
    export.stdout.close()  # as `head -n 1` does
    errors = export.stderr.read().decode()
    assert export.wait(timeout=120) == 141
    assert errors == ""
