"""The campaign list and the campaign page (funnel, reach per jurisdiction and locale,
progress, timeline, the viewer's workflow buttons), and the progress fragment both the
dashboard and the campaign page poll."""

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CampaignState
from campaigns.selectors import RATE_OF
from console import selectors
from console.access import console_view, csp_widened, staff_user
from console.charts import funnel
from console.progress import progress_context
from console.views.campaign_actions import campaign_actions_allowed
from console.views.dashboard import POLLING_CSP
from console.views.wording import wording_context

PAGE_SIZE = 50
# The funnel's steps: (label, figure of ``campaigns.selectors.Reach``).
FUNNEL = [
    ("Targeted", "targeted"),
    ("Sent", "sent"),
    ("Delivered", "delivered"),
    ("Opened by people", "opened"),
    ("Acknowledged", "acknowledged"),
    ("Objected", "objected"),
]
# Per jurisdiction and locale: deliveries and sent, then rates (of RATE_OF's base), few enough
# columns for a laptop; the rest behind a <details>.
BREAKDOWN_RATES = ["delivered", "opened", "acknowledged", "objected"]
BREAKDOWN_DETAILS = ["bounced_hard", "complained", "failed", "unknown", "not_sent", "in_progress"]


@console_view("campaigns.view_campaign")
def campaign_list(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "")
    if state not in CampaignState.values:
        state = ""
    page = Paginator(selectors.campaigns_list(state=state), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {"title": "Campaigns", "page": page, "state": state, "states": CampaignState.choices}
    return TemplateResponse(request, "console/campaign_list.html", context)


@console_view("campaigns.view_campaign")
@csp_widened(POLLING_CSP)
def campaign_page(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = get_object_or_404(
        Campaign.objects.select_related("notice_version__notice", "approved_by", "purpose"), pk=pk
    )
    user = staff_user(request)
    reach, reach_at = selectors.campaign_reach_cached(campaign=campaign)
    steps = [(label, _figure(reach, name)) for label, name in FUNNEL]
    progress = selectors.campaigns_progress(campaigns=[campaign])[campaign.pk]
    context = {
        "title": campaign.name,
        "campaign": campaign,
        "actions": campaign_actions_allowed(campaign=campaign, user=user),
        "default_start": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
        "reach": reach,
        "reach_at": reach_at,
        "funnel": steps,
        "funnel_chart": funnel(id="funnel", title=f"Funnel of {campaign.name}", steps=steps),
        "breakdowns": [
            ("jurisdiction", "Jurisdiction", _breakdown(reach.by_jurisdiction)),
            ("locale", "Locale", _breakdown(reach.by_locale)),
        ],
        "rate_columns": BREAKDOWN_RATES,
        "rate_bases": {name: RATE_OF[name] for name in BREAKDOWN_RATES},
        "detail_columns": BREAKDOWN_DETAILS,
        "timeline": campaign.transitions.select_related("by").order_by("at", "pk"),
        "admin_links": _admin_links(campaign, user),
        "preview_url": _preview_url(campaign, user),
        **progress_context(progress),
        **wording_context(campaign=campaign),
    }
    return TemplateResponse(request, "console/campaign.html", context)


@console_view("campaigns.view_campaign")
def campaign_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress component alone (HTML), for the polling script; a person without
    JavaScript reloads the page it sits on."""
    campaign = get_object_or_404(Campaign, pk=pk)
    progress = selectors.campaigns_progress(campaigns=[campaign])[campaign.pk]
    return TemplateResponse(request, "console/_progress.html", progress_context(progress))


def _figure(reach, name: str) -> int:
    return reach.targeted if name == "targeted" else reach.totals[name]


def _breakdown(groups: dict[str, dict[str, int]]) -> list[dict]:
    rows = []
    for key, row in sorted(groups.items()):
        rates = {}
        for name in BREAKDOWN_RATES:
            base = row.get(RATE_OF[name], 0)
            rates[name] = row[name] / base if base else None
        rows.append({"key": key, "counts": row, "rates": rates})
    return rows


def _preview_url(campaign: Campaign, user) -> str:
    """The admin's preview of the notice version, for those who may open it."""
    if not user.has_perm("campaigns.view_noticeversion"):
        return ""
    version = campaign.notice_version
    return reverse(
        "admin:campaigns_noticeversion_preview", args=[version.pk, version.default_locale]
    )


def _admin_links(campaign: Campaign, user) -> list[tuple[str, str]]:
    """The admin's reports on the campaign the viewer may open (the page is already
    behind view_campaign, which the reach report needs; the CSV lists members)."""
    links = [("Reach report", reverse("admin:campaigns_campaign_reach", args=[campaign.pk]))]
    if user.has_perm("accounts.view_member"):
        links.append(
            (
                "Members not reached (CSV)",
                reverse("admin:campaigns_campaign_not_reached", args=[campaign.pk]),
            )
        )
    return links
