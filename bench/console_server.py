"""The WSGI application ``bench/console.py`` serves with gunicorn: the app, the load
driver's no-op view, and the floor page. A module of its own: gunicorn would take
"console" for the app's console package."""

import load_driver

FLOOR_PATH = "/bench/floor/"


def _floor_route():
    """The floor: the console's base page around one indexed lookup, same guard."""
    from django.shortcuts import get_object_or_404
    from django.template.response import TemplateResponse
    from django.urls import path

    from campaigns.models import Campaign
    from console.access import console_view

    @console_view("campaigns.view_campaign")
    def floor(request, pk: int):
        campaign = get_object_or_404(Campaign, pk=pk)
        return TemplateResponse(request, "console/base.html", {"title": campaign.name})

    return path(f"{FLOOR_PATH.lstrip('/')}<int:pk>/", floor)


def wsgi_app():
    return load_driver.wsgi_app(lambda: [_floor_route()])
