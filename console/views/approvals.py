"""The approver's inbox: campaigns awaiting approval, the longest waiting first; and each
one's page, with the email as its members will see it beside who it reaches, its
history (why it was sent back before), and the Approve and Send back buttons of
``campaign_actions`` (which also refuses approval to the campaign's last editor).

The email is shown in a sandboxed frame of its own URL (``approval_preview``): its HTML
carries the inline styles emails need, which the console's own policy forbids, so that
one response gets a policy that allows them (and nothing else: no scripts, no hosts)."""

from typing import Any

from csp.decorators import csp_replace, csp_update
from django.db.models import F, OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.clickjacking import xframe_options_sameorigin

from campaigns.models import Campaign, CampaignState, CampaignTransition, NoticeVersion
from campaigns.rendering import compile_message, version_texts
from campaigns.selectors import AudiencePreview, audience_preview, campaign_split
from campaigns.services.lifecycle import approval_refusal
from campaigns.services.variants import campaign_text_hashes
from console.access import console_view, staff_user
from console.views.audience import preview_context
from console.views.campaign_actions import campaign_actions_allowed

APPROVE = "campaigns.approve_campaign"
INBOX_ACTIONS = ("approve", "send_back")
# Links in a preview go nowhere: a member's real links are made per delivery.
PREVIEW_LINK = "#preview-link"


def _submissions():
    return CampaignTransition.objects.filter(
        campaign=OuterRef("pk"), to_state=CampaignState.AWAITING_APPROVAL
    ).order_by("-at", "-pk")


@console_view(APPROVE)
def approval_inbox(request: HttpRequest) -> HttpResponse:
    awaiting = (
        Campaign.objects.filter(state=CampaignState.AWAITING_APPROVAL)
        .select_related("notice_version__notice", "last_edited_by")
        .annotate(
            submitted_at=Subquery(_submissions().values("at")[:1]),
            submitted_by=Subquery(_submissions().values("by__username")[:1]),
        )
        .order_by(F("submitted_at").asc(nulls_first=True), "pk")
    )
    context = {"title": "Approvals", "campaigns": awaiting}
    return TemplateResponse(request, "console/approvals.html", context)


@csp_update({"frame-src": ["'self'"]})
@console_view(APPROVE)
def approval_detail(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = get_object_or_404(
        Campaign.objects.select_related("notice_version__notice", "last_edited_by"), pk=pk
    )
    variants = _variants(campaign)
    version = _chosen(request, campaign, variants)
    locales = [text.locale for text in version_texts(version)]
    locale = request.GET.get("locale") or (
        version.default_locale if version.default_locale in locales else next(iter(locales), "")
    )
    if locales and locale not in locales:
        raise Http404(f"{version} has no text in “{locale}”")
    user = staff_user(request)
    context = {
        "title": f"Approve “{campaign}”?",
        "campaign": campaign,
        "awaiting": campaign.state == CampaignState.AWAITING_APPROVAL,
        "locales": locales,
        "locale": locale,
        # Why this approver may not approve (they created, submitted or edited it last).
        "refusal": approval_refusal(campaign=campaign, user=user),
        "actions": [
            (name, action)
            for name, action in campaign_actions_allowed(campaign=campaign, user=user)
            if name in INBOX_ACTIONS
        ],
        "next": reverse("console:approvals"),
        "history": campaign.transitions.select_related("by").order_by("at", "pk"),
        "texts_changed": _texts_changed_since_approval(campaign),
        "version": version,
        "variants": [{"version": v, "share": share, **_email(v, locale)} for v, share in variants],
        **_audience(campaign),
    }
    if locales:
        context.update(_email(version, locale))
    return TemplateResponse(request, "console/approval.html", context)


def _variants(campaign: Campaign) -> list[tuple[NoticeVersion, int]]:
    """The campaign's wording test, (version, share) in order; empty without one."""
    split = campaign_split(campaign_id=campaign.pk)
    if split is None:
        return []
    versions = NoticeVersion.objects.in_bulk(split.version_ids)
    return [
        (versions[pk], share) for pk, share in zip(split.version_ids, split.shares, strict=True)
    ]


def _chosen(
    request: HttpRequest, campaign: Campaign, variants: list[tuple[NoticeVersion, int]]
) -> NoticeVersion:
    """The version to preview: ``?version=`` (one of the campaign's), else its own."""
    wanted = request.GET.get("version")
    if not wanted:
        return campaign.notice_version
    for version in [campaign.notice_version, *(v for v, _share in variants)]:
        if str(version.pk) == wanted:
            return version
    raise Http404("not a version this campaign sends")


def _email(version: NoticeVersion, locale: str) -> dict[str, str]:
    """The subject and plain text of ``version`` as sent in ``locale`` (or its fallback)."""
    compiled = compile_message(version, locale, reminder=False)
    text, _html = compiled.personalise(notice_url=PREVIEW_LINK, unsubscribe_url=PREVIEW_LINK)
    return {"subject": compiled.subject, "text": text}


def _audience(campaign: Campaign) -> dict[str, Any]:
    """Who the campaign reaches: as counted at its fan-out if it had one, else now."""
    snapshot = campaign.audience_snapshot
    if snapshot:
        preview = AudiencePreview(
            targeted=snapshot.get("targeted", 0), unreachable=snapshot.get("unreachable", {})
        )
        return {"counts": preview_context(preview, breakdown=False), "from_snapshot": True}
    return {"counts": preview_context(audience_preview(campaign=campaign)), "from_snapshot": False}


def _texts_changed_since_approval(campaign: Campaign) -> list[str]:
    """Locales (for a wording test "v<number>/<locale>", and "split") whose text differs
    from what an earlier approval recorded (none if the campaign was never approved)."""
    approved = campaign.approved_text_hashes
    if not approved:
        return []
    current = campaign_text_hashes(campaign=campaign)
    return sorted(
        loc for loc in approved.keys() | current.keys() if approved.get(loc) != current.get(loc)
    )


@xframe_options_sameorigin
@csp_replace({"style-src": ["'unsafe-inline'"], "frame-ancestors": ["'self'"]})
@console_view(APPROVE)
def approval_preview(request: HttpRequest, pk: int, locale: str) -> HttpResponse:
    """The email's HTML part in ``locale`` (of the wording test's ``?version=``, if
    given), framed by ``approval_detail`` (sandboxed)."""
    campaign = get_object_or_404(Campaign.objects.select_related("notice_version"), pk=pk)
    version = _chosen(request, campaign, _variants(campaign))
    if locale not in {text.locale for text in version_texts(version)}:
        raise Http404(f"{version} has no text in “{locale}”")
    compiled = compile_message(version, locale, reminder=False)
    _text, html = compiled.personalise(notice_url=PREVIEW_LINK, unsubscribe_url=PREVIEW_LINK)
    return HttpResponse(html, content_type="text/html; charset=utf-8")
