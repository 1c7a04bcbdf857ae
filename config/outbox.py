"""Staff-only view of the local outbox (the embedded default email backend).

Lets someone trying `make demo` open a notice email as a member would: the
headers, the plain text and the HTML, with working links. Those are every member's
address and links that act for them: reading it needs ``campaigns.view_outbox``.
"""

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from audit.models import Action
from audit.services import staff_action_record
from config.admin_base import acting_user
from config.mail import outbox_dir

VIEW_OUTBOX = "campaigns.view_outbox"
SHOWN_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)


def _parse(path: Path) -> EmailMessage:
    with path.open("rb") as handle:
        return BytesParser(policy=policy.default).parse(handle)


def _files() -> list[Path]:
    return sorted(outbox_dir().glob("*.eml"), reverse=True)


@staff_member_required
@permission_required(VIEW_OUTBOX, raise_exception=True)
def outbox_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(_files(), 50).get_page(request.GET.get("page"))
    # The list shows members' addresses: who read which page of it is recorded.
    staff_action_record(
        by=acting_user(request),
        action=Action.OUTBOX_READ,
        detail={"page": page.number, "messages": len(page.object_list)},
    )
    rows = []
    for path in page.object_list:
        message = _parse(path)
        rows.append(
            {
                "name": path.name,
                "to": message["To"],
                "subject": message["Subject"],
                "date": message["Date"],
            }
        )
    context = {
        "title": "Outbox",
        "page": page,
        "rows": rows,
        "backend": settings.EMAIL_BACKEND,
        "is_outbox": settings.EMAIL_BACKEND == "config.mail.OutboxBackend",
    }
    return TemplateResponse(request, "admin/outbox/list.html", context)


@staff_member_required
@permission_required(VIEW_OUTBOX, raise_exception=True)
def outbox_message(request: HttpRequest, name: str) -> HttpResponse:
    path = outbox_dir() / name
    if "/" in name or not name.endswith(".eml") or not path.is_file():
        raise Http404("no such message")
    message = _parse(path)
    staff_action_record(by=acting_user(request), action=Action.OUTBOX_READ, detail={"file": name})
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    context = {
        "title": message["Subject"],
        "headers": [(h, message[h]) for h in SHOWN_HEADERS if message[h]],
        "text": text.get_content() if text else "",
        "html": html.get_content() if html else "",
    }
    return TemplateResponse(request, "admin/outbox/message.html", context)
