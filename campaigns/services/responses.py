"""What members do from a notice link: view, acknowledge, object or allow again, unsubscribe.

Every choice goes through ``accounts.services.consent.consent_record`` (one ledger
event and the Preference, in one transaction; a repeat records nothing). An
objection also gets a receipt by email, sent by a task after the commit.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.template.loader import render_to_string
from django.utils import timezone, translation

from accounts.models import Action, ConsentEvent, Member, Purpose, Source
from accounts.selectors import EffectiveState, member_effective_states
from accounts.services.consent import Recorded, consent_record
from campaigns import tokens
from campaigns.models import Delivery, NoticeText, NoticeVersion, ObjectionReceipt
from campaigns.rendering import markdown_to_html, text_for_locale, version_texts

# Actions a member can take for a purpose on the page, by the form's value.
PREFERENCE_ACTIONS = {"object": Action.OBJECT, "allow": Action.WITHDRAW_OBJECTION}


# What the notice page and its forms read of a delivery: naming the columns keeps the
# query small (a page view is a few milliseconds, and this is most of the SQL work).
NOTICE_PAGE_FIELDS = (
    "locale",
    "sent_at",
    "viewed_at",
    "member__locale",
    "member__jurisdiction",
    "member__email_status",
    "member__created_at",
    "campaign__notice_version__default_locale",
    "campaign__notice_version__effective_date",
    "campaign__notice_version__objection_deadline",
    "campaign__notice_version__frozen_at",
)


def delivery_for_token(token: str) -> Delivery:
    """The delivery a notice link stands for, with ``acknowledged`` (whether the member
    acknowledged its version); BadToken for a bad or unknown one alike."""
    delivery_id = tokens.delivery_from_notice_token(token)
    acknowledged = ConsentEvent.objects.filter(
        member_id=OuterRef("member_id"),
        action=Action.ACKNOWLEDGE,
        notice_version_id=OuterRef("campaign__notice_version_id"),
    )
    try:
        return (
            Delivery.objects.select_related("member", "campaign__notice_version")
            .only(*NOTICE_PAGE_FIELDS)
            .annotate(acknowledged=Exists(acknowledged))
            .get(pk=delivery_id)
        )
    except Delivery.DoesNotExist:
        raise tokens.BadToken("unknown delivery") from None


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
