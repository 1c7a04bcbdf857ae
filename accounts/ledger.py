"""The consent ledger's hash chain: how an event is hashed and how the chain is checked.

Each event's hash is HMAC-SHA256(key, prev_hash + canonical payload). Changing
any stored field, removing a row or reordering rows breaks the chain from that
event on, and only someone holding the key could forge a consistent new chain.
"""

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The key and the address hash are shared with the staff audit trail.
from config.hashing import hash_ip as hash_ip
from config.hashing import ledger_key as ledger_key

GENESIS_HASH = "0" * 64

# The fields covered by the hash, in payload order. Adding a field here changes
# every hash: it needs a new chain version, not an edit.
HASHED_FIELDS = (
    "seq",
    "member_id",
    "purpose_id",
    "action",
    "source",
    "notice_version_id",
    "delivery_id",
    "created_at",
    "ip_hash",
    "user_agent",
    "comment",
    "metadata",
)


def _canonical(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def event_payload(fields: Mapping[str, Any]) -> bytes:
    values = [_canonical(fields[name]) for name in HASHED_FIELDS]
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(fields: Mapping[str, Any], *, prev_hash: str, key: bytes | None = None) -> str:
    message = prev_hash.encode() + b"\n" + event_payload(fields)
    return hmac.new(key or ledger_key(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ChainVerdict:
    events_checked: int
    head_seq: int
    head_hash: str
    first_broken_seq: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.first_broken_seq is None


def chain_verify(
    events: Iterable[Mapping[str, Any]], *, after_seq: int = 0, after_hash: str = GENESIS_HASH
) -> ChainVerdict:
    """Walk events in ``seq`` order (dicts with HASHED_FIELDS, prev_hash, hash).

    From genesis by default; given an event already verified (``after_seq``,
    ``after_hash``), the walk starts at the event after it: the hashes chain every
    event up to it, so only what came since needs walking.
    """
    key = ledger_key()
    expected_seq, prev_hash, checked = after_seq + 1, after_hash, 0
    for event in events:
        problem = ""
        if event["seq"] != expected_seq:
            problem = f"event {expected_seq} is missing (next stored event is {event['seq']})"
        elif event["prev_hash"] != prev_hash:
            problem = "prev_hash does not match the previous event's hash"
        elif not hmac.compare_digest(
            event_hash(event, prev_hash=prev_hash, key=key), event["hash"]
        ):
            problem = "stored hash does not match the event's content"
        if problem:
            return ChainVerdict(checked, expected_seq - 1, prev_hash, expected_seq, problem)
        expected_seq, prev_hash, checked = expected_seq + 1, event["hash"], checked + 1
    return ChainVerdict(checked, expected_seq - 1, prev_hash)
