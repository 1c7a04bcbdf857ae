"""The hosted notice and preference pages: no login, no JavaScript, POST for every change.

Views parse input, call one service and render. A bad, tampered or unknown token
gets the same friendly 400 page. Link scanners only GET (or HEAD): those never
change anything but the "viewed" mark on a real GET.
"""

from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.html import escape
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from accounts.locales import locale_language
from accounts.models import ConsentEvent, Member, Preference, Purpose, Source
from accounts.selectors import (
    member_effective_states,
    purpose_by_slug,
    purpose_wording,
    purposes_worded,
)
from campaigns.models import Delivery
from campaigns.services.receipts import objection_confirmation
from campaigns.tokens import BadToken, notice_token
from config.cache import ProcessCache
from config.clientip import client_ip
from config.fields import clipped
from config.ratelimit import Limit, client_network, limits_hit, window_remaining
from pages import services

SUPPORTED = {code for code, _name in settings.LANGUAGES}


def _language(request: HttpRequest, *preferred: str | None) -> str:
    """The first supported of: ?lang=, the delivery's or member's locale, Accept-Language."""
    return locale_language(_locale(request, *preferred))


def _locale(request: HttpRequest, *preferred: str | None) -> str:
    """``_language``'s choice as it was given (de-AT, not de): purposes can have a text for
    the exact locale."""
    for candidate in (request.GET.get("lang"), *preferred):
        if candidate and locale_language(candidate) in SUPPORTED:
            return candidate
    return translation.get_language_from_request(request) or settings.LANGUAGE_CODE


def _client(request: HttpRequest) -> tuple[str | None, str]:
    user_agent = clipped(
        ConsentEvent, "user_agent", services.text_printable(request.META.get("HTTP_USER_AGENT", ""))
    )
    return client_ip(request), user_agent


def no_referrer(view):
    """The member's link holds a token: no request from these pages may pass it on.
    (The pages' own meta tag lets same-origin form posts carry their origin for CSRF.)"""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = "no-referrer"
        return response

    return wrapper


def _bad_link(request: HttpRequest) -> HttpResponse:
    with translation.override(_language(request)):
        return render(request, "pages/bad_link.html", status=400)


# Limits exist to stop floods of bad links and repeated taps on one link, never to turn a
# member away because of other people's traffic: one-click POSTs come from mail providers'
# shared servers, and behind a proxy many members may share an address. So a valid link
# counts only against itself (its first choices always go through), and the per-address
# limit counts and refuses only POSTs whose link is bad or forged.


def _bad_token(request: HttpRequest) -> HttpResponse:
    """A link that is not one of ours: 400, or 429 once its address sent too many."""
    if request.method == "POST":
        rate = settings.RENOTIFY_RATE_PER_IP
        if limits_hit([Limit("notice-post-ip", client_network(client_ip(request)), rate)]):
            return _too_many(request, _language(request), rate)
    return _bad_link(request)


def _limited(token: str) -> bool:
    """Repeated POSTs on one member link (a double tap is fine, a script is not)."""
    return limits_hit([Limit("notice-post-token", token, settings.RENOTIFY_RATE_PER_TOKEN)])


def _too_many(request: HttpRequest, language: str, rate: str) -> HttpResponse:
    seconds = window_remaining(rate)
    with translation.override(language):
        response = render(request, "pages/rate_limited.html", {"seconds": seconds}, status=429)
    response["Retry-After"] = str(seconds)
    return response


@no_referrer
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def notice_page(request: HttpRequest, token: str) -> HttpResponse:
    try:
        delivery = services.delivery_for_token(
            token, viewed=request.method == "GET", page=request.method != "POST"
        )
    except BadToken:
        return _bad_token(request)
    locale = _locale(request, delivery.locale, delivery.member.locale)
    language = _language(request, locale)
    if request.method == "POST":
        if _limited(token):
            return _too_many(request, language, settings.RENOTIFY_RATE_PER_TOKEN)
        return _notice_post(request, token, delivery)
    gpc = services.NO_SIGNAL
    if request.method == "GET" and services.gpc_signalled(request.META):
        gpc, delivery.preferences = _gpc_visit(
            request, delivery.member, delivery.preferences or {}, delivery
        )
    view = services.notice_view(
        delivery=delivery, locale=request.GET.get("lang"), reader_locale=locale
    )
    context = {
        "view": view,
        "done": _done(request, locale, member_id=delivery.member_id),
        "language": language,
        "action_url": _form_url(request, "notice_page", token),
        "gpc": gpc,
    }
    with translation.override(language):
        return HttpResponse(_notice_html(request, context))


# A notice page differs between members only in its link and CSRF token once the notice
# version (frozen), language, acknowledgement and each purpose's state are the same, so
# the page is rendered once per such combination with markers in their place, as the
# emails are (rendering the template is the costliest part of the view).
ACTION_URL_MARK = "renotify-action-url-8c1f"
CSRF_TOKEN_MARK = "renotifycsrftoken8c1f"
SKELETONS_KEPT = 512
_skeletons: ProcessCache[str] = ProcessCache("notice page skeletons", max_size=SKELETONS_KEPT)


def _notice_html(request: HttpRequest, context: dict) -> str:
    view = context["view"]
    if context["done"] or not view.version.is_frozen:  # after a POST, or a draft's preview
        return render_to_string("pages/notice.html", context, request)
    key = (*_skeleton_key(view, context["language"]), context["gpc"].key())
    skeleton = _skeletons.get(key)
    if skeleton is None:
        skeleton = render_to_string(
            "pages/notice.html",
            {
                **context,
                "action_url": ACTION_URL_MARK,
                "csrf_token": CSRF_TOKEN_MARK,
                "LANGUAGE_CODE": context["language"],
            },
        )
        _skeletons.set(key, skeleton)
    return skeleton.replace(CSRF_TOKEN_MARK, get_token(request)).replace(
        ACTION_URL_MARK, escape(context["action_url"])
    )


def _skeleton_key(view: services.NoticeView, language: str) -> tuple:
    """Everything the page shows that is not the member's link or CSRF token."""
    version, text = view.version, view.text
    return (
        version.pk,
        version.frozen_at,
        text.pk,
        text.sha256,
        tuple(view.locales),
        language,
        view.acknowledged,
        view.deadline_passed,
        tuple(
            (
                s.purpose.pk,
                s.purpose.slug,
                s.wording,  # in the page's locale, as staff last wrote it
                s.state,
                s.reason,
                s.explicit_choice,
                s.planned_from,  # a processing gate's planned opening, told members there
                s.planned_mode,
            )
            for s in view.states
        ),
    )


def _form_url(request: HttpRequest, name: str, token: str) -> str:
    """Where the page's forms post: the page itself, keeping a language the reader chose."""
    url = reverse(name, args=[token])
    return f"{url}?lang={request.GET['lang']}" if request.GET.get("lang") in SUPPORTED else url


def _notice_post(request: HttpRequest, token: str, delivery: Delivery) -> HttpResponse:
    ip, user_agent = _client(request)
    action = request.POST.get("action", "")
    if action == "acknowledge":
        services.notice_acknowledge(delivery=delivery, ip=ip, user_agent=user_agent)
    elif action in services.PREFERENCE_ACTIONS:
        purpose = purpose_by_slug(request.POST.get("purpose", ""))
        if purpose is None:
            return _bad_link(request)
        services.preference_choose(
            member=delivery.member,
            purpose=purpose,
            choice=action,
            delivery=delivery,
            ip=ip,
            user_agent=user_agent,
            comment=request.POST.get("comment", ""),
        )
    else:
        return _bad_link(request)
    return _after(request, reverse("notice_page", args=[token]), action)


def _after(request: HttpRequest, url: str, action: str) -> HttpResponseRedirect:
    """Post/redirect/get: a reload never repeats the choice."""
    params = {"done": action, "purpose": clipped(Purpose, "slug", request.POST.get("purpose", ""))}
    if request.GET.get("lang") in SUPPORTED:
        params["lang"] = request.GET["lang"]
    return HttpResponseRedirect(f"{url}?{urlencode(params)}#result")


def _done(request: HttpRequest, locale: str, *, member_id: int) -> dict | None:
    action = request.GET.get("done")
    if action not in {"acknowledge", *services.PREFERENCE_ACTIONS}:
        return None
    slug = request.GET.get("purpose", "")
    purpose = purpose_by_slug(slug)
    done: dict[str, object] = {
        "action": action,
        "purpose": slug,
        "purpose_name": purpose_wording(purpose=purpose, locale=locale).name if purpose else "",
    }
    if action == "object":  # its reference, and whether a receipt will be emailed
        done["objection"] = objection_confirmation(member_id=member_id, purpose_slug=slug)
    return done


@no_referrer
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def preferences_page(request: HttpRequest, token: str) -> HttpResponse:
    """The member's standing choices, without a campaign (links the platform mints)."""
    try:
        member = services.member_for_token(token)
    except BadToken:
        return _bad_token(request)
    locale = _locale(request, member.locale)
    language = _language(request, locale)
    if request.method == "POST":
        if _limited(token):
            return _too_many(request, language, settings.RENOTIFY_RATE_PER_TOKEN)
        return _preferences_post(request, token, member)
    preferences, gpc = None, services.NO_SIGNAL
    if request.method == "GET" and services.gpc_signalled(request.META):
        preferences = services.member_preferences(member_id=member.pk)
        gpc, preferences = _gpc_visit(request, member, preferences, None)
    context = {
        "member": member,
        "states": member_effective_states(member=member, preferences=preferences, locale=locale),
        "gpc": gpc,
        "token": token,
        "done": _done(request, locale, member_id=member.pk),
        "language": language,
        "action_url": _form_url(request, "preferences_page", token),
    }
    with translation.override(language):
        return render(request, "pages/preferences.html", context)


def _gpc_visit(
    request: HttpRequest,
    member: Member,
    preferences: dict[int, Preference],
    delivery: Delivery | None,
) -> tuple[services.GpcVisit, dict[int, Preference]]:
    """The browser's Global Privacy Control signal, acted on as staff chose per purpose."""
    ip, user_agent = _client(request)
    return services.gpc_visit(
        member=member, preferences=preferences, delivery=delivery, ip=ip, user_agent=user_agent
    )


def _preferences_post(request: HttpRequest, token: str, member: Member) -> HttpResponse:
    action = request.POST.get("action", "")
    purpose = purpose_by_slug(request.POST.get("purpose", ""))
    if action not in services.PREFERENCE_ACTIONS or purpose is None:
        return _bad_link(request)
    ip, user_agent = _client(request)
    services.preference_choose(
        member=member,
        purpose=purpose,
        choice=action,
        delivery=None,
        ip=ip,
        user_agent=user_agent,
        comment=request.POST.get("comment", ""),
    )
    return _after(request, reverse("preferences_page", args=[token]), action)


@csrf_exempt  # RFC 8058: mail clients POST without cookies or tokens; the link is the secret
@no_referrer
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe_page(request: HttpRequest, token: str) -> HttpResponse:
    try:
        delivery = services.delivery_for_unsubscribe_token(token)
    except BadToken:
        return _bad_token(request)
    locale = _locale(request, delivery.locale, delivery.member.locale)
    language = _language(request, locale)
    context = {
        "delivery": delivery,
        "notice_url": _notice_url(delivery),
        "language": language,
        "purposes": purposes_worded(locale=locale),
    }
    if request.method == "POST":
        if _limited(token):
            return _too_many(request, language, settings.RENOTIFY_RATE_PER_TOKEN)
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        ip, user_agent = _client(request)
        services.delivery_unsubscribe(
            delivery=delivery,
            source=Source.ONE_CLICK if one_click else Source.PREFERENCE_PAGE,
            ip=ip,
            user_agent=user_agent,
        )
        if one_click:
            return HttpResponse("Unsubscribed.\n", content_type="text/plain; charset=utf-8")
        with translation.override(language):
            return render(request, "pages/unsubscribed.html", context)
    with translation.override(language):
        return render(request, "pages/unsubscribe.html", context)


def _notice_url(delivery: Delivery) -> str:
    return reverse("notice_page", args=[notice_token(delivery.pk)])
