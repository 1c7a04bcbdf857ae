"""The refusal of a staff action for want of a permission, defined below every app so
that the admin's shared base (``config.admin_base``), which every layer's admin uses,
the staff audit trail's included, can catch it without importing ``accounts``.
``accounts.permissions`` raises it."""

from django.core.exceptions import PermissionDenied


class PermissionRefused(PermissionDenied):
    """The acting user lacks the permission a staff action needs.

    A ``PermissionDenied``, so a view that does not catch it answers 403, never 500;
    the admin shows it as an error message."""

    def __init__(self, perm: str) -> None:
        self.perm = perm
        super().__init__(f"you do not have the permission “{perm}”")
