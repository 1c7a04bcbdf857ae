"""Import members from CSV or JSON Lines: validate in Python, upsert in SQL.

The file is read as a stream. Valid rows go, a batch at a time, into a
temporary staging table (COPY on PostgreSQL, executemany on SQLite), so memory
stays flat whatever the file's size. Once the file is read, duplicates of an
external_id within the file are found in SQL and rejected with their line
numbers, and one INSERT ... ON CONFLICT statement upserts the rest. Rows whose
values did not change are not written at all, so a re-import of an unchanged
file is read-only for the members table. Rejected rows are staged too, in a
second temporary table, and reported in line order once the file is read. Rows of
erased members are rejected: their personal data is never written again.

``person_key`` is optional: a CSV file without the column, or a JSON object without the
key, leaves each member's person key as it is; an empty value unlinks the member.

A CSV file is read one physical line at a time, each line parsed on its own:
member fields never hold a line break, so a stray quote costs its own line,
never the rows below it.
"""

import csv
import gzip
import io
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.jurisdictions import jurisdiction_for, normalise_country
from accounts.locales import locale_normalise
from accounts.models import EmailStatus, Member
from accounts.services.members import HEALTH_OF_NEW_ADDRESS
from accounts.services.suppression_feed import suppression_feed_sync_after_commit
from config.fields import column_length
from db import member_import as db_member_import

COLUMNS = ("external_id", "email", "locale", "country")
PERSON_KEY = "person_key"
# Rows fetched per round trip when the rejections are read back for reporting.
REJECTED_CHUNK = 2000
# The delimiters a header may use, named for the message that says which one was found.
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
MAX_EXTERNAL_ID = column_length(Member, "external_id")
MAX_EMAIL = column_length(Member, "email")
MAX_PERSON_KEY = column_length(Member, "person_key")
DEFAULT_LOCALE = settings.LANGUAGE_CODE

# Deliberately simple, like the checks ESPs apply: one @, no spaces, a dotted
# domain. Django's EmailValidator costs far more per row, and the ESP is the
# final judge anyway (a hard bounce marks the address).
EMAIL_RE = re.compile(
    r"[^@\s\"(),:;<>\[\\\]]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
LOCALE_RE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*")


class ImportFileError(Exception):
    """The file as a whole cannot be read (wrong header, unknown format)."""


@dataclass
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    dry_run: bool = False
    first_errors: list[RowError] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would be " if self.dry_run else ""
        return (
            f"read {self.read}, {verb}created {self.created}, {verb}updated {self.updated}, "
            f"unchanged {self.unchanged}, rejected {self.rejected}"
        )


# A valid row as staged: (line, external_id, email, locale, country, jurisdiction,
# person_key). A plain tuple, not a dataclass: a million of them pass through here.
StagedRow = db_member_import.StagedRow
# A row as read: (line, external_id, email, locale, country, person_key), untrimmed;
# person_key None when the file does not give one.
RawRow = tuple[int, str, str, str, str, str | None]


@lru_cache(maxsize=4096)
def _locale(raw: str) -> str | None:
    locale = locale_normalise(raw) or DEFAULT_LOCALE
    return locale if LOCALE_RE.fullmatch(locale) else None


@lru_cache(maxsize=4096)
def _country(raw: str) -> tuple[str, str] | None:
    country = normalise_country(raw)
    return (country, jurisdiction_for(country)) if country else None


def validate_row(
    line: int,
    external_id: str,
    email: str,
    locale: str,
    country: str,
    person_key: str | None = None,
) -> StagedRow | RowError:
    """Normalise one row, or say why it cannot be imported (never echoing the email)."""
    if "\x00" in external_id or "\x00" in email or "\x00" in locale or "\x00" in country:
        return _nul_error(line, external_id=external_id, email=email, locale=locale)
    if person_key is not None:
        person_key = person_key.strip()
        if "\x00" in person_key:
            return RowError(line, "person_key contains a NUL character")
        if len(person_key) > MAX_PERSON_KEY:
            return RowError(line, f"person_key longer than {MAX_PERSON_KEY} characters")
    external_id = external_id.strip()
    if not external_id:
        return RowError(line, "missing external_id")
    if len(external_id) > MAX_EXTERNAL_ID:
        return RowError(line, f"external_id longer than {MAX_EXTERNAL_ID} characters")
    email = email.strip()
    if not email:
        return RowError(line, "missing email")
    if len(email) > MAX_EMAIL or not EMAIL_RE.fullmatch(email):
        return RowError(line, "invalid email address")
    local, _, domain = email.rpartition("@")
    normal_locale = _locale(locale)
    if normal_locale is None:
        shown = locale.strip()[:20]
        return RowError(line, f"invalid locale {shown!r} (expected e.g. en, de, fr-CH)")
    place = _country(country)
    if place is None:
        shown = country.strip()[:10] or "(empty)"
        return RowError(line, f"unknown country code {shown!r} (expected ISO 3166-1 alpha-2)")
    return (line, external_id, f"{local}@{domain.lower()}", normal_locale, *place, person_key)


def _nul_error(line: int, *, external_id: str, email: str, locale: str) -> RowError:
    # PostgreSQL cannot store NUL in text, and in COPY's input it would abort the whole
    # import: the row is refused here, on its own.
    named = (("external_id", external_id), ("email", email), ("locale", locale))
    field = next((name for name, value in named if "\x00" in value), "country")
    return RowError(line, f"{field} contains a NUL character")


# --- Readers: each yields a RawRow or a RowError -----------------------------------


class _OneLine:
    """The input of a csv.reader that is handed one physical line at a time.

    The reader asks for another line only while a quoted field is still open: that
    line's quotes do not balance, and ``starved`` says so.
    """

    __slots__ = ("line", "starved")

    def __init__(self) -> None:
        self.line: str | None = None
        self.starved = False

    def __iter__(self) -> "_OneLine":
        return self

    def __next__(self) -> str:
        line = self.line
        if line is None:
            self.starved = True
            raise StopIteration
        self.line = None
        return line


def _sniff_delimiter(header: str) -> str:
    try:
        return csv.Sniffer().sniff(header.rstrip("\r\n"), delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:  # one column, or no candidate stands out: read as commas
        return ","


def _csv_reason(error: csv.Error) -> str:
    if str(error).startswith("field larger than field limit"):
        return f"field longer than {csv.field_size_limit()} characters"
    return f"unreadable CSV ({error})"


def read_csv(stream: IO[str]) -> Iterator[RawRow | RowError]:
    first = stream.readline()
    if not first:
        raise ImportFileError("the file is empty")
    delimiter = _sniff_delimiter(first)
    try:
        header = [name.strip().lower() for name in next(csv.reader([first], delimiter=delimiter))]
    except csv.Error as exc:
        raise ImportFileError(f"header (line 1): {_csv_reason(exc)}") from exc
    missing = [c for c in ("external_id", "email", "country") if c not in header]
    if missing:
        if not any(header):
            found = "found an empty line"
        elif len(header) == 1:
            found = "found 1 column: separate names by , ; tab or |"
        else:
            found = f"found {len(header)} {DELIMITERS[delimiter]}-separated columns"
        raise ImportFileError(f"header (line 1) lacks column(s): {', '.join(missing)} ({found})")
    ext, mail, ctry = header.index("external_id"), header.index("email"), header.index("country")
    loc = header.index("locale") if "locale" in header else None
    key = header.index(PERSON_KEY) if PERSON_KEY in header else None
    width = len(header)
    feed = _OneLine()
    reader = csv.reader(feed, delimiter=delimiter)
    for line, text in enumerate(stream, start=2):
        feed.line = text
        try:
            values = next(reader)
        except csv.Error as exc:
            yield RowError(line, _csv_reason(exc))
            continue
        finally:
            feed.line = None
        if feed.starved:
            feed.starved = False
            yield RowError(line, "unbalanced quotes")
            continue
        if not values:
            continue
        if len(values) != width:
            yield RowError(line, f"expected {width} fields, found {len(values)}")
            continue
        locale = values[loc] if loc is not None else ""
        person_key = values[key] if key is not None else None
        yield line, values[ext], values[mail], locale, values[ctry], person_key


def read_jsonl(stream: IO[str]) -> Iterator[RawRow | RowError]:
    for line, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            # Not only JSONDecodeError: over-long integers raise a plain ValueError and
            # deep nesting a RecursionError, neither with a .msg.
            yield RowError(line, f"invalid JSON ({getattr(exc, 'msg', exc)})")
            continue
        if not isinstance(obj, dict):
            yield RowError(line, "expected a JSON object")
            continue
        external_id, email, locale, country = (
            str(obj[name]) if obj.get(name) is not None else "" for name in COLUMNS
        )
        yield line, external_id, email, locale, country, _person_key(obj)


def _person_key(obj: dict) -> str | None:
    """The object's person key: None (keep the member's) when it has no such key, ""
    (unlink) when it is null."""
    if PERSON_KEY not in obj:
        return None
    value = obj[PERSON_KEY]
    return "" if value is None else str(value)


READERS: dict[str, Callable[[IO[str]], Iterator]] = {"csv": read_csv, "jsonl": read_jsonl}


def format_for(path: str) -> str:
    name = path.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return "csv"


# --- The import ------------------------------------------------------------------


def members_import(
    *,
    stream: IO[str],
    fmt: str = "csv",
    dry_run: bool = False,
    on_error: Callable[[RowError], None] | None = None,
    on_batch: Callable[[], None] | None = None,
    batch_size: int | None = None,
    keep_errors: int = 100,
) -> ImportReport:
    """Validate and upsert every row of ``stream``; the DB work is one transaction.

    ``on_error`` hears of each rejected row, in line order, once the file is read
    (the report keeps only the first ``keep_errors``); ``on_batch`` is called after
    each staged batch.
    """
    if fmt not in READERS:
        raise ImportFileError(f"unknown format {fmt!r}; expected one of {', '.join(READERS)}")
    report = ImportReport(dry_run=dry_run)
    stager = db_member_import.stager(connection.vendor)
    batch_size = batch_size or settings.RENOTIFY_IMPORT_BATCH_SIZE

    with transaction.atomic():
        stager.create()
        batch: list[StagedRow] = []
        # Rejections wait in the database, not in memory: a bad file may have millions,
        # and the duplicates among them are only known once the whole file is staged.
        rejections: list[tuple[int, str]] = []
        for item in READERS[fmt](stream):
            report.read += 1
            row = item if isinstance(item, RowError) else validate_row(*item)
            if isinstance(row, RowError):
                report.rejected += 1
                rejections.append((row.line, row.reason))
                if len(rejections) >= batch_size:
                    stager.write_rejected(rejections)
                    rejections = []
                continue
            batch.append(row)
            if len(batch) >= batch_size:
                stager.write(batch)
                batch = []
                if on_batch:
                    on_batch()
        stager.write(batch)
        stager.write_rejected(rejections)
        report.rejected += stager.reject_duplicates()
        report.rejected += stager.reject_erased()
        if dry_run:
            report.created, report.updated = stager.count_changes()
        else:
            report.created, report.updated = stager.upsert(
                status=EmailStatus.OK.value,
                new_address_health=HEALTH_OF_NEW_ADDRESS.value,
                now=timezone.now(),
            )
        if report.rejected:
            for line, reason in stager.rejected(chunk=REJECTED_CHUNK):
                error = RowError(line, reason)
                if len(report.first_errors) < keep_errors:
                    report.first_errors.append(error)
                if on_error:
                    on_error(error)
        stager.drop()
        if dry_run:
            # Last: once the block is marked for rollback it refuses further queries.
            transaction.set_rollback(True)
    report.unchanged = report.read - report.rejected - report.created - report.updated
    if not dry_run and (report.created or report.updated):
        # New members and new countries change effective states: compare everyone (the
        # importer does not keep which members it wrote; unchanged ones append nothing).
        suppression_feed_sync_after_commit()
    return report


def open_text(path: str, wrap: Callable[[IO[bytes]], IO[bytes]] | None = None) -> IO[str]:
    """Open an import file as text: '-' is standard input, a .gz suffix is decompressed.

    ``wrap`` may wrap the raw byte stream (the command counts bytes for its progress bar).
    """
    raw: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    if wrap:
        raw = wrap(raw)
    stream = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
