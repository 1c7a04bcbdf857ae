"""Choices and notices from the platform's own channels, into the one ledger.

- A choice made in the platform's settings screen: ``source=api``. The ledger's time is
  always the server's; the client's own time of the choice (``occurred_at``, refused
  when later than now plus ``CLOCK_SKEW``), the client's id and the idempotency key go
  in the event's metadata. A choice that already stands records no second event
  (``consent_record``), and a retry with the same ``Idempotency-Key`` gets the first
  answer back (``api.services.idempotency``).
- A notice version shown in the platform's app, and acknowledged there:
  ``source=in_app``, no delivery, one event per member, version and kind
  (``consent_record`` finds the one that stands). Only a version that has been sent
  (frozen): a wording that may still change proves nothing about what was shown.
- A signed link to the member's standing preference page.

Every event goes through ``consent_record``, which runs outside any transaction.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from accounts.models import Action, Member, Purpose, Source
from accounts.selectors import member_effective_state
from accounts.services.consent import consent_record
from api.models import ApiClient
from api.selectors import event_out, state_out
from api.services.idempotency import Answer, idempotent_answer, request_fingerprint
from campaigns import tokens
from campaigns.models import NoticeVersion
from config.fields import text_printable

CLOCK_SKEW = timedelta(minutes=5)
COMMENT_LONGEST = 2000
# What the platform may record for a purpose, by the API's name for it.
CHOICE_ACTIONS = {
    action.value: action for action in (Action.OBJECT, Action.WITHDRAW_OBJECTION, Action.OPT_IN)
}
IN_APP_ACTIONS = {"served": Action.SERVE, "acknowledged": Action.ACKNOWLEDGE}


class ChoiceRefused(ValueError):
    """The request cannot be recorded as it stands (422): nothing was written."""


class NoticeNotSent(ValueError):
    """The notice version has not been sent, so its wording may still change (409)."""


def choice_record(
    *,
    client: ApiClient,
    member: Member,
    purpose: Purpose,
    action: str,
    occurred_at: datetime | None = None,
    comment: str = "",
    idempotency_key: str | None = None,
) -> Answer:
    """Record the member's choice for ``purpose``: 201 when it is a new event, 200 when
    the choice already stood (or the key's first answer, whatever it was)."""
    occurred = _occurred_at_check(occurred_at)
    comment = text_printable(comment).strip()[:COMMENT_LONGEST]
    fingerprint = request_fingerprint(
        member=member.external_id,
        purpose=purpose.slug,
        action=action,
        occurred_at=occurred,
        comment=comment,
    )
    metadata = {"client": client.pk, "occurred_at": occurred, "idempotency_key": idempotency_key}

    def write() -> Answer:
        recorded = consent_record(
            member=member,
            action=CHOICE_ACTIONS[action],
            source=Source.API,
            purpose=purpose,
            comment=comment,
            metadata={name: value for name, value in metadata.items() if value is not None},
        )
        body = {
            "recorded": recorded.created,
            "event": event_out(recorded.event),
            "preference": state_out(member_effective_state(member=member, purpose=purpose)),
        }
        return Answer(201 if recorded.created else 200, body)

    return idempotent_answer(
        client=client, key=idempotency_key, fingerprint=fingerprint, write=write
    )


def _occurred_at_check(occurred_at: datetime | None) -> str | None:
    """The client's time as ISO 8601 in UTC; ChoiceRefused when it has no offset or is in
    the future (beyond CLOCK_SKEW)."""
    if occurred_at is None:
        return None
    if timezone.is_naive(occurred_at):
        raise ChoiceRefused("occurred_at needs a UTC offset, e.g. 2026-05-01T12:00:00Z")
    if occurred_at > timezone.now() + CLOCK_SKEW:
        raise ChoiceRefused("occurred_at is in the future")
    try:
        return occurred_at.astimezone(UTC).isoformat()
    except OverflowError as exc:  # year 1 with an offset east of UTC
        raise ChoiceRefused("occurred_at is out of range") from exc


def notice_in_app_record(
    *, client: ApiClient, member: Member, version: NoticeVersion, kind: str
) -> Answer:
    """Record that the platform showed the member ``version`` in its app (``served``) or
    that the member acknowledged it there (``acknowledged``): 201 when new, 200 when it
    was recorded before."""
    if not version.is_frozen:
        raise NoticeNotSent(
            f"notice version {version.pk} has not been sent: its wording may change"
        )
    recorded = consent_record(
        member=member,
        action=IN_APP_ACTIONS[kind],
        source=Source.IN_APP,
        notice_version_id=version.pk,
        metadata={"client": client.pk},
    )
    body: dict[str, Any] = {"recorded": recorded.created, "event": event_out(recorded.event)}
    return Answer(201 if recorded.created else 200, body)


def preference_link_mint(*, member: Member) -> str:
    """The absolute, signed address of the member's standing preference page (it never
    expires: see ``campaigns.tokens``)."""
    return tokens.preferences_url(member.pk)
