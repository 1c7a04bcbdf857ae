"""Staff must pass the sign-in's second step before the admin or the console open.

With ``RENOTIFY_STAFF_2FA=required`` a signed-in staff member whose session is not
OTP-verified (``django_otp.middleware.OTPMiddleware``, installed before this) is sent
from any page under /admin/ or /console/ to the code step, or to set up an
authenticator app if they have none yet; nothing the request asked for happens (a POST
included). The sign-in pages themselves stay open: login, its code step, the setup page
and logout.
"""

from collections.abc import Callable

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from console.twofactor import (
    TwoFactorMode,
    session_verified,
    two_factor_enabled,
    two_factor_mode,
)

GUARDED_PREFIXES = ("/admin/", "/console/")
OPEN_URL_NAMES = ("console:login", "console:login_verify", "console:two_factor", "console:logout")


class StaffTwoFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self._needs_second_step(request):
            return self._second_step(request)
        return self.get_response(request)

    @staticmethod
    def _needs_second_step(request: HttpRequest) -> bool:
        # The path first: members' pages and the API never load a session for this.
        if not request.path.startswith(GUARDED_PREFIXES):
            return False
        if two_factor_mode() is not TwoFactorMode.REQUIRED:
            return False
        if request.path in {reverse(name) for name in OPEN_URL_NAMES}:
            return False
        user = request.user
        return user.is_authenticated and user.is_staff and not session_verified(user=user)

    @staticmethod
    def _second_step(request: HttpRequest) -> HttpResponse:
        step = (
            "console:login_verify"
            if two_factor_enabled(user=request.user)
            else "console:two_factor"
        )
        return redirect_to_login(request.get_full_path(), login_url=reverse(step))
