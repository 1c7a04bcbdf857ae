"""Addresses of console pages other modules send people to."""

from django.urls import reverse


def campaign_url(pk: int) -> str:
    """The campaign's own page."""
    return reverse("console:campaign", args=[pk])
