"""Export each verified ledger head out of the database's reach, and compare the
ledger with the heads exported earlier.

Someone with the database's rights can switch the append-only triggers off and
delete the ledger's newest events together with the checks that recorded them; the
chain that is left is intact. A head (seq, hash) written where the database's users
cannot rewrite it (an append-only file on another mount or host, syslog shipped
elsewhere, another team's HTTPS endpoint) survives that, and ``verify_ledger
--against FILE`` finds every recorded head the ledger no longer holds.

The sink is ``RENOTIFY_LEDGER_HEAD_SINK``:

- a file path: one JSON line appended per check (and fsynced);
- ``syslog:`` (``/dev/log``, else localhost:514), ``syslog:/path/to/socket`` or
  ``syslog:host:port`` (UDP), through Python's SysLogHandler;
- an ``https://`` URL: the JSON is POSTed, with a short timeout (``http://`` only
  to this host, e.g. a local relay).

Checks run in workers and commands, never in a member's request. A sink that fails
does not fail the check: the error is logged and recorded on the check.
"""

import json
import logging
import os
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from logging.handlers import SysLogHandler
from pathlib import Path

from django.conf import settings

from accounts.models import ConsentEvent, LedgerCheck
from config.fields import clipped

logger = logging.getLogger(__name__)

SYSLOG_TAG = "renotify-ledger-head"
SYSLOG_PREFIX = "syslog:"


@dataclass(frozen=True)
class RecordedHead:
    """A head as a check exported it."""

    seq: int
    hash: str
    checked_at: str


def ledger_head_export(*, seq: int, hash_: str, checked_at: datetime, intact: bool) -> str:
    """Write the head to the configured sink; return why it failed ("" when it did not)."""
    sink = settings.RENOTIFY_LEDGER_HEAD_SINK
    if not sink:
        return ""
    line = json.dumps(
        {"seq": seq, "hash": hash_, "checked_at": checked_at.isoformat(), "intact": intact},
        separators=(",", ":"),
    )
    kind, write = _writer(sink)
    try:
        write(sink, line)
    # urllib's errors, timeouts and socket errors are OSErrors; a malformed sink, ValueError
    except (OSError, ValueError) as error:
        # The sink's kind only: a URL may carry a token.
        logger.error("ledger head sink (%s) failed at seq %d: %s", kind, seq, error)
        return clipped(LedgerCheck, "sink_error", f"{kind}: {error}")
    return ""


def _writer(sink: str) -> tuple[str, Callable[[str, str], None]]:
    if sink.startswith(SYSLOG_PREFIX):
        return "syslog", _syslog_send
    if sink.startswith(("https://", "http://")):
        return "http", _http_post
    return "file", _file_append


def _file_append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as sink:
        sink.write(line + "\n")
        sink.flush()
        os.fsync(sink.fileno())


LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _http_post(url: str, line: str) -> None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https" and parsed.hostname not in LOOPBACK:
        # The head would travel in the clear, and anyone on the path could answer for the sink.
        raise ValueError("plain http is only for a sink on this host: use https://")
    request = urllib.request.Request(
        url,
        data=line.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    timeout = settings.RENOTIFY_LEDGER_HEAD_SINK_TIMEOUT
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


class _RaisingSysLogHandler(SysLogHandler):
    """SysLogHandler reports a failed emit on stderr and carries on; here it must raise,
    so that the check records the failure."""

    def handleError(self, record: logging.LogRecord) -> None:
        raise  # the error SysLogHandler.emit is handling


def syslog_address(sink: str) -> str | tuple[str, int]:
    """``syslog:`` -> /dev/log (else localhost:514); ``syslog:/path``; ``syslog:host:port``."""
    target = sink.removeprefix(SYSLOG_PREFIX)
    if not target:
        return "/dev/log" if Path("/dev/log").exists() else ("localhost", 514)
    if target.startswith("/"):
        return target
    host, _, port = target.rpartition(":")
    return (host, int(port)) if host else (target, 514)


def _syslog_send(sink: str, line: str) -> None:
    handler = _RaisingSysLogHandler(address=syslog_address(sink))
    handler.setFormatter(logging.Formatter(f"{SYSLOG_TAG}: %(message)s"))
    record = logging.LogRecord(SYSLOG_TAG, logging.INFO, __file__, 0, line, None, None)
    try:
        handler.emit(record)
    finally:
        handler.close()


def ledger_heads_read(lines: Iterable[str]) -> list[RecordedHead]:
    """The heads in a sink file: its JSON lines, or the lines carrying the tag in a file
    syslog wrote (other programs' lines there are skipped).

    Raises ValueError naming the first head that does not parse.
    """
    heads = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip().rstrip("\x00")  # SysLogHandler ends each message with a NUL
        _, tagged, after = line.partition(f"{SYSLOG_TAG}: ")
        if not tagged and not line.startswith("{"):
            continue
        try:
            head = json.loads(after if tagged else line)
            heads.append(RecordedHead(int(head["seq"]), str(head["hash"]), head["checked_at"]))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"line {number} is not a recorded head: {error}") from error
    return heads


@dataclass(frozen=True)
class HeadsVerdict:
    heads_checked: int
    first_broken_seq: int | None = None
    problem: str = ""


def ledger_heads_compare(*, heads: Iterable[RecordedHead]) -> HeadsVerdict:
    """Compare recorded heads with the ledger: each one's event must still be there
    with the same hash. The first broken seq is the first event missing (or the first
    recorded head that changed)."""
    recorded = [head for head in heads if head.seq > 0]  # seq 0: the check verified nothing
    stored = _stored_hashes(sorted({head.seq for head in recorded}))
    gone = [head for head in recorded if head.seq not in stored]
    changed = [head for head in recorded if stored.get(head.seq, head.hash) != head.hash]
    if not gone and not changed:
        return HeadsVerdict(len(recorded))
    ends_at = _ledger_end()
    failures = [(min(head.seq, ends_at + 1), head.seq, "is gone", head) for head in gone]
    failures += [(head.seq, head.seq, "changed", head) for head in changed]
    first_broken, seq, what, head = min(failures, key=lambda failure: failure[:2])
    problem = (
        f"event {seq}, a head recorded at {head.checked_at}, {what}; "
        f"the ledger ends at event {ends_at}"
    )
    if len(failures) > 1:
        problem += f" ({len(failures)} recorded heads do not match)"
    return HeadsVerdict(len(recorded), first_broken, problem)


def _stored_hashes(seqs: list[int]) -> dict[int, str]:
    size = settings.RENOTIFY_EXPORT_CHUNK_SIZE
    stored: dict[int, str] = {}
    for start in range(0, len(seqs), size):
        chunk = seqs[start : start + size]
        stored.update(ConsentEvent.objects.filter(seq__in=chunk).values_list("seq", "hash"))
    return stored


def _ledger_end() -> int:
    last = ConsentEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    return last or 0
