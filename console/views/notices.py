"""Notices and their versions, and any two versions of one notice side by side, one
locale at a time: subject, Markdown body (``console.diff``), effective date and
objection deadline. A locale only one of the two versions has shows as added or removed."""

from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode

from campaigns.models import Notice, NoticeText, NoticeVersion
from console.access import console_view
from console.diff import Row, lines_diff, value_diff, words_diff

VIEW = "campaigns.view_noticeversion"


def _with_locales():
    return Prefetch("texts", queryset=NoticeText.objects.only("pk", "version_id", "locale"))


@console_view(VIEW)
def notice_list(request: HttpRequest) -> HttpResponse:
    versions = NoticeVersion.objects.order_by("-number").prefetch_related(_with_locales())
    notices = Notice.objects.order_by("title", "pk").prefetch_related(
        Prefetch("versions", queryset=versions)
    )
    return TemplateResponse(
        request, "console/notices.html", {"title": "Notices", "notices": notices}
    )


def problem(request: HttpRequest, status: int, message: str, notice: Notice | None = None):
    """A page that says what is wrong with the request, and where to go instead."""
    context = {"title": "Cannot compare", "message": message, "notice": notice}
    return TemplateResponse(request, "console/problem.html", context, status=status)


@console_view(VIEW)
def notice_diff(request: HttpRequest, notice: int) -> HttpResponse:
    """``?a=<version id>&b=<version id>&locale=<locale>``: ``a`` on the left."""
    shown = get_object_or_404(Notice, pk=notice)
    raw = [request.GET.get("a", ""), request.GET.get("b", "")]
    if not all(value.isdigit() for value in raw):
        return problem(request, 400, "Pick two versions to compare (a and b).", shown)
    ids = [int(value) for value in raw]
    found = {v.pk: v for v in NoticeVersion.objects.filter(pk__in=ids).prefetch_related("texts")}
    missing = [pk for pk in ids if pk not in found]
    if missing:
        return problem(request, 404, f"There is no notice version #{missing[0]}.", shown)
    old, new = found[ids[0]], found[ids[1]]
    foreign = [v for v in (old, new) if v.notice_id != shown.pk]
    if foreign:
        return problem(
            request, 400, f"Version #{foreign[0].pk} is not a version of “{shown}”.", shown
        )
    texts = ({t.locale: t for t in old.texts.all()}, {t.locale: t for t in new.texts.all()})
    locales = sorted(texts[0].keys() | texts[1].keys())
    locale = request.GET.get("locale") or _default_locale(new, locales)
    if locales and locale not in locales:
        return problem(request, 400, f"Neither version has a text in “{locale}”.", shown)
    context = {
        "title": f"{shown}: v{old.number} and v{new.number}",
        "notice": shown,
        "old": old,
        "new": new,
        "locale": locale,
        "tabs": _tabs(shown, old, new, locales, texts),
        "fields": _fields(old, new),
        **_text_rows(texts[0].get(locale), texts[1].get(locale)),
    }
    return TemplateResponse(request, "console/notice_diff.html", context)


def _default_locale(version: NoticeVersion, locales: list[str]) -> str:
    if version.default_locale in locales or not locales:
        return version.default_locale
    return locales[0]


def _tabs(notice, old, new, locales, texts) -> list[dict]:
    base = reverse("console:notice_diff", args=[notice.pk])
    tabs = []
    for locale in locales:
        in_old, in_new = locale in texts[0], locale in texts[1]
        status = "" if in_old and in_new else ("added" if in_new else "removed")
        query = urlencode({"a": old.pk, "b": new.pk, "locale": locale})
        tabs.append({"locale": locale, "url": f"{base}?{query}", "status": status})
    return tabs


def _fields(old: NoticeVersion, new: NoticeVersion) -> list[tuple[str, Row]]:
    return [
        (
            "Effective date",
            value_diff(old.effective_date.isoformat(), new.effective_date.isoformat()),
        ),
        (
            "Objection deadline",
            value_diff(old.objection_deadline.isoformat(), new.objection_deadline.isoformat()),
        ),
        ("Default locale", value_diff(old.default_locale, new.default_locale)),
    ]


def _text_rows(old: NoticeText | None, new: NoticeText | None) -> dict:
    """The locale's subject and body rows; a side without a text counts as empty."""
    status = "" if old and new else ("added" if new else "removed")
    subject = words_diff(old.subject if old else "", new.subject if new else "")
    body = lines_diff(old.body_markdown if old else "", new.body_markdown if new else "")
    return {"locale_status": status, "subject": subject, "body": body}
