"""The audience count: who a campaign's filters select, who of them can be emailed, and
why the others cannot (``campaigns.selectors.audience_preview``, one grouped query).

Shown by the campaign flow and the approver's page, and answered as JSON for the flow's
live count (``static/renotify/audience-count.js``) as the filters change."""

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from accounts.models import UNSUBSCRIBED, EmailStatus
from campaigns.models import Campaign, NoticeVersion
from campaigns.selectors import AudiencePreview, audience_preview
from console.access import console_view
from console.forms import AudienceStep

UNREACHABLE_LABELS = {
    EmailStatus.BOUNCED: "address bounced",
    EmailStatus.COMPLAINED: "marked the email as spam (complained)",
    UNSUBSCRIBED: "unsubscribed",
}


def preview_context(preview: AudiencePreview, *, breakdown: bool = True) -> dict[str, Any]:
    """What ``console/_audience_counts.html`` shows; ``breakdown=False`` for counts that
    have none (a fan-out's snapshot keeps only the totals)."""
    return {
        "breakdown": breakdown,
        "targeted": preview.targeted,
        "reachable": preview.reachable,
        "not_reachable": preview.targeted - preview.reachable,
        "unreachable": [
            (UNREACHABLE_LABELS.get(reason, reason), n)
            for reason, n in sorted(preview.unreachable.items())
        ],
        "by_jurisdiction": sorted(preview.by_jurisdiction.items()),
        "by_locale": sorted(preview.by_locale.items()),
    }


@console_view("campaigns.view_campaign")
def audience_count(request: HttpRequest) -> HttpResponse:
    """GET with the audience step's fields (and ``notice_version``, which "only not yet
    acknowledged" needs): the counts as JSON, or 400 with each field's errors."""
    form = AudienceStep(data=request.GET)
    if not form.is_valid():
        return _errors({name: [str(e) for e in errors] for name, errors in form.errors.items()})
    campaign = Campaign(**form.cleaned_data)
    if form.cleaned_data["only_not_acknowledged"]:
        version = _version(request.GET.get("notice_version", ""))
        if version is None:
            return _errors({"notice_version": ["Pick a notice version first."]})
        campaign.notice_version = version
    preview = audience_preview(campaign=campaign)
    return JsonResponse(
        {
            "targeted": preview.targeted,
            "reachable": preview.reachable,
            "unreachable": preview.unreachable,
            "by_jurisdiction": preview.by_jurisdiction,
            "by_locale": preview.by_locale,
            "labels": {
                reason: UNREACHABLE_LABELS.get(reason, reason) for reason in preview.unreachable
            },
        }
    )


def _version(raw: str) -> NoticeVersion | None:
    if not raw.isdigit():
        return None
    return NoticeVersion.objects.select_related("notice").filter(pk=int(raw)).first()


def _errors(errors: dict[str, list[str]]) -> JsonResponse:
    return JsonResponse({"errors": errors}, status=400)
