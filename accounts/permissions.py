"""Staff permissions: every staff action names one, and its service checks it.

Django's add/change/delete/view say who may edit which rows; the workflow needs more
(approve, operate, resend, clear an address, send a test, read the outbox, send a
receipt again): custom permissions on the models (``Meta.permissions``), listed in
docs/staff-permissions.md.

A service that acts for staff takes the acting user as ``by`` and calls
``permission_require`` before it reads or writes anything, so the admin, a command or
a future console are held to the same rule. ``by=None`` is the system itself (beat,
workers, management commands, data migrations) and is always allowed: callers pass
``None`` explicitly, and no request ever does (a request always has a user).
"""

from django.contrib.auth.models import AnonymousUser, User

from config.refusals import PermissionRefused as PermissionRefused


def permission_require(*, by: User | AnonymousUser | None, perm: str) -> None:
    """Refuse unless ``by`` holds ``perm`` ("app_label.codename"); ``by=None`` (the
    system) is allowed. Inactive users hold no permissions (Django's backends)."""
    if by is not None and not by.has_perm(perm):
        raise PermissionRefused(perm)
