"""What members do from a notice link: view, acknowledge, object or allow again, unsubscribe.

Every choice goes through ``accounts.services.consent.consent_record`` (one ledger
event and the Preference, in one transaction; a repeat records nothing). An
objection also gets a receipt by email, sent by a task after the commit.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.dateparse import parse_datetime

from accounts.models import Action, ConsentEvent, Member, Purpose, Source
from accounts.selectors import EffectiveState, member_effective_states
from accounts.services.consent import Recorded, consent_record
from campaigns import tokens
from campaigns.models import Campaign, Delivery, NoticeText, NoticeVersion, ObjectionReceipt
from campaigns.rendering import markdown_to_html, text_for_locale, version_texts

# Actions a member can take for a purpose on the page, by the form's value.
PREFERENCE_ACTIONS = {"object": Action.OBJECT, "allow": Action.WITHDRAW_OBJECTION}


def delivery_for_token(token: str) -> Delivery:
    """The delivery a notice link stands for, with its member, campaign and version, and
    ``acknowledged`` (whether the member acknowledged that version); BadToken for a bad
    or unknown link alike."""
    delivery = notice_delivery(delivery_id=tokens.delivery_from_notice_token(token))
    if delivery is None:
        raise tokens.BadToken("unknown delivery")
    return delivery


# Every view and objection of a notice page starts here, so this is plain SQL: on the
# machines measured, building the same query with the ORM (select_related, only,
# Exists) took four times as long as running it. Columns not read here stay deferred
# on the instances (loaded on access), exactly as with .only().
_NOTICE_DELIVERY_SQL = """
SELECT d.id, d.campaign_id, d.member_id, d.locale, d.sent_at, d.viewed_at,
       m.id, m.locale, m.jurisdiction, m.email_status, m.created_at,
       v.id, v.notice_id, v.number, v.default_locale, v.effective_date,
       v.objection_deadline, v.frozen_at,
       EXISTS (SELECT 1 FROM {event} e WHERE e.member_id = d.member_id
               AND e.action = %s AND e.notice_version_id = v.id)
FROM {delivery} d
JOIN {member} m ON m.id = d.member_id
JOIN {campaign} c ON c.id = d.campaign_id
JOIN {version} v ON v.id = c.notice_version_id
WHERE d.id = %s
"""
_DELIVERY_FIELDS = ("id", "campaign_id", "member_id", "locale", "sent_at", "viewed_at")
_MEMBER_FIELDS = ("id", "locale", "jurisdiction", "email_status", "created_at")
_VERSION_FIELDS = (
    "id",
    "notice_id",
    "number",
    "default_locale",
    "effective_date",
    "objection_deadline",
    "frozen_at",
)


def notice_delivery(*, delivery_id: int) -> Delivery | None:
    sql = _NOTICE_DELIVERY_SQL.format(
        event=ConsentEvent._meta.db_table,
        delivery=Delivery._meta.db_table,
        member=Member._meta.db_table,
        campaign=Campaign._meta.db_table,
        version=NoticeVersion._meta.db_table,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [Action.ACKNOWLEDGE.value, delivery_id])
        row = cursor.fetchone()
    if row is None:
        return None
    m, v = len(_DELIVERY_FIELDS), len(_DELIVERY_FIELDS) + len(_MEMBER_FIELDS)
    a = v + len(_VERSION_FIELDS)
    delivery = _instance(Delivery, _DELIVERY_FIELDS, row[:m])
    delivery.member = _instance(Member, _MEMBER_FIELDS, row[m:v])
    version = _instance(NoticeVersion, _VERSION_FIELDS, row[v:a])
    delivery.campaign = _instance(Campaign, ("id", "notice_version_id"), [row[1], version.pk])
    delivery.campaign.notice_version = version
    delivery.acknowledged = bool(row[a])
    return delivery


def _instance(model: type, names: tuple[str, ...], values) -> Any:
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


def notice_view(*, delivery: Delivery, locale: str | None = None) -> NoticeView:
    """The exact version that was sent, in the locale it was sent in unless asked otherwise."""
    version = delivery.campaign.notice_version
    text = text_for_locale(version, locale or delivery.locale or delivery.member.locale)
    return NoticeView(
        delivery=delivery,
        version=version,
        text=text,
        body_html=markdown_to_html(text.body_markdown),
        locales=[t.locale for t in version_texts(version)],
        states=member_effective_states(member=delivery.member),
        acknowledged=delivery.acknowledged,
    )


def delivery_viewed(*, delivery: Delivery) -> bool:
    """Note the first view of the notice page (evidence, not a consent event)."""
    if delivery.viewed_at is not None:
        return False  # the usual case for a page opened again: no write
    with connection.cursor() as cursor:  # plain SQL: compiling the ORM's took longer
        cursor.execute(
            f"UPDATE {Delivery._meta.db_table} SET viewed_at = %s"
            " WHERE id = %s AND viewed_at IS NULL",
            [connection.ops.adapt_datetimefield_value(timezone.now()), delivery.pk],
        )
        return cursor.rowcount == 1


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
    """Object (or allow again) for a purpose: applies to the member, not to one campaign."""
    with transaction.atomic():
        recorded = consent_record(
            member=member,
            action=PREFERENCE_ACTIONS[choice],
            source=Source.PREFERENCE_PAGE,
            purpose=purpose,
            notice_version_id=delivery.campaign.notice_version_id if delivery else None,
            delivery_id=delivery.pk if delivery else None,
            ip=ip,
            user_agent=user_agent,
            comment=comment.strip()[:2000],
            metadata=_timing(delivery),
        )
        if recorded.created and recorded.event.action == Action.OBJECT:
            from campaigns.tasks import objection_receipt_send_task

            event_id = recorded.event.pk
            transaction.on_commit(lambda: objection_receipt_send_task.delay(event_id))
    return recorded


def delivery_unsubscribe(
    *, delivery: Delivery, source: Source, ip: str | None, user_agent: str
) -> Recorded:
    """Stop notice emails to this member (not an objection to any data use)."""
    return consent_record(
        member=delivery.member,
        action=Action.UNSUBSCRIBE,
        source=source,
        notice_version_id=delivery.campaign.notice_version_id,
        delivery_id=delivery.pk,
        ip=ip,
        user_agent=user_agent,
    )


def objection_receipt_send(*, consent_event_id: int) -> bool:
    """Email the member a receipt for their objection, at most once per ledger event."""
    event = ConsentEvent.objects.select_related("member", "purpose").get(pk=consent_event_id)
    try:
        with transaction.atomic():
            receipt = ObjectionReceipt.objects.create(consent_event_id=event.pk)
    except IntegrityError:
        return False  # already sent (or being sent) for this objection
    try:
        _receipt_message(event).send()
    except Exception:
        ObjectionReceipt.objects.filter(pk=receipt.pk).delete()  # let the retry send it
        raise
    ObjectionReceipt.objects.filter(pk=receipt.pk).update(sent_at=timezone.now())
    return True


def _receipt_message(event: ConsentEvent) -> EmailMultiAlternatives:
    version = (
        NoticeVersion.objects.filter(pk=event.notice_version_id).first()
        if event.notice_version_id
        else None
    )
    locale = event.member.locale.split("-")[0]
    if locale not in dict(settings.LANGUAGES):
        locale = settings.LANGUAGE_CODE
    context = {
        "reference": event.seq,
        "purpose": event.purpose,
        "objected_at": event.created_at,
        "version": version,
        "preferences_url": tokens.preferences_url(event.member_id),
        "effective_from": _effective_from(version, event.created_at),
    }
    with translation.override(locale):
        subject = render_to_string("emails/objection-receipt-subject.txt", context).strip()
        text = render_to_string("emails/objection-receipt-body.txt", context)
        html = render_to_string("emails/objection-receipt-body.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=[event.member.email])
    message.attach_alternative(html, "text/html")
    message.metadata = {"consent_event": str(event.seq)}
    message.tags = ["objection-receipt"]
    return message


def _effective_from(version: NoticeVersion | None, objected_at: datetime):
    """Before the deadline, the objection holds before the data use starts; after it, from now."""
    if version and objected_at.date() <= version.objection_deadline:
        return version.effective_date
    return objected_at.date()
