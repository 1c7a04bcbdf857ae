"""Addresses of console pages other modules send people to."""


def campaign_url(pk: int) -> str:
    """The campaign's own page."""
    return f"/console/campaigns/{pk}/"
