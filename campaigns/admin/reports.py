"""Staff reports on a campaign: its progress (refreshing itself while it sends), its
reach, and the members it did not reach as a CSV for people.

Plain staff views, not admin methods: CampaignAdmin.get_urls mounts them under
/admin/campaigns/campaign/<pk>/ (wrapped by the admin site, like its own pages), so
their addresses and URL names are those staff have always used."""

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse

from audit.models import Action
from audit.services import staff_action_record
from campaigns.models import UNFINISHED_STATUSES, Campaign, CampaignState, DeliveryStatus
from campaigns.selectors import (
    NOT_REACHED_COLUMNS,
    campaign_reach,
    delivery_status_counts,
    members_not_reached,
)
from config.admin_base import acting_user
from config.spreadsheet import csv_lines_for_people

REACH_COLUMNS = [
    "deliveries", "sent", "delivered", "deferred", "bounced_hard", "bounced_soft",
    "complained", "opened", "clicked", "acknowledged", "objected", "failed", "unknown",
    "not_sent", "in_progress",
]  # fmt: skip
RATE_LABELS = {
    "delivered": "delivered / sent",
    "bounced_hard": "hard bounces / sent",
    "complained": "complaints / delivered",
    "opened": "opened (people) / delivered",
    "clicked": "clicked (people) / delivered",
    "acknowledged": "acknowledged / delivered",
    "objected": "objected / delivered",
}


def may_view_campaigns(request: HttpRequest) -> bool:
    """What the campaign admin's own pages ask (ModelAdmin.has_view_permission):
    leave to view campaigns, which leave to change them implies."""
    user = request.user
    return user.has_perm("campaigns.view_campaign") or user.has_perm("campaigns.change_campaign")


def _campaign_for(request: HttpRequest, pk: int) -> Campaign:
    campaign = get_object_or_404(Campaign, pk=pk)
    if not may_view_campaigns(request):
        raise PermissionDenied
    return campaign


def progress_url(campaign: Campaign) -> str:
    return reverse("admin:campaigns_campaign_progress", args=[campaign.pk])


def progress_context(campaign: Campaign) -> dict:
    """Deliveries per status and how many are finished, for the progress templates."""
    counts = delivery_status_counts(campaign=campaign)
    total = sum(counts.values())
    done = total - sum(counts.get(s, 0) for s in UNFINISHED_STATUSES)
    return {
        "campaign": campaign,
        "rows": [(DeliveryStatus(s).label, n) for s, n in sorted(counts.items())],
        "total": total,
        "done": done,
        "percent": round(100 * done / total) if total else 0,
    }


@staff_member_required
def progress_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress alone, refreshing itself while the campaign sends (no JavaScript)."""
    campaign = _campaign_for(request, pk)
    context = {
        **admin.site.each_context(request),
        **progress_context(campaign),
        "title": f"Progress of {campaign}",
        "refresh": campaign.state == CampaignState.SENDING,
        "opts": Campaign._meta,
    }
    return TemplateResponse(request, "admin/campaigns/campaign/progress.html", context)


@staff_member_required
def reach_view(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign_for(request, pk)
    reach = campaign_reach(campaign=campaign)
    columns = [*REACH_COLUMNS]
    context = {
        **admin.site.each_context(request),
        "title": f"Reach of {campaign}",
        "campaign": campaign,
        "reach": reach,
        "columns": columns,
        "totals": [reach.totals[c] for c in columns],
        "rates": [(label, reach.rate(name)) for name, label in RATE_LABELS.items()],
        "by_jurisdiction": [
            (key, [row[c] for c in columns]) for key, row in sorted(reach.by_jurisdiction.items())
        ],
        "by_locale": [
            (key, [row[c] for c in columns]) for key, row in sorted(reach.by_locale.items())
        ],
        "opts": Campaign._meta,
    }
    return TemplateResponse(request, "admin/campaigns/campaign/reach.html", context)


@staff_member_required
def not_reached_view(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    campaign = _campaign_for(request, pk)
    # A list of members (external ids): needs leave to view members too.
    if not request.user.has_perm("accounts.view_member"):
        raise PermissionDenied
    filename = f"campaign-{pk}-not-reached.csv"
    staff_action_record(
        by=acting_user(request),
        action=Action.DOWNLOAD,
        target=campaign,
        detail={"file": filename, "what": "members not reached"},
    )
    # For people, in a spreadsheet: formula-leading cells are neutralised.
    response = StreamingHttpResponse(
        csv_lines_for_people(NOT_REACHED_COLUMNS, members_not_reached(campaign=campaign)),
        content_type="text/csv",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
