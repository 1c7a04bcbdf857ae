"""Member import: good rows land normalised, bad rows are named by line, re-imports are no-ops."""

import gzip
import io
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import EmailStatus, Member
from accounts.services.member_import import ImportFileError, members_import
from db import member_import as db_member_import
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

COLUMNS = ("external_id", "email", "locale", "country")
HEADER = ",".join(COLUMNS)
JANUARY = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)

# What the platform's export looks like: untidy case, aliases, underscores in locales.
PLATFORM_ROWS = [
    {"external_id": "u-1", "email": "Ann.Smith@Example.COM", "locale": "de_DE", "country": "de"},
    {"external_id": "u-2", "email": "bob@Mail.Example.co.uk", "locale": "", "country": "UK"},
    {"external_id": "u-3", "email": "chloe@example.ch", "locale": "fr-CH", "country": " ch "},
    {"external_id": "u-4", "email": "dag@example.is", "locale": "IS", "country": "is"},
    {"external_id": "u-5", "email": "eve@example.com", "locale": "en-US", "country": "us"},
    {"external_id": "u-6", "email": "fabio@example.com.br", "locale": "pt_BR", "country": "BR"},
    {"external_id": "u-7", "email": "gia@example.gr", "locale": "el", "country": "EL"},
]
# (external_id, email, locale, country, jurisdiction) as stored.
PLATFORM_MEMBERS = [
    ("u-1", "Ann.Smith@example.com", "de-de", "DE", "EU"),
    ("u-2", "bob@mail.example.co.uk", "en", "GB", "UK"),
    ("u-3", "chloe@example.ch", "fr-ch", "CH", "CH"),
    ("u-4", "dag@example.is", "is", "IS", "EEA"),
    ("u-5", "eve@example.com", "en-us", "US", "US"),
    ("u-6", "fabio@example.com.br", "pt-br", "BR", "OTHER"),
    ("u-7", "gia@example.gr", "el", "GR", "EU"),
]


@dataclass
class Outcome:
    summary: str
    errors: list[str]
    failure: CommandError | None

    @property
    def returncode(self) -> int:
        return self.failure.returncode if self.failure else 0


def render(fmt: str, rows: list[dict]) -> str:
    if fmt == "csv":
        return "".join(f"{line}\n" for line in [HEADER, *(",".join(r.values()) for r in rows)])
    return "".join(json.dumps(row) + "\n" for row in rows)


def csv_text(*rows: str, header: str = HEADER, newline: str = "\n") -> str:
    return "".join(f"{line}{newline}" for line in [header, *rows])


def write(tmp_path, name: str, text: str | bytes):
    data = text.encode() if isinstance(text, str) else text
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def run_import(path, *options: str) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    failure = None
    try:
        call_command("import_members", str(path), "--no-progress", *options, stdout=out, stderr=err)
    except CommandError as exc:
        failure = exc
    return Outcome(out.getvalue().strip(), err.getvalue().splitlines(), failure)


def stored() -> list[tuple]:
    return list(
        Member.objects.order_by("external_id").values_list(
            "external_id", "email", "locale", "country", "jurisdiction"
        )
    )


def table() -> list[tuple]:
    """Every column of every member, in id order: what "changes nothing" is measured on."""
    return list(Member.objects.order_by("id").values_list())


# --- A good file -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["members.csv", "members.csv.gz", "members.jsonl", "members.jsonl.gz", "m.ndjson"]
)
def test_good_file_creates_normalised_members(tmp_path, name):
    fmt = "csv" if ".csv" in name else "jsonl"
    path = write(tmp_path, name, render(fmt, PLATFORM_ROWS))

    outcome = run_import(path)

    assert outcome == Outcome("read 7, created 7, updated 0, unchanged 0, rejected 0", [], None)
    assert stored() == PLATFORM_MEMBERS
    assert set(Member.objects.values_list("email_status", flat=True)) == {EmailStatus.OK}


def test_jsonl_numbers_are_read_as_text(tmp_path):
    path = write(
        tmp_path,
        "members.jsonl",
        '{"external_id": 1001, "email": "num@example.com", "country": "DE"}\n',
    )

    assert run_import(path).returncode == 0
    assert stored() == [("1001", "num@example.com", "en", "DE", "EU")]


def test_format_option_overrides_the_suffix(tmp_path):
    path = write(tmp_path, "members.txt", render("jsonl", PLATFORM_ROWS))

    as_csv = run_import(path)
    as_jsonl = run_import(path, "--format", "jsonl")

    assert "lacks column(s)" in str(as_csv.failure)
    assert as_jsonl.failure is None
    assert stored() == PLATFORM_MEMBERS


def test_dash_reads_standard_input(monkeypatch):
    data = render("csv", PLATFORM_ROWS).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    outcome = run_import("-")

    assert outcome.summary == "read 7, created 7, updated 0, unchanged 0, rejected 0"
    assert stored() == PLATFORM_MEMBERS


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


ON_A_TERMINAL = pytest.mark.parametrize("terminal", [False, True], ids=["quiet", "progress-bar"])


def call_import(path, *, terminal: bool, monkeypatch) -> None:
    """Run the command quietly, or as on a terminal: stderr a tty and no --no-progress."""
    # Patched here, in the test's own phase: pytest re-installs its capture between phases.
    if terminal:
        monkeypatch.setattr(sys, "stderr", Terminal())
    options = [] if terminal else ["--no-progress"]
    call_command("import_members", str(path), *options, stdout=io.StringIO(), stderr=io.StringIO())


@ON_A_TERMINAL
def test_progress_bar_shows_on_a_terminal_and_changes_nothing_imported(
    tmp_path, monkeypatch, terminal
):
    path = write(tmp_path, "members.csv.gz", render("csv", PLATFORM_ROWS))

    call_import(path, terminal=terminal, monkeypatch=monkeypatch)

    assert stored() == PLATFORM_MEMBERS
    bar = sys.stderr.getvalue() if isinstance(sys.stderr, Terminal) else ""
    assert ("100%" in bar) == terminal


@ON_A_TERMINAL
def test_missing_file_is_a_clear_error(tmp_path, monkeypatch, terminal):
    path = tmp_path / "nowhere.csv"

    with pytest.raises(CommandError) as refused:
        call_import(path, terminal=terminal, monkeypatch=monkeypatch)

    assert str(refused.value) == f"cannot read {path}: No such file or directory"


# --- Bad rows: reported by line, skipped, the rest imported ----------------------------

# The row under test sits on line 3 between two good rows; the first case is the control.
CSV_ROWS = [
    ("u-x,xena@example.com,en,FR", None),
    (",xena@example.com,en,FR", "missing external_id"),
    ("   ,xena@example.com,en,FR", "missing external_id"),
    (f"{'x' * 256},xena@example.com,en,FR", "external_id longer than 255 characters"),
    ("u-x,,en,FR", "missing email"),
    ("u-x,xena.example.com,en,FR", "invalid email address"),
    ("u-x,xena@example,en,FR", "invalid email address"),
    ("u-x,xena smith@example.com,en,FR", "invalid email address"),
    ("u-x,xena@@example.com,en,FR", "invalid email address"),
    ("u-x,xena@example.com,english!,FR", "invalid locale 'english!' (expected e.g. en, de, fr-CH)"),
    ("u-x,xena@example.com,en,XX", "unknown country code 'XX' (expected ISO 3166-1 alpha-2)"),
    (
        "u-x,xena@example.com,en,France",
        "unknown country code 'France' (expected ISO 3166-1 alpha-2)",
    ),
    ("u-x,xena@example.com,en,", "unknown country code '(empty)' (expected ISO 3166-1 alpha-2)"),
    ("u-x,xena@example.com,en", "expected 4 fields, found 3"),
    ("u-x,xena@example.com,en,FR,extra", "expected 4 fields, found 5"),
    # Over the csv module's field limit: this row alone, not the import, fails.
    (f"u-x,xena@example.com,en,{'F' * 131_073}", "field longer than 131072 characters"),
    # A quote that never closes would otherwise run on into the rows below.
    ('u-x,"xena@example.com,en,FR', "unbalanced quotes"),
    ('"u-x,xena@example.com,en,FR', "unbalanced quotes"),
]
JSONL_OK_1 = '{"external_id": "ok-1", "email": "one@example.com", "country": "GB"}'
JSONL_OK_2 = '{"external_id": "ok-2", "email": "two@example.com", "country": "DE"}'
JSONL_ROWS = [
    ('{"external_id": "u-x", "email": "xena@example.com", "country": "FR"}', None),
    ('{"email": "xena@example.com", "country": "FR"}', "missing external_id"),
    ('{"external_id": null, "email": "xena@example.com", "country": "FR"}', "missing external_id"),
    ('{"external_id": "u-x", "email": "xena@example", "country": "FR"}', "invalid email address"),
    (
        '{"external_id": "u-x", "email": "xena@example.com", "country": "ZZ"}',
        "unknown country code 'ZZ' (expected ISO 3166-1 alpha-2)",
    ),
    (
        '{"external_id": "u-x", "email": "xena@example.com"',
        "invalid JSON (Expecting ',' delimiter)",
    ),
    ("external_id=u-x", "invalid JSON (Expecting value)"),
    ('["u-x", "xena@example.com", "en", "FR"]', "expected a JSON object"),
    ('"u-x"', "expected a JSON object"),
]


def check_row_between_good_rows(tmp_path, name: str, text: str, reason: str | None) -> None:
    outcome = run_import(write(tmp_path, name, text))

    rejected = 0 if reason is None else 1
    assert outcome.errors == ([] if reason is None else [f"line 3: {reason}"])
    assert (
        outcome.summary
        == f"read 3, created {3 - rejected}, updated 0, unchanged 0, rejected {rejected}"
    )
    assert outcome.returncode == rejected
    assert str(outcome.failure or "") == ("" if reason is None else "1 row(s) rejected")
    expected = {"ok-1", "ok-2"} | ({"u-x"} if reason is None else set())
    assert set(Member.objects.values_list("external_id", flat=True)) == expected
    assert not any("xena" in error for error in outcome.errors), "errors never echo an address"


@pytest.mark.parametrize(("row", "reason"), CSV_ROWS)
def test_csv_row_is_rejected_with_its_line_and_reason(tmp_path, row, reason):
    text = csv_text("ok-1,one@example.com,en,GB", row, "ok-2,two@example.com,en,DE")
    check_row_between_good_rows(tmp_path, "members.csv", text, reason)


@pytest.mark.parametrize(("row", "reason"), JSONL_ROWS)
def test_jsonl_row_is_rejected_with_its_line_and_reason(tmp_path, row, reason):
    # Line 2 is blank: skipped, but still counted.
    text = f"{JSONL_OK_1}\n\n{row}\n{JSONL_OK_2}\n"
    check_row_between_good_rows(tmp_path, "members.jsonl", text, reason)


@pytest.mark.parametrize(
    ("row", "reason_start"),
    [
        ('{"external_id": 1' + "0" * 5000 + "}", "line 2: invalid JSON (Exceeds the limit"),
        ("[" * 100_000, "line 2: invalid JSON (maximum recursion depth exceeded"),
    ],
    ids=["huge-integer", "deep-nesting"],
)
def test_jsonl_line_the_decoder_chokes_on_is_rejected_like_any_bad_row(tmp_path, row, reason_start):
    outcome = run_import(write(tmp_path, "members.jsonl", f"{JSONL_OK_1}\n{row}\n{JSONL_OK_2}\n"))

    assert len(outcome.errors) == 1
    assert outcome.errors[0].startswith(reason_start)
    assert outcome.summary == "read 3, created 2, updated 0, unchanged 0, rejected 1"
    assert outcome.returncode == 1


@pytest.mark.parametrize("field", ["external_id", "email", "locale", "country"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_row_with_a_nul_character_is_rejected_alone_with_its_line(tmp_path, fmt, field):
    """PostgreSQL refuses NUL in text (COPY would abort the whole import)."""
    row = {"external_id": "u-x", "email": "xena@example.com", "locale": "en", "country": "FR"}
    row[field] = row[field][:2] + "\x00" + row[field][2:]
    good = [
        {"external_id": "ok-1", "email": "one@example.com", "locale": "en", "country": "GB"},
        {"external_id": "ok-2", "email": "two@example.com", "locale": "en", "country": "DE"},
    ]
    text = render(fmt, [good[0], row, good[1]])
    outcome = run_import(write(tmp_path, f"members.{fmt}", text))

    line = 3 if fmt == "csv" else 2
    assert outcome.errors == [f"line {line}: {field} contains a NUL character"]
    assert outcome.summary == "read 3, created 2, updated 0, unchanged 0, rejected 1"
    assert set(Member.objects.values_list("external_id", flat=True)) == {"ok-1", "ok-2"}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_duplicate_id_reports_later_line_and_first_line(tmp_path, fmt):
    rows = [
        {"external_id": "dup", "email": "first@example.com", "locale": "en", "country": "GB"},
        {"external_id": "solo", "email": "solo@example.com", "locale": "en", "country": "GB"},
        {"external_id": "dup", "email": "second@example.com", "locale": "en", "country": "DE"},
        {"external_id": "dup", "email": "third@example.com", "locale": "en", "country": "FR"},
    ]
    first = 2 if fmt == "csv" else 1  # the CSV header is line 1
    outcome = run_import(write(tmp_path, f"members.{fmt}", render(fmt, rows)))

    assert outcome.errors == [
        f"line {first + 2}: duplicate external_id (first seen on line {first})",
        f"line {first + 3}: duplicate external_id (first seen on line {first})",
    ]
    assert outcome.summary == "read 4, created 2, updated 0, unchanged 0, rejected 2"
    assert outcome.returncode == 1
    assert stored() == [
        ("dup", "first@example.com", "en", "GB", "UK"),
        ("solo", "solo@example.com", "en", "GB", "UK"),
    ]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_rejected_rows_are_printed_in_line_order(tmp_path, fmt):
    rows = [
        {"external_id": "dup", "email": "first@example.com", "locale": "en", "country": "GB"},
        {"external_id": "dup", "email": "second@example.com", "locale": "en", "country": "GB"},
        {"external_id": "bad", "email": "not-an-address", "locale": "en", "country": "GB"},
        {"external_id": "dup", "email": "third@example.com", "locale": "en", "country": "GB"},
        {"external_id": "far", "email": "far@example.com", "locale": "en", "country": "XX"},
    ]
    first = 2 if fmt == "csv" else 1
    outcome = run_import(write(tmp_path, f"members.{fmt}", render(fmt, rows)))

    assert outcome.errors == [
        f"line {first + 1}: duplicate external_id (first seen on line {first})",
        f"line {first + 2}: invalid email address",
        f"line {first + 3}: duplicate external_id (first seen on line {first})",
        f"line {first + 4}: unknown country code 'XX' (expected ISO 3166-1 alpha-2)",
    ]
    assert outcome.summary == "read 5, created 1, updated 0, unchanged 0, rejected 4"
    assert outcome.returncode == 1


def test_a_rejected_row_does_not_make_a_later_row_a_duplicate(tmp_path):
    text = csv_text("dup,not-an-address,en,GB", "dup,ok@example.com,en,GB")

    outcome = run_import(write(tmp_path, "members.csv", text))

    assert outcome.errors == ["line 2: invalid email address"]
    assert stored() == [("dup", "ok@example.com", "en", "GB", "UK")]


def test_a_stray_quote_swallows_no_rows_every_line_is_accounted_for(tmp_path):
    text = csv_text(
        "ok-1,one@example.com,en,GB",
        'u-2,"two@example.com,en,GB',
        "ok-3,three@example.com,en,GB",
        'ok-4,"four@example.com",en,GB',
    )

    outcome = run_import(write(tmp_path, "members.csv", text))

    assert outcome.errors == ["line 3: unbalanced quotes"]
    assert outcome.summary == "read 4, created 3, updated 0, unchanged 0, rejected 1"
    assert set(Member.objects.values_list("external_id", flat=True)) == {"ok-1", "ok-3", "ok-4"}


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_csv_quoted_field_spanning_lines_is_rejected_line_by_line(tmp_path, newline):
    """A member file has no multi-line values: each physical line is one row."""
    text = csv_text(
        "ok-1,a@example.com,en,GB,",
        f'ok-2,b@example.com,en,GB,"called twice,{newline}asked about{newline}the notice"',
        "bad-1,not-an-address,en,GB,",
        "",
        f'ok-3,c@example.com,en,GB,"two{newline}lines"',
        "ok-4,d@example.com,en,FR,",
        header=f"{HEADER},note",
        newline=newline,
    )

    outcome = run_import(write(tmp_path, "members.csv", text))

    assert outcome.errors == [
        "line 3: unbalanced quotes",
        "line 4: expected 5 fields, found 1",
        "line 5: expected 5 fields, found 1",
        "line 6: invalid email address",
        "line 8: unbalanced quotes",
        "line 9: expected 5 fields, found 1",
    ]
    assert outcome.summary == "read 8, created 2, updated 0, unchanged 0, rejected 6"
    assert set(Member.objects.values_list("external_id", flat=True)) == {"ok-1", "ok-4"}


@pytest.mark.parametrize(
    ("delimiter", "header"),
    [
        (";", "external_id;email;locale;country"),
        ("\t", "External_ID\tEmail\tCountry"),
        ("|", HEADER.replace(",", "|")),
    ],
    ids=["semicolon", "tab", "pipe"],
)
def test_csv_delimiter_is_taken_from_the_header(tmp_path, delimiter, header):
    names = [name.lower() for name in header.split(delimiter)]
    values = {"external_id": "u-1", "email": "one@example.com", "locale": "de", "country": "DE"}
    row = delimiter.join(values[name] for name in names)
    # A comma inside a value is only a comma in a file that is not comma-separated.
    quoted = delimiter.join(
        '"two, second@example.com"' if name == "email" else values[name].replace("1", "2")
        for name in names
    )
    text = csv_text(row, quoted, header=header)

    outcome = run_import(write(tmp_path, "members.csv", text))

    assert outcome.errors == ["line 3: invalid email address"]
    assert outcome.summary == "read 2, created 1, updated 0, unchanged 0, rejected 1"
    assert stored()[0][:2] == ("u-1", "one@example.com")


# --- Whole-file errors: nothing imported ------------------------------------------------


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        (HEADER, None),
        (" Country , EMAIL,External_ID", None),
        ("external_id,email,locale", "country"),
        ("id,email,locale,country", "external_id"),
        ("external_id,locale", "email, country"),
        ("u-0,zero@example.com,en,GB", "external_id, email, country"),
    ],
)
def test_header_missing_a_required_column_imports_nothing(tmp_path, header, missing):
    # Every row carries all four values; only the header decides whether they are read.
    names = [name.strip().lower() for name in header.split(",")]
    values = {"external_id": "u-1", "email": "one@example.com", "locale": "en", "country": "GB"}
    row = ",".join(values.get(name, "x") for name in names)
    path = write(tmp_path, "members.csv", csv_text(row, row.replace("u-1", "u-2"), header=header))

    outcome = run_import(path)

    if missing is None:
        assert outcome.failure is None
        assert Member.objects.count() == 2
    else:
        assert str(outcome.failure) == (
            f"{path}: header (line 1) lacks column(s): {missing}"
            f" (found {len(names)} comma-separated columns); nothing was imported"
        )
        assert Member.objects.count() == 0


@pytest.mark.parametrize(
    ("header", "found"),
    [
        ("external_id email locale country", "found 1 column: separate names by , ; tab or |"),
        ("external_id;email;locale", "found 3 semicolon-separated columns"),
        ("external_id\temail", "found 2 tab-separated columns"),
        ("", "found an empty line"),
        (" ", "found an empty line"),
    ],
)
def test_header_refusal_says_what_was_found(tmp_path, header, found):
    path = write(tmp_path, "members.csv", csv_text("u-1 one@example.com en GB", header=header))

    outcome = run_import(path)

    assert str(outcome.failure).startswith(f"{path}: header (line 1) lacks column(s): ")
    assert str(outcome.failure).endswith(f" ({found}); nothing was imported")
    assert Member.objects.count() == 0


@pytest.mark.parametrize("name", ["members.csv", "members.csv.gz"])
@pytest.mark.parametrize("content", ["", "\ufeff"], ids=["empty", "bom-only"])
def test_empty_file_is_refused(tmp_path, name, content):
    path = write(tmp_path, name, content)

    outcome = run_import(path)

    assert str(outcome.failure) == f"{path}: the file is empty; nothing was imported"
    assert outcome.summary == ""


def test_undecodable_bytes_late_in_the_file_import_nothing(tmp_path, settings):
    # Far enough in that earlier rows have been read and staged in several batches.
    settings.RENOTIFY_IMPORT_BATCH_SIZE = 10
    rows = [f"u-{n},member{n}@example.com,en,GB" for n in range(800)]
    data = csv_text(*rows).encode() + b"u-x,caf\xe9@example.com,fr,FR\n"
    assert len(data) > 3 * 8192

    outcome = run_import(write(tmp_path, "members.csv", data))

    assert "can't decode byte 0xe9" in str(outcome.failure)
    assert str(outcome.failure).endswith("; nothing was imported")
    assert Member.objects.count() == 0


# --- Updates ------------------------------------------------------------------------


@pytest.fixture
def ann():
    """Ann, imported in January with her old address."""
    with time_machine.travel(JANUARY, tick=False):
        return MemberFactory(external_id="ann", email="ann@old.example", country="GB")


def test_changed_row_updates_member_and_jurisdiction_follows_country(tmp_path, ann):
    path = write(tmp_path, "members.csv", csv_text("ann,Ann@New.Example,fr_FR,fr"))
    february = JANUARY + timedelta(days=31)

    with time_machine.travel(february, tick=False):
        outcome = run_import(path)

    assert outcome.summary == "read 1, created 0, updated 1, unchanged 0, rejected 0"
    ann_now = Member.objects.get(pk=ann.pk)
    assert (ann_now.email, ann_now.locale, ann_now.country, ann_now.jurisdiction) == (
        "Ann@new.example",
        "fr-fr",
        "FR",
        "EU",
    )
    assert (ann_now.created_at, ann_now.updated_at) == (JANUARY, february)


@pytest.mark.parametrize(
    ("status", "email", "status_after"),
    [
        (EmailStatus.BOUNCED, "ann@new.example", EmailStatus.OK),
        (EmailStatus.COMPLAINED, "ann@new.example", EmailStatus.OK),
        (EmailStatus.OK, "ann@new.example", EmailStatus.OK),
        (EmailStatus.BOUNCED, "ann@old.example", EmailStatus.BOUNCED),
        (EmailStatus.BOUNCED, "ann@OLD.EXAMPLE", EmailStatus.BOUNCED),
    ],
)
def test_new_address_clears_bounces_and_complaints(tmp_path, ann, status, email, status_after):
    Member.objects.filter(pk=ann.pk).update(email_status=status)
    # The country changes in every case, so every case is an update.
    outcome = run_import(write(tmp_path, "members.csv", csv_text(f"ann,{email},en,IE")))

    assert outcome.summary == "read 1, created 0, updated 1, unchanged 0, rejected 0"
    assert Member.objects.get(pk=ann.pk).email_status == status_after


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_importing_the_same_file_twice_changes_nothing(tmp_path, fmt):
    path = write(tmp_path, f"members.{fmt}", render(fmt, PLATFORM_ROWS))
    with time_machine.travel(JANUARY, tick=False):
        first = run_import(path)
    before = table()
    assert first.summary == "read 7, created 7, updated 0, unchanged 0, rejected 0"

    with time_machine.travel(JANUARY + timedelta(days=1), tick=False):
        outcome = run_import(path)

    assert outcome.summary == "read 7, created 0, updated 0, unchanged 7, rejected 0"
    assert table() == before


def test_importing_a_file_with_one_changed_row_changes_only_that_row(tmp_path):
    path = write(tmp_path, "members.csv", render("csv", PLATFORM_ROWS))
    with time_machine.travel(JANUARY, tick=False):
        run_import(path)
    before = {m["external_id"]: m for m in Member.objects.values()}
    changed = [
        r | {"email": "chloe@new.example"} if r["external_id"] == "u-3" else r
        for r in PLATFORM_ROWS
    ]
    path.write_text(render("csv", changed))

    with time_machine.travel(JANUARY + timedelta(days=1), tick=False):
        outcome = run_import(path)

    after = {m["external_id"]: m for m in Member.objects.values()}
    assert outcome.summary == "read 7, created 0, updated 1, unchanged 6, rejected 0"
    assert {k for k in after if after[k] != before[k]} == {"u-3"}
    assert Member.objects.get(external_id="u-3").updated_at == JANUARY + timedelta(days=1)


# --- Dry run ------------------------------------------------------------------------


@pytest.fixture
def mixed_file(tmp_path):
    """Against two existing members: one update, two creates, one unchanged, one bad row."""
    MemberFactory(external_id="u-1", email="old@example.com", country="GB")
    MemberFactory(external_id="u-4", email="same@example.com", locale="en", country="US")
    text = csv_text(
        "u-1,new@example.com,en,GB",
        "u-2,two@example.com,en,DE",
        "u-3,three@example.com,en,FR",
        "u-4,same@example.com,en,US",
        "u-5,not-an-address,en,US",
    )
    return write(tmp_path, "members.csv", text)


def test_dry_run_counts_what_would_change_and_writes_nothing(mixed_file):
    before = table()

    outcome = run_import(mixed_file, "--dry-run")

    assert outcome.summary == (
        "dry run: read 5, would be created 2, would be updated 1, unchanged 1, rejected 1"
    )
    assert outcome.errors == ["line 6: invalid email address"]
    assert outcome.returncode == 1
    assert table() == before


def test_real_run_after_a_dry_run_makes_the_changes_it_counted(mixed_file):
    run_import(mixed_file, "--dry-run")

    outcome = run_import(mixed_file)

    assert outcome.summary == "read 5, created 2, updated 1, unchanged 1, rejected 1"
    assert Member.objects.get(external_id="u-1").email == "new@example.com"
    assert Member.objects.count() == 4


# --- The service: streaming -----------------------------------------------------------


class GeneratedText(io.TextIOBase):
    """A text stream whose lines are made on demand; ``pulled`` counts those handed out."""

    def __init__(self, lines):
        self._lines = iter(lines)
        self.pulled = 0

    def readable(self) -> bool:
        return True

    def readline(self, size: int = -1) -> str:
        line = next(self._lines, "")
        self.pulled += bool(line)
        return line


def generated_rows(count: int, fmt: str):
    if fmt == "csv":
        yield f"{HEADER}\n"
    for n in range(count):
        row = {
            "external_id": f"g-{n}",
            "email": f"g{n}@example.com",
            "locale": "en",
            "country": "DE",
        }
        yield render(fmt, [row]).splitlines(keepends=True)[-1]


def staged_count() -> int:
    return db_member_import.stager(connection.vendor).staged_count()


@pytest.mark.parametrize(("fmt", "header_lines"), [("csv", 1), ("jsonl", 0)])
def test_import_reads_and_stages_the_stream_a_batch_at_a_time(fmt, header_lines):
    stream = GeneratedText(generated_rows(10, fmt))
    seen = []

    def on_batch():
        seen.append((stream.pulled, staged_count(), Member.objects.count()))

    report = members_import(stream=stream, fmt=fmt, batch_size=3, on_batch=on_batch)

    # (lines read so far, rows staged in the database, members written): the file is
    # read a batch ahead of the database, never held whole, and members are upserted once.
    assert seen == [(header_lines + 3, 3, 0), (header_lines + 6, 6, 0), (header_lines + 9, 9, 0)]
    assert (report.read, report.created) == (10, 10)
    assert Member.objects.count() == 10


def test_rejected_rows_are_staged_then_reported_in_line_order_and_the_report_keeps_the_first():
    lines = [
        '{"external_id": "a", "email": "a@example.com", "country": "GB"}\n',
        "oops\n",
        '{"external_id": "a", "email": "a2@example.com", "country": "GB"}\n',
        "[]\n",
        '{"external_id": "c", "email": "nope", "country": "GB"}\n',
        '{"external_id": "d", "email": "d@example.com", "country": "GB"}\n',
    ]
    stream = GeneratedText(lines)
    heard, staged_rejections = [], []

    def staged_rejection_count() -> int:
        return db_member_import.stager(connection.vendor).rejected_count()

    report = members_import(
        stream=stream,
        fmt="jsonl",
        on_error=lambda error: heard.append(str(error)),
        on_batch=lambda: staged_rejections.append(staged_rejection_count()),
        batch_size=1,
        keep_errors=2,
    )

    # Rejections wait in the database, not in memory, until the file is read.
    assert staged_rejections == [0, 1, 3]
    assert heard == [
        "line 2: invalid JSON (Expecting value)",
        "line 3: duplicate external_id (first seen on line 1)",
        "line 4: expected a JSON object",
        "line 5: invalid email address",
    ]
    assert [str(e) for e in report.first_errors] == heard[:2]
    assert (report.read, report.created, report.rejected) == (6, 2, 4)


def test_import_issues_as_many_queries_for_a_thousand_rows_as_for_ten():
    def queries_to_import(count: int, prefix: str) -> int:
        rows = [
            {"external_id": f"{prefix}-{n}", "email": f"{prefix}{n}@example.com", "country": "FR"}
            for n in range(count)
        ]
        with CaptureQueriesContext(connection) as queries:
            report = members_import(stream=io.StringIO(render("jsonl", rows)), fmt="jsonl")
        assert report.created == count
        return len(queries)

    assert queries_to_import(1000, "big") == queries_to_import(10, "small")


def test_unknown_format_is_refused_before_reading():
    stream = GeneratedText(generated_rows(3, "csv"))

    with pytest.raises(ImportFileError, match="unknown format 'xml'; expected one of csv, jsonl"):
        members_import(stream=stream, fmt="xml")
    assert stream.pulled == 0
