"""A staff member's own second factor: set up an authenticator app (scan the QR code or
type the secret, then confirm with one code), and make recovery codes (shown once).

Changing anything needs a verified session once a second factor exists, so a password
alone can neither replace the app nor read new recovery codes."""

from base64 import b32encode
from typing import Any

import qrcode
import qrcode.image.svg
from django import forms
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods
from django_otp import login as otp_login

from console.access import console_view, staff_user
from console.twofactor import (
    TwoFactorMode,
    recovery_codes_left,
    recovery_codes_renew,
    session_verified,
    totp_device_confirm,
    totp_device_pending,
    two_factor_enabled,
    two_factor_mode,
)
from console.views.signin import CodeForm, next_url

ACTIONS = ("confirm", "replace", "recovery_codes")


@console_view()
@sensitive_post_parameters("code")
@never_cache
@require_http_methods(["GET", "POST"])
def two_factor(request: HttpRequest) -> HttpResponse:
    user = staff_user(request)
    if two_factor_mode() is TwoFactorMode.SSO:
        return _page(request)  # the identity provider asks for the second factor
    enabled = two_factor_enabled(user=user)
    if enabled and not session_verified(user=user):
        return redirect_to_login(request.get_full_path(), reverse("console:login_verify"))
    action = request.POST.get("action", "")
    if request.method == "POST" and action not in ACTIONS:
        return HttpResponse("Unknown action", status=400, content_type="text/plain")
    if action == "confirm":
        return _confirm(request)
    if action == "recovery_codes" and enabled:
        return _page(request, codes=recovery_codes_renew(user=user))
    return _page(request, setting_up=action == "replace" or not enabled)


def _confirm(request: HttpRequest) -> HttpResponse:
    user = staff_user(request)
    form = CodeForm(request.POST)
    if not form.is_valid():
        return _page(request, setting_up=True, form=form)
    device = totp_device_confirm(user=user, token=form.cleaned_data["code"])
    if device is None:
        form.add_error("code", "That code is not right: enter the newest code the app shows.")
        return _page(request, setting_up=True, form=form)
    otp_login(request, device)
    return _page(request, codes=recovery_codes_renew(user=user), confirmed=True)


def _page(
    request: HttpRequest,
    *,
    setting_up: bool = False,
    codes: list[str] | None = None,
    confirmed: bool = False,
    form: forms.Form | None = None,
) -> TemplateResponse:
    user = staff_user(request)
    context: dict[str, Any] = {
        "title": "Two-factor sign-in",
        "mode": two_factor_mode(),
        "enabled": two_factor_enabled(user=user),
        "codes": codes,
        "confirmed": confirmed,
        "codes_left": recovery_codes_left(user=user),
        "next": next_url(request),
    }
    if setting_up:
        device = totp_device_pending(user=user)
        context |= {
            "setting_up": True,
            "qr_svg": _qr_svg(device.config_url),
            "secret": _grouped(b32encode(device.bin_key).decode()),
            "form": form or CodeForm(),
        }
    return TemplateResponse(request, "console/two_factor.html", context)


def _qr_svg(data: str) -> SafeString:
    """The QR code as inline SVG (the console's CSP allows no image from elsewhere, nor
    a data: URL). The markup is qrcode's own, built from our device's URL."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    svg = image.to_string(encoding="unicode")
    labelled = svg.replace(
        "<svg ", '<svg role="img" aria-label="QR code for your authenticator app" class="qr" ', 1
    )
    return mark_safe(labelled)


def _grouped(secret: str) -> str:
    """ABCD EFGH ...: easier to type into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
