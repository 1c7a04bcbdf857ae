"""Who may open a console page: a signed-in, active staff member holding the page's
permission. Services check the permission again for every action (``accounts.permissions``);
this keeps a page that only reads from showing what its reader may not see.

Every console view is wrapped by ``console_view``: ``tests/test_console_access.py`` walks
the URL patterns and fails for a view without it."""

from collections.abc import Callable
from functools import wraps
from typing import cast

from csp.decorators import csp_update
from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

View = Callable[..., HttpResponse]


def console_view(*perms: str) -> Callable[[View], View]:
    """Let in active staff holding every one of ``perms`` ("app_label.codename"); send
    everyone else to the login page, or show them a 403 page naming what is missing."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            user = request.user
            if not (user.is_authenticated and user.is_active):
                return redirect_to_login(request.get_full_path())
            missing = [p for p in perms if not user.has_perm(p)]
            if not user.is_staff or missing:
                return refused(request, missing)
            return view(request, *args, **kwargs)

        guarded.console_perms = perms  # type: ignore[attr-defined]
        return guarded

    return decorate


def refused(request: HttpRequest, missing: list[str]) -> HttpResponse:
    """The 403 page: what the staff member lacks, so they know whom to ask."""
    return TemplateResponse(
        request, "console/403.html", {"title": "Not allowed", "missing": missing}, status=403
    )


def csp_widened(directives: dict[str, list[str]]) -> Callable[[View], View]:
    """django-csp's ``csp_update`` for one view: what this page adds to the site's policy
    (e.g. its own script), typed as a view decorator."""
    return cast(Callable[[View], View], csp_update(directives))


def staff_user(request: HttpRequest) -> User:
    """The staff member behind a console request (``console_view`` let them in)."""
    return cast(User, request.user)


def public_view(view: View) -> View:
    """Mark a console page anyone may open (sign-in and its second step): the only
    exception ``tests/test_console_access.py`` accepts."""
    view.console_public = True  # type: ignore[attr-defined]
    return view
