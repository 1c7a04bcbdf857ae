"""A purpose's suppression snapshot: every member the feed says is "out", as NDJSON, with
the cursor it is consistent with, so that a pipeline loads it once and then follows the
feed's changes after that cursor.

The rows come from the feed's own last word (``SuppressionState``), written in the same
transactions as the entries (``accounts.services.suppression_feed``), so a snapshot read
in one database snapshot together with the feed's head is exactly the fold of the
entries up to that head. No sync runs first: the last word is current by construction
(every change syncs after its commit, the reconcile repairs a missed one), a sync of
everyone would cost a full comparison per download, and a member whose change is still
being synced appears in the next entries the pipeline follows.

- **PostgreSQL**: one REPEATABLE READ, read-only transaction reads the head and then
  streams the rows with ``COPY ... TO STDOUT``, the lines made by the database itself:
  no OFFSET, no per-row Python beyond handing bytes on, memory bounded by one block.
- **Elsewhere** (SQLite): one statement reads the head and the rows, fetched in chunks.

Memory is constant in the number of members either way. The transaction (or statement)
is open while the caller iterates ``lines``: iterate it to the end or close it.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Purpose
from accounts.selectors import feed_time
from db import suppression_feed as db_feed

LINES_PER_BLOCK = 2_000


@dataclass(frozen=True)
class Snapshot:
    purpose: Purpose
    cursor: int  # the feed's head the rows are consistent with
    taken_at: datetime
    lines: Iterator[bytes]  # NDJSON: {"external_id", "reason", "since"} per member

    def header(self) -> bytes:
        """The first NDJSON line: which purpose, which cursor, when."""
        taken_at = feed_time(self.taken_at)
        head = {"purpose": self.purpose.slug, "cursor": self.cursor, "taken_at": taken_at}
        return (json.dumps(head) + "\n").encode()


def suppression_snapshot_open(*, purpose: Purpose) -> Snapshot:
    """Start reading the purpose's snapshot: its cursor is known at once, its lines
    stream as ``lines`` is iterated."""
    if connection.vendor == "postgresql":
        stream = _postgres_lines(purpose.pk)
    else:
        stream = _lines(purpose.pk)
    cursor = next(stream)
    assert isinstance(cursor, int)
    return Snapshot(purpose, cursor, timezone.now(), stream)  # type: ignore[arg-type]


def _postgres_lines(purpose_id: int) -> Iterator[int | bytes]:
    """The head, then the NDJSON blocks, in one read-only snapshot."""
    outer = connection.in_atomic_block  # a test case's transaction: already one snapshot
    with transaction.atomic():
        if not outer:
            db_feed.snapshot_isolate()
        yield db_feed.feed_head(purpose_id=purpose_id)
        yield from db_feed.snapshot_ndjson_copy(purpose_id=purpose_id)


def _lines(purpose_id: int) -> Iterator[int | bytes]:
    rows = db_feed.snapshot_rows(purpose_id=purpose_id)
    head, external_id, reason, since = next(rows)
    yield int(head)
    block: list[str] = []
    if external_id is not None:
        block.append(_line(external_id, reason, since))
    for _head, external_id, reason, since in rows:
        block.append(_line(external_id, reason, since))
        if len(block) >= LINES_PER_BLOCK:
            yield "".join(block).encode()
            block = []
    if block:
        yield "".join(block).encode()


def _line(external_id: str | None, reason: str | None, since) -> str:
    row = {"external_id": external_id, "reason": reason, "since": _utc_text(since)}
    return json.dumps(row) + "\n"


def _utc_text(moment: datetime | str) -> str:
    """SQLite hands raw SQL its stored text or a naive datetime (UTC)."""
    if isinstance(moment, str):
        moment = parse_datetime(moment) or datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return feed_time(moment)
