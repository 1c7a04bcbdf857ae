"""Turn a notice version into email content, compiled once per version x locale.

The expensive part (Markdown, sanitising, the Django templates, translations)
runs once per (text, wave kind) and yields a ``CompiledMessage`` whose strings
hold placeholders for the per-member links. Each message then costs two
string replacements, so a worker's time goes to the transport, not to rendering.
"""

from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import urlsplit

import markdown
import nh3
from django.db.models import prefetch_related_objects
from django.template.loader import render_to_string
from django.utils import formats, translation
from django.utils.safestring import mark_safe

from accounts.locales import locale_language
from campaigns.models import NoticeText, NoticeVersion
from config.cache import ProcessCache

NOTICE_URL = "@@renotify:notice_url@@"
UNSUBSCRIBE_URL = "@@renotify:unsubscribe_url@@"

ALLOWED_TAGS = {
    "p", "br", "strong", "em", "b", "i", "a", "ul", "ol", "li",
    "h2", "h3", "h4", "blockquote", "code", "pre", "hr",
}  # fmt: skip


@lru_cache(maxsize=64)
def markdown_to_html(source: str) -> str:
    """Markdown to HTML that is safe to embed: raw HTML, scripts and odd URLs removed.

    Cached by the source itself: notice pages render the same few bodies for every
    member, and conversion plus sanitising is the slow part of rendering them."""
    html = markdown.markdown(source, output_format="html")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"https", "http", "mailto"},
        link_rel="noopener noreferrer",
    )


def markdown_to_text(source: str) -> str:
    """The plain-text part: the same sanitised HTML as the HTML part, written out as text.

    Read from ``markdown_to_html``, not from the source, so the text part never carries
    what the sanitiser removed (raw HTML, scripts, javascript: links) nor Markdown's
    own markup (``**bold**``, ``[text](url)``, ``# heading``)."""
    writer = _PlainText()
    writer.feed(markdown_to_html(source))
    writer.close()
    return writer.text()


class _PlainText(HTMLParser):
    """Sanitised notice HTML (``ALLOWED_TAGS`` only) as plain text: paragraphs and
    headings are lines with a blank line between them, list items "- item" or "1. item"
    (indented when nested), links "text (URL)" for web and mail addresses only, code
    blocks and quotes indented, entities decoded."""

    BLOCKS = {"p", "h2", "h3", "h4", "blockquote", "pre", "hr", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.inline: list[str] = []
        self.lists: list[list] = []  # per open list: [ordered, next number]
        self.links: list[tuple[str | None, int]] = []  # per open link: href, text start
        self.marker = ""  # the current list item's "- " or "1. ", until its first line
        self.quotes = 0
        self.pre = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCKS or tag in ("li", "br"):
            self._line_end()
        if tag in self.BLOCKS and not self.lists:
            self._gap()
        if tag in ("ul", "ol"):
            self.lists.append([tag == "ol", 1])
        elif tag == "li" and self.lists:
            ordered, number = self.lists[-1]
            self.marker = f"{number}. " if ordered else "- "
            self.lists[-1][1] += 1
        elif tag == "a":
            self.links.append((dict(attrs).get("href"), len(self.inline)))
        elif tag == "blockquote":
            self.quotes += 1
        elif tag == "pre":
            self.pre = True
        elif tag == "hr":
            self._emit("-" * 10)
            self._gap()

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.links:
            href, start = self.links.pop()
            words = " ".join("".join(self.inline[start:]).split())
            url = _shown_url(href)
            if url and url != words:
                self.inline.append(f" ({url})")
            return
        if tag in self.BLOCKS or tag == "li":
            self._line_end()
        if tag == "li":
            self.marker = ""
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        elif tag == "blockquote":
            self.quotes = max(self.quotes - 1, 0)
        elif tag == "pre":
            self.pre = False
        if tag in self.BLOCKS and not self.lists:
            self._gap()

    def handle_data(self, data: str) -> None:
        self.inline.append(data)

    def close(self) -> None:
        super().close()
        self._line_end()

    def text(self) -> str:
        return "\n".join(self.lines).strip("\n")

    def _line_end(self) -> None:
        raw = "".join(self.inline)
        self.inline.clear()
        if self.pre:  # a code block, as written
            for line in raw.strip("\n").split("\n"):
                self._emit("    " + line if line.strip() else "")
        elif text := " ".join(raw.split()):
            self._emit(text)

    def _emit(self, text: str) -> None:
        depth = max(len(self.lists) - 1, 0)
        indent = "  " * self.quotes + "  " * depth
        self.lines.append((indent + self.marker + text).rstrip() if text else "")
        self.marker = " " * len(self.marker)  # the item's next lines line up with its text

    def _gap(self) -> None:
        if self.lines and self.lines[-1]:
            self.lines.append("")


def _shown_url(href: str | None) -> str | None:
    """A link's target as the text part shows it: web and mail addresses only (the
    sanitiser already dropped other schemes; relative links mean nothing in an email)."""
    if not href:
        return None
    scheme = urlsplit(href).scheme.lower()
    if scheme == "mailto":
        return href.split(":", 1)[1]
    return href if scheme in ("http", "https") else None


def version_texts(version: NoticeVersion) -> list[NoticeText]:
    """A version's texts; those of a frozen version (immutable) from a per-process copy."""
    if not version.is_frozen:
        prefetch_related_objects([version], "texts")  # once per request, not per call
        return list(version.texts.all())
    key = (version.pk, version.frozen_at)
    return _frozen_texts.get_or_set(key, lambda: list(version.texts.all()))


_frozen_texts: ProcessCache[list[NoticeText]] = ProcessCache("frozen notice texts", max_size=64)


def text_for_locale(version: NoticeVersion, locale: str) -> NoticeText:
    """The member's locale, else its language, else the version's default, else any."""
    texts = {text.locale: text for text in version_texts(version)}
    if not texts:
        raise ValueError(f"{version} has no text in any locale")
    language = locale_language(locale)
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
