"""Small formatting helpers for console templates."""

from django import template

from campaigns.models import CampaignState

register = template.Library()

S = CampaignState
# A badge's style by campaign state (the badge always says the state in words too).
STATE_BADGES: dict[str, str] = {
    S.DRAFT: "",
    S.AWAITING_APPROVAL: "warn",
    S.APPROVED: "info",
    S.SCHEDULED: "info",
    S.SENDING: "info",
    S.PAUSED: "warn",
    S.COMPLETED: "good",
    S.CANCELLED: "bad",
}


@register.filter
def state_badge(state: str) -> str:
    return STATE_BADGES.get(state, "")


@register.filter
def percent(rate: float | None) -> str:
    """0.1234 -> "12.3%"; no base -> "-"."""
    return "-" if rate is None else f"{rate:.1%}"


@register.filter
def lookup(mapping: dict, key: str):
    return mapping.get(key, 0)


@register.filter
def thousands(value: int) -> str:
    return f"{value:,}"
