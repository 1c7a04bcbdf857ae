"""Notice versions: copy a frozen version into an editable one, preview, send a test."""

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import get_connection
from django.db import transaction
from django.urls import reverse

from accounts.permissions import permission_require
from audit.models import Action
from audit.services import staff_action_record
from campaigns.models import NoticeText, NoticeVersion
from campaigns.rendering import compile_message
from campaigns.services.sending import esp_tag, notice_email

TEST_SUBJECT_PREFIX = "[TEST] "


@transaction.atomic
def notice_version_copy(*, version: NoticeVersion, by: User | None) -> NoticeVersion:
    """A new, editable version with the same texts and dates (how a sent notice is changed).
    Needs ``campaigns.add_noticeversion``."""
    permission_require(by=by, perm="campaigns.add_noticeversion")
    copy = NoticeVersion.objects.create(
        notice=version.notice,
        default_locale=version.default_locale,
        effective_date=version.effective_date,
        objection_deadline=version.objection_deadline,
        last_edited_by=by,
    )
    for text in version.texts.all():
        NoticeText.objects.create(
            version=copy, locale=text.locale, subject=text.subject, body_markdown=text.body_markdown
        )
    if by is not None:
        staff_action_record(
            by=by,
            action=Action.NOTICE_VERSION_COPY,
            target=copy,
            detail={"copied_from": version, "copied_from_id": version.pk},
        )
    return copy


def preview_url(version: NoticeVersion, locale: str) -> str:
    return settings.SITE_URL + reverse(
        "admin:campaigns_noticeversion_preview", args=[version.pk, locale]
    )


def notice_send_test(*, version: NoticeVersion, locale: str, to: str, by: User | None) -> None:
    """Send the rendered notice to a staff address. No Delivery row: never counted in stats.
    Its links lead to the staff preview, not to a member's page. Needs
    ``campaigns.send_test_notice``."""
    permission_require(by=by, perm="campaigns.send_test_notice")
    compiled = compile_message(version, locale, reminder=False)
    link = preview_url(version, compiled.locale)
    text, html = compiled.personalise(notice_url=link, unsubscribe_url=link)
    message = notice_email(
        subject=TEST_SUBJECT_PREFIX + compiled.subject,
        text=text,
        html=html,
        to=to,
        delivery_id=0,
        campaign_id=0,
        unsubscribe_url=link,
        connection=get_connection(fail_silently=False),
    )
    message.extra_headers["X-Renotify-Test"] = "yes"
    esp_tag(message, metadata={"test": "yes", "notice_version_id": str(version.pk)}, tags=["test"])
    # Recorded once the message is sent, outside any transaction (a send is no database
    # change): a failed send raises first and records nothing.
    message.send()
    if by is not None:
        staff_action_record(
            by=by, action=Action.TEST_SEND, target=version, detail={"locale": compiled.locale}
        )
