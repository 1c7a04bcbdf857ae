"""Turn a notice version into email content, compiled once per version x locale.

The expensive part (Markdown, sanitising, the Django templates, translations)
runs once per (text, wave kind) and yields a ``CompiledMessage`` whose strings
hold placeholders for the per-member links. Each message then costs two
string replacements: that is what lets one worker send thousands per second.
"""

import re
from dataclasses import dataclass
from functools import lru_cache

import markdown
import nh3
from django.db.models import prefetch_related_objects
from django.template.loader import render_to_string
from django.utils import formats, translation
from django.utils.safestring import mark_safe

from campaigns.models import NoticeText, NoticeVersion

NOTICE_URL = "@@renotify:notice_url@@"
UNSUBSCRIBE_URL = "@@renotify:unsubscribe_url@@"

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "b", "i", "a", "ul", "ol", "li",
    "h2", "h3", "h4", "blockquote", "code", "pre", "hr",
}  # fmt: skip
MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\((\S+?)\)")


@lru_cache(maxsize=64)
def markdown_to_html(source: str) -> str:
    """Markdown to HTML that is safe to embed: raw HTML, scripts and odd URLs removed.

    Cached by the source itself: notice pages render the same few bodies for every
    member, and conversion plus sanitising costs milliseconds."""
    html = markdown.markdown(source, output_format="html")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"https", "http", "mailto"},
        link_rel="noopener noreferrer",
    )


def markdown_to_text(source: str) -> str:
    """Markdown is written to be read as text; only links need spelling out."""
    return MARKDOWN_LINK.sub(r"\1 (\2)", source).strip()


def version_texts(version: NoticeVersion) -> list[NoticeText]:
    """A version's texts; those of a frozen version (immutable) from a per-process copy."""
    if not version.is_frozen:
        prefetch_related_objects([version], "texts")  # once per request, not per call
        return list(version.texts.all())
    key = (version.pk, version.frozen_at)
    if key not in _frozen_texts:
        if len(_frozen_texts) >= 64:
            _frozen_texts.pop(next(iter(_frozen_texts)))
        _frozen_texts[key] = list(version.texts.all())
    return _frozen_texts[key]


_frozen_texts: dict[tuple, list[NoticeText]] = {}


def text_for_locale(version: NoticeVersion, locale: str) -> NoticeText:
    """The member's locale, else its language, else the version's default, else any."""
    texts = {text.locale: text for text in version_texts(version)}
    if not texts:
        raise ValueError(f"{version} has no text in any locale")
    language = locale.split("-")[0]
    for candidate in (locale, language, version.default_locale):
        if candidate in texts:
            return texts[candidate]
    return next(iter(texts.values()))


@dataclass(frozen=True)
class CompiledMessage:
    locale: str
    subject: str
    text: str
    html: str
    text_sha256: str

    def personalise(self, *, notice_url: str, unsubscribe_url: str) -> tuple[str, str]:
        """(plain text, HTML) with this member's links in place."""
        return (
            self.text.replace(NOTICE_URL, notice_url).replace(UNSUBSCRIBE_URL, unsubscribe_url),
            self.html.replace(NOTICE_URL, notice_url).replace(UNSUBSCRIBE_URL, unsubscribe_url),
        )


def compile_message(version: NoticeVersion, locale: str, *, reminder: bool) -> CompiledMessage:
    text = text_for_locale(version, locale)
    return _compile(
        text.pk,
        text.sha256,
        reminder,
        version.effective_date,
        version.objection_deadline,
    )


@lru_cache(maxsize=256)
def _compile(text_pk, sha256, reminder, effective_date, objection_deadline) -> CompiledMessage:
    # The cache key holds the content hash, so an edited (unfrozen) text recompiles.
    text = NoticeText.objects.get(pk=text_pk)
    with translation.override(text.locale):
        context = {
            "locale": text.locale,
            "subject": text.subject,
            "reminder": reminder,
            "body_html": mark_safe(markdown_to_html(text.body_markdown)),  # sanitised by nh3
            "body_text": markdown_to_text(text.body_markdown),
            "effective_date": formats.date_format(effective_date, "DATE_FORMAT"),
            "objection_deadline": formats.date_format(objection_deadline, "DATE_FORMAT"),
            "notice_url": NOTICE_URL,
            "unsubscribe_url": UNSUBSCRIBE_URL,
        }
        subject = render_to_string("emails/notice-subject.txt", context).strip()
        return CompiledMessage(
            locale=text.locale,
            subject=" ".join(subject.split()),
            text=render_to_string("emails/notice-body.txt", context).strip() + "\n",
            html=render_to_string("emails/notice-body.html", context),
            text_sha256=text.sha256,
        )
