"""Template context for every console page: the menu entries the viewer may open."""

from django.http import HttpRequest
from django.urls import reverse

from console.nav import NAV


def console_nav(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not request.path.startswith("/console/") or not user.is_staff:
        return {}
    urls = [(label, reverse(name)) for label, name, perm in NAV if user.has_perm(perm)]
    entries = [{"label": label, "url": url, "current": request.path == url} for label, url in urls]
    return {"console_nav": entries}
