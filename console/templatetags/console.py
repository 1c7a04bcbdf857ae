"""Small formatting helpers for console templates."""

from django import template

from campaigns import variants
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


@register.filter
def interval(bounds: tuple[float, float] | None) -> str:
    """A 95% interval of a rate: (0.1, 0.25) -> "10.0% to 25.0%"; none -> "-"."""
    return "-" if bounds is None else f"{bounds[0]:.1%} to {bounds[1]:.1%}"


@register.filter
def points(difference: float | None) -> str:
    """A difference of rates in percentage points: 0.052 -> "+5.2 pts"; none -> "-"."""
    return "-" if difference is None else f"{difference * 100:+.1f} pts"


@register.filter
def points_interval(bounds: tuple[float, float] | None) -> str:
    """A difference's 95% interval in points: (-0.02, 0.1) -> "-2.0 to +10.0 pts"."""
    if bounds is None:
        return "-"
    return f"{bounds[0] * 100:+.1f} to {bounds[1] * 100:+.1f} pts"


@register.filter
def share_percent(basis_points: int) -> str:
    """A wording test's share: 3334 -> "33.34%", 5000 -> "50%"."""
    return variants.percent(basis_points)


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds as a person reads a delay: "45 s", "12 min", "3 h 5 min", "2 d 4 h"."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{secs} s"


@register.filter
def days(value: float | None) -> str:
    """Days as a figure: "59", "59.6"; none -> "-"."""
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)
