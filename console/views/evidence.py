"""A campaign's evidence packs: ask for one, watch it being built, download it, retry a
failed one. The list refreshes itself while a pack is being built (the progress script,
or a meta refresh without JavaScript)."""

from typing import cast

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from campaigns.models import Campaign
from console.access import console_view, csp_widened, staff_user
from console.views.dashboard import POLLING_CSP
from evidence.models import UNFINISHED, EvidencePack
from evidence.selectors import campaign_packs, pack_bytes
from evidence.services.packs import (
    DOWNLOAD,
    REQUEST,
    PackRefused,
    evidence_pack_download_record,
    evidence_pack_request,
    evidence_pack_retry,
    pack_is_stalled,
)

VIEW = "evidence.view_evidencepack"
# How often a page without JavaScript reloads itself while a pack is being built.
REFRESH_SECONDS = 10


def _packs_context(request: HttpRequest, campaign: Campaign) -> dict:
    user = staff_user(request)
    packs = list(campaign_packs(campaign=campaign)[:20])
    return {
        "campaign": campaign,
        "packs": [{"pack": p, "stalled": pack_is_stalled(p)} for p in packs],
        "live": any(p.state in UNFINISHED for p in packs),
        "may_request": user.has_perm(REQUEST),
        "may_download": user.has_perm(DOWNLOAD),
        "poll_url": reverse("console:evidence_progress", args=[campaign.pk]),
    }


@console_view("campaigns.view_campaign", VIEW)
@csp_widened(POLLING_CSP)
def evidence_packs(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=pk)
    context = {
        "title": f"Evidence packs of {campaign.name}",
        "refresh_seconds": REFRESH_SECONDS,
        **_packs_context(request, campaign),
    }
    return TemplateResponse(request, "console/evidence.html", context)


@console_view("campaigns.view_campaign", VIEW)
def evidence_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The pack list alone, for the polling script."""
    campaign = get_object_or_404(Campaign, pk=pk)
    return TemplateResponse(
        request, "console/_evidence_packs.html", _packs_context(request, campaign)
    )


@require_POST
@console_view("campaigns.view_campaign", VIEW)
def evidence_request(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=pk)
    try:
        pack = evidence_pack_request(campaign=campaign, by=staff_user(request))
    except (PackRefused, PermissionDenied) as refusal:
        messages.error(request, f"Not done: {refusal}")
    else:
        messages.success(request, f"Pack {pack.pk} requested: a worker builds it now.")
    return HttpResponseRedirect(reverse("console:evidence", args=[campaign.pk]))


@require_POST
@console_view("campaigns.view_campaign", VIEW)
def evidence_retry(request: HttpRequest, pack_id: int) -> HttpResponse:
    pack = get_object_or_404(EvidencePack.objects.select_related("campaign"), pk=pack_id)
    try:
        evidence_pack_retry(pack=pack, by=staff_user(request))
    except (PackRefused, PermissionDenied) as refusal:
        messages.error(request, f"Not done: {refusal}")
    else:
        messages.success(request, f"Pack {pack.pk} will be built again.")
    return HttpResponseRedirect(reverse("console:evidence", args=[pack.campaign_id]))


@console_view("campaigns.view_campaign", VIEW, DOWNLOAD)
def evidence_download(request: HttpRequest, pack_id: int) -> HttpResponse:
    """The ZIP, streamed part by part; recorded in the staff audit trail first."""
    pack = get_object_or_404(EvidencePack.objects.select_related("campaign"), pk=pack_id)
    try:
        evidence_pack_download_record(pack=pack, by=staff_user(request))
    except PackRefused as refusal:
        return HttpResponse(f"Not downloaded: {refusal}", status=409, content_type="text/plain")
    response = StreamingHttpResponse(pack_bytes(pack=pack), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{pack.file_name}"'
    response["Content-Length"] = str(pack.size_bytes)
    response["X-Content-SHA256"] = pack.zip_sha256
    return cast(HttpResponse, response)
