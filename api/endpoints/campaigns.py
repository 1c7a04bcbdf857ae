"""``/campaigns``: what a campaign reached (``campaigns:read``)."""

from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema

from api.auth import scope_require
from api.models import Scope
from campaigns.models import Campaign
from campaigns.selectors import campaign_reach

router = Router(tags=["campaigns"])


class ReachOut(Schema):
    campaign: int
    state: str
    targeted: int
    unreachable: dict[str, int]
    totals: dict[str, int]
    rates: dict[str, float | None]
    by_jurisdiction: dict[str, dict[str, int]]
    by_locale: dict[str, dict[str, int]]
    reminders_sent: int
    in_app: dict[str, int]
    reached: int


@router.get("/{campaign_id}/reach", response=ReachOut)
def campaign_reach_read(request: HttpRequest, campaign_id: int) -> dict[str, Any]:
    """Who the campaign targeted, reached and lost, in total and per jurisdiction and
    locale (``campaigns:read``)."""
    scope_require(request, Scope.CAMPAIGNS_READ)
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    reach = campaign_reach(campaign=campaign)
    return {
        "campaign": campaign.pk,
        "state": campaign.state,
        "targeted": reach.targeted,
        "unreachable": reach.unreachable,
        "totals": reach.totals,
        "rates": reach.rates,
        "by_jurisdiction": reach.by_jurisdiction,
        "by_locale": reach.by_locale,
        "reminders_sent": reach.reminders_sent,
        "in_app": reach.in_app,
        "reached": reach.reached,
    }
