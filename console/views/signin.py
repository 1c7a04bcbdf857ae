"""Staff sign-in: a password (throttled by django-axes), then a code from an
authenticator app or a recovery code (throttled by each device, and by this session:
``RENOTIFY_2FA_FAILURE_LIMIT`` wrong codes and the sign-in starts again).

The code step comes only after a right password, so it tells nobody who lacks the
password anything about it. The session counts as verified only once a code was
accepted (``django_otp.login``); ``console.middleware`` holds unverified staff there."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login

from console.access import public_view, staff_user
from console.twofactor import (
    TwoFactorMode,
    session_verified,
    throttled_until,
    two_factor_check,
    two_factor_enabled,
    two_factor_mode,
)

HOME = "/console/"
FAILURES = "console_2fa_failures"


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=40,
        help_text="The 6-digit code your authenticator app shows, or one of your recovery codes.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autofocus": True, "spellcheck": "false"}
        ),
    )


@public_view
@sensitive_post_parameters("password")
@never_cache
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    """Step one: username and password (a staff account's). ``authenticate`` runs with
    the request, so django-axes counts failures and its middleware answers a locked-out
    pair with the lockout page (HTTP 429)."""
    form = AdminAuthenticationForm(request, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.get_user()
        auth_login(request, user)
        request.session[FAILURES] = 0
        return _after_password(request)
    context = {"title": "Sign in", "form": form, "next": next_url(request)}
    return TemplateResponse(request, "console/login.html", context)


def _after_password(request: HttpRequest) -> HttpResponse:
    mode = two_factor_mode()
    if mode is not TwoFactorMode.SSO and two_factor_enabled(user=request.user):
        return _to("console:login_verify", request)
    if mode is TwoFactorMode.REQUIRED:
        return _to("console:two_factor", request)
    return HttpResponseRedirect(next_url(request))


@public_view
@sensitive_post_parameters("code")
@never_cache
@require_http_methods(["GET", "POST"])
def login_verify(request: HttpRequest) -> HttpResponse:
    """Step two: a code. Only for a session that passed step one."""
    user = request.user
    if not (user.is_authenticated and user.is_staff):
        return _to("console:login", request)
    if session_verified(user=user):
        return HttpResponseRedirect(next_url(request))
    if not two_factor_enabled(user=user):
        return _to("console:two_factor", request)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        return _check_code(request, form)
    return _verify_page(request, form)


def _check_code(request: HttpRequest, form: CodeForm) -> HttpResponse:
    user = staff_user(request)
    waiting = throttled_until(user=user)
    device = None if waiting else two_factor_check(user=user, token=form.cleaned_data["code"])
    if device is not None:
        otp_login(request, device)
        request.session[FAILURES] = 0
        return HttpResponseRedirect(next_url(request))
    failures = request.session.get(FAILURES, 0) + 1
    request.session[FAILURES] = failures
    if failures >= settings.RENOTIFY_2FA_FAILURE_LIMIT:
        auth_logout(request)
        messages.error(request, "Too many wrong codes: sign in again with your password.")
        return _to("console:login", request)
    if waiting:
        form.add_error(None, f"Too many wrong codes: try again after {_clock(waiting)}.")
        return _verify_page(request, form, status=429)
    form.add_error("code", "That code is not right (or was used already). Try again.")
    return _verify_page(request, form)


def _verify_page(request: HttpRequest, form: CodeForm, status: int = 200) -> TemplateResponse:
    context = {"title": "Enter your code", "form": form, "next": next_url(request)}
    return TemplateResponse(request, "console/login_verify.html", context, status=status)


@public_view
@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    auth_logout(request)
    messages.success(request, "Signed out.")
    return redirect("console:login")


def next_url(request: HttpRequest) -> str:
    """Where to go after signing in: a page of this site, else the console's home."""
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    safe = url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return wanted if wanted and safe else HOME


def _to(url_name: str, request: HttpRequest) -> HttpResponseRedirect:
    """Another step of the sign-in, keeping where it leads."""
    return redirect_to_login(next_url(request), login_url=reverse(url_name))


def _clock(moment) -> str:
    return timezone.localtime(moment).strftime("%H:%M:%S %Z")
