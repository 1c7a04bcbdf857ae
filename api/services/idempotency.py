"""Writes made with an ``Idempotency-Key``: answered once, whatever the retries.

The first request with a key claims it: an ``IdempotentRequest`` row, committed before
the write runs, unique per (client, key), so of two requests arriving at once only one
claims it. Its write runs and the answer (status and body) is stored on the row.

- A retry with the same key and the same request gets that answer back and writes
  nothing; the same key with another request is refused (``KeyReused``, 409).
- A retry arriving while the first is still being answered waits for its answer (up
  to ``WAIT``), then is told to try again (``KeyBusy``, 409).
- A write that fails releases its key, so the retry runs it again.
- A claim left by a request that died before answering is taken over after ``STALE``:
  the write runs again, which records nothing twice when the write is idempotent itself
  (a choice that already stands is no new event).
"""

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from api.models import ApiClient, IdempotentRequest

# The status a claimed key carries until its answer is stored.
IN_PROGRESS = 0
WAIT = timedelta(seconds=5)
POLL_SECONDS = 0.05
STALE = timedelta(minutes=1)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class KeyReused(Exception):
    """The key was first used for another request."""


class KeyBusy(Exception):
    """The key's first request is still being answered."""


def request_fingerprint(**parts: Any) -> str:
    """SHA-256 of the request's meaning (``parts`` as canonical JSON)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent_answer(
    *, client: ApiClient, key: str | None, fingerprint: str, write: Callable[[], Answer]
) -> Answer:
    """``write()``'s answer, run at most once per ``key`` (every time without a key)."""
    if key is None:
        return write()
    deadline = time.monotonic() + WAIT.total_seconds()
    while True:
        claim = _claim(client, key, fingerprint)
        if claim is not None:
            return _answer_and_store(claim, write)
        row = IdempotentRequest.objects.filter(client=client, key=key).first()
        if row is not None:
            if row.request_hash != fingerprint:
                raise KeyReused(f"the Idempotency-Key {key!r} was used for another request")
            if row.status_code != IN_PROGRESS:
                return Answer(row.status_code, row.response)
            if _stale_take_over(row):
                return _answer_and_store(row, write)
        # Still being answered, or released by a write that failed (claim it again).
        if time.monotonic() > deadline:
            raise KeyBusy(f"a request with the Idempotency-Key {key!r} is still in progress")
        time.sleep(POLL_SECONDS)


def _claim(client: ApiClient, key: str, fingerprint: str) -> IdempotentRequest | None:
    try:
        with transaction.atomic():
            return IdempotentRequest.objects.create(
                client=client,
                key=key,
                request_hash=fingerprint,
                status_code=IN_PROGRESS,
                response={},
            )
    except IntegrityError:
        return None


def _answer_and_store(claim: IdempotentRequest, write: Callable[[], Answer]) -> Answer:
    try:
        answer = write()
    except BaseException:
        IdempotentRequest.objects.filter(pk=claim.pk, status_code=IN_PROGRESS).delete()
        raise
    IdempotentRequest.objects.filter(pk=claim.pk).update(
        status_code=answer.status, response=answer.body
    )
    return answer


def _stale_take_over(row: IdempotentRequest) -> bool:
    """Whether this request took over a claim older than STALE (one request does)."""
    if row.created_at > timezone.now() - STALE:
        return False
    taken = IdempotentRequest.objects.filter(
        pk=row.pk, status_code=IN_PROGRESS, created_at=row.created_at
    ).update(created_at=timezone.now())
    return taken == 1
