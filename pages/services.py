"""What members do from a notice link: view, acknowledge, object or allow again, unsubscribe.

Every choice goes through ``accounts.services.consent.consent_record`` (one ledger
event and the Preference, in one transaction; a repeat records nothing). An
objection also gets a receipt by email, sent by a task after the commit.

Global Privacy Control (``Sec-GPC: 1``) is the one thing a GET may record (``gpc_visit``):
GDPR Art. 21(5) lets a member object by automated means, and the signal is their own
browser's, which link scanners do not send. Where staff chose ``applied`` for a purpose,
the signal is recorded as the member's objection when the member has never made a choice
for that purpose (no Preference row), so it applies once, on the first visit with the
signal, and never over a choice made since (a withdrawn objection leaves its row).
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import Action, Choice, GpcMode, Member, Preference, Purpose, Source
from accounts.selectors import EffectiveState, member_effective_states, purposes_in_force
from accounts.services.consent import Recorded, consent_record
from campaigns import tokens
from campaigns.models import Campaign, Delivery, NoticeText, NoticeVersion
from campaigns.rendering import markdown_to_html, text_for_locale, version_texts
from campaigns.services import receipts
from config.fields import text_printable
from db import notice_page as db_notice_page

logger = logging.getLogger(__name__)

# Actions a member can take for a purpose on the page, by the form's value.
PREFERENCE_ACTIONS = {"object": Action.OBJECT, "allow": Action.WITHDRAW_OBJECTION}


def delivery_for_token(token: str, *, viewed: bool = False, page: bool = True) -> Delivery:
    """The delivery a notice link stands for, with its member, campaign and version and,
    for a ``page`` to show, ``acknowledged`` (whether the member acknowledged that
    version) and ``preferences`` (the member's, by purpose id; both None otherwise);
    BadToken for a bad or unknown link alike. ``viewed`` (a GET) notes the first view of
    the page: evidence, not a consent event."""
    delivery_id = tokens.delivery_from_notice_token(token)
    delivery = notice_delivery(delivery_id=delivery_id, viewed=viewed, page=page)
    if delivery is None:
        raise tokens.BadToken("unknown delivery")
    return delivery


def notice_delivery(
    *, delivery_id: int, viewed: bool = False, page: bool = True
) -> Delivery | None:
    read = db_notice_page.notice_delivery_read(
        delivery_id=delivery_id,
        page=page,
        acknowledge=Action.ACKNOWLEDGE.value,
        viewed_at=timezone.now() if viewed else None,
    )
    if read is None:
        return None
    delivery = _instance(Delivery, db_notice_page.DELIVERY_FIELDS, read.delivery)
    delivery.member = _instance(Member, db_notice_page.MEMBER_FIELDS, read.member)
    version = _instance(NoticeVersion, db_notice_page.VERSION_FIELDS, read.version)
    # The campaign as the page sees it: its version is the one this delivery carries (a
    # wording test's variant), so the page shows it and the ledger events name it.
    delivery.campaign = _instance(
        Campaign, ("id", "notice_version_id"), [delivery.campaign_id, version.pk]
    )
    delivery.campaign.notice_version = version
    delivery.notice_version_id = version.pk
    delivery.acknowledged = read.acknowledged
    delivery.preferences = None
    if page:
        rows = (
            [
                _instance(Preference, db_notice_page.PREFERENCE_FIELDS, values)
                for values in read.preferences
            ]
            if read.preferences is not None
            else Preference.objects.filter(member_id=delivery.member_id)
        )
        delivery.preferences = {p.purpose_id: p for p in rows}
    if viewed and not read.viewed_noted and delivery.viewed_at is None:
        # The usual case for a page opened again (viewed_at set) writes nothing.
        db_notice_page.delivery_viewed_mark(delivery_id=delivery.pk, at=timezone.now())
    return delivery


def _instance(model: type[models.Model], names: tuple[str, ...], values) -> Any:
    # Every datetime column here is named *_at; SQLite hands raw SQL naive UTC values.
    values = [_aware(v) if n.endswith("_at") else v for n, v in zip(names, values, strict=True)]
    return model.from_db(connection.alias, names, values)


def _aware(value: datetime | str | None) -> datetime | None:
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def delivery_for_unsubscribe_token(token: str) -> Delivery:
    delivery_id = tokens.delivery_from_unsubscribe_token(token)
    try:
        return Delivery.objects.select_related("member", "campaign").get(pk=delivery_id)
    except Delivery.DoesNotExist:
        raise tokens.BadToken("unknown delivery") from None


def member_for_token(token: str) -> Member:
    try:
        return Member.objects.get(pk=tokens.member_from_token(token))
    except Member.DoesNotExist:
        raise tokens.BadToken("unknown member") from None


@dataclass(frozen=True)
class NoticeView:
    """Everything the notice page shows for one delivery, in one locale."""

    delivery: Delivery
    version: NoticeVersion
    text: NoticeText
    body_html: str
    locales: list[str]
    states: list[EffectiveState]
    acknowledged: bool

    @property
    def deadline_passed(self) -> bool:
        return timezone.now().date() > self.version.objection_deadline


def notice_view(
    *, delivery: Delivery, locale: str | None = None, reader_locale: str | None = None
) -> NoticeView:
    """The exact version that was sent, in the locale it was sent in unless asked otherwise;
    purposes worded for ``reader_locale`` (the page's; by default the text's)."""
    version = delivery.campaign.notice_version
    wanted = locale or delivery.locale or delivery.member.locale
    text = text_for_locale(version, wanted)
    return NoticeView(
        delivery=delivery,
        version=version,
        text=text,
        body_html=markdown_to_html(text.body_markdown),
        locales=[t.locale for t in version_texts(version)],
        states=member_effective_states(
            member=delivery.member,
            preferences=delivery.preferences,
            locale=reader_locale or wanted,
        ),
        acknowledged=bool(delivery.acknowledged),
    )


def _timing(delivery: Delivery | None) -> dict:
    """Flag a response that came implausibly fast after sending: recorded, not refused."""
    if delivery is None or delivery.sent_at is None:
        return {}
    seconds = (timezone.now() - delivery.sent_at).total_seconds()
    return {"too_fast": True} if seconds < settings.RENOTIFY_MACHINE_SECONDS else {}


def notice_acknowledge(*, delivery: Delivery, ip: str | None, user_agent: str) -> Recorded:
    return consent_record(
        member=delivery.member,
        action=Action.ACKNOWLEDGE,
        source=Source.PREFERENCE_PAGE,
        notice_version_id=delivery.campaign.notice_version_id,
        delivery_id=delivery.pk,
        ip=ip,
        user_agent=user_agent,
        metadata=_timing(delivery),
    )


def preference_choose(
    *,
    member: Member,
    purpose: Purpose,
    choice: str,
    delivery: Delivery | None,
    ip: str | None,
    user_agent: str,
    comment: str = "",
) -> Recorded:
    """Object (or allow again) for a purpose: applies to the member, not to one campaign.

    Not wrapped in a transaction: ``consent_record`` commits the choice itself (on
    PostgreSQL in one statement, without BEGIN and COMMIT round trips)."""
    recorded = consent_record(
        member=member,
        action=PREFERENCE_ACTIONS[choice],
        source=Source.PREFERENCE_PAGE,
        purpose=purpose,
        notice_version_id=delivery.campaign.notice_version_id if delivery else None,
        delivery_id=delivery.pk if delivery else None,
        ip=ip,
        user_agent=user_agent,
        comment=text_printable(comment).strip()[:2000],
        metadata=_timing(delivery),
    )
    event = recorded.event
    if recorded.created and event is not None and event.action == receipts.RECEIPT_ACTION:
        receipts.receipt_expect()  # the event itself is the receipt's outbox entry
    return recorded


def delivery_unsubscribe(
    *, delivery: Delivery, source: Source, ip: str | None, user_agent: str
) -> Recorded:
    """Stop notice emails to this member (not an objection to any data use)."""
    return consent_record(
        member=delivery.member,
        action=Action.UNSUBSCRIBE,
        source=source,
        notice_version_id=delivery.notice_version_id or delivery.campaign.notice_version_id,
        delivery_id=delivery.pk,
        ip=ip,
        user_agent=user_agent,
    )


# The request header a browser sends Global Privacy Control in, as Django's META names it.
GPC_HEADER = "HTTP_SEC_GPC"


def gpc_signalled(meta: dict) -> bool:
    """Whether the request carries ``Sec-GPC: 1`` (the only value the spec defines)."""
    return meta.get(GPC_HEADER, "").strip() == "1"


@dataclass(frozen=True)
class GpcVisit:
    """What a visit's Global Privacy Control signal did, as sets of purpose slugs:
    ``offered`` (the page pre-selects and explains the objection: purposes the member has
    not objected to), ``applied`` (recorded
    as an objection on this visit), ``kept`` (applied mode, but a choice the member
    already made for the purpose stands)."""

    offered: frozenset[str] = frozenset()
    applied: frozenset[str] = frozenset()
    kept: frozenset[str] = frozenset()

    @property
    def preselected(self) -> str:
        """The offered objection the page puts first (purposes are shown by slug)."""
        return min(self.offered, default="")

    def key(self) -> tuple:
        """What the page shows of the visit, for the notice page's kept skeletons."""
        if not (self.offered or self.applied or self.kept):
            return ()
        return (tuple(sorted(self.offered)), tuple(sorted(self.applied)), tuple(sorted(self.kept)))


NO_SIGNAL = GpcVisit()


def member_preferences(*, member_id: int) -> dict[int, Preference]:
    """The member's Preference rows, by purpose id."""
    return {p.purpose_id: p for p in Preference.objects.filter(member_id=member_id)}


def gpc_visit(
    *,
    member: Member,
    preferences: dict[int, Preference],
    delivery: Delivery | None,
    ip: str | None,
    user_agent: str,
) -> tuple[GpcVisit, dict[int, Preference]]:
    """Act on a page visit that carries the signal, purpose by purpose, as staff chose
    (``Purpose.gpc_mode``); the member's preferences (``preferences``, by purpose id, read
    again only if this visit recorded anything) for the page to show. Recording never
    fails the page: a failure is logged and the objection is offered instead."""
    offered: set[str] = set()
    applied: set[str] = set()
    kept: set[str] = set()
    for purpose, _policies in purposes_in_force():
        if purpose.gpc_mode == GpcMode.OFFERED:
            if _choice(preferences, purpose) != Choice.OUT:
                offered.add(purpose.slug)
        elif purpose.gpc_mode == GpcMode.APPLIED:
            if purpose.pk in preferences:
                kept.add(purpose.slug)
            elif _gpc_objection_record(member, purpose, delivery, ip, user_agent):
                applied.add(purpose.slug)
            else:
                offered.add(purpose.slug)
    if applied:
        preferences = member_preferences(member_id=member.pk)
    return GpcVisit(frozenset(offered), frozenset(applied), frozenset(kept)), preferences


def _choice(preferences: dict[int, Preference], purpose: Purpose) -> str | None:
    preference = preferences.get(purpose.pk)
    return preference.choice if preference else None


def _gpc_objection_record(
    member: Member, purpose: Purpose, delivery: Delivery | None, ip: str | None, user_agent: str
) -> bool:
    try:
        consent_record(
            member=member,
            action=Action.OBJECT,
            source=Source.GPC,
            purpose=purpose,
            notice_version_id=delivery.campaign.notice_version_id if delivery else None,
            delivery_id=delivery.pk if delivery else None,
            ip=ip,
            user_agent=user_agent,
            metadata={"gpc": GpcMode.APPLIED.value, **_timing(delivery)},
        )
    except Exception:
        # The member's page must still show; they can still object with one tap.
        logger.exception("GPC objection not recorded (purpose %s)", purpose.slug)
        return False
    return True
