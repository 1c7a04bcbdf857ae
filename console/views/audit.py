"""The staff audit trail in the console: every entry, filtered, newest first, a keyset
page at a time, and the filtered entries as a CSV (itself an entry of the trail)."""

import json
from collections.abc import Iterator
from typing import Any, cast

from django import forms
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from audit.models import Action, StaffAction
from audit.selectors import TrailFilter, staff_actions_filtered, staff_actions_page
from audit.services import staff_action_record
from config.spreadsheet import csv_lines_for_people
from console.access import console_view, staff_user
from console.forms import DateRangeForm
from console.links import campaign_url

VIEW = "audit.view_staffaction"
CSV_COLUMNS = [
    "id", "at", "username", "action", "target_type", "target_id", "target_label",
    "changes", "detail", "ip_hash", "path",
]  # fmt: skip
CSV_CHUNK = 2000
# Enough of the hash to tell addresses apart on a page; the CSV has all of it.
HASH_SHOWN = 12


class TrailFilterForm(DateRangeForm):
    by = forms.ModelChoiceField(
        queryset=User.objects.filter(is_staff=True).order_by("username"),
        required=False,
        label="Who",
        empty_label="Anyone",
        to_field_name="username",
    )
    action = forms.ChoiceField(choices=[("", "Any action"), *Action.choices], required=False)
    target_type = forms.CharField(
        required=False, max_length=100, help_text="e.g. campaigns.campaign"
    )
    target_id = forms.CharField(required=False, max_length=64, label="Target id")
    since = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    q = forms.CharField(
        required=False,
        max_length=100,
        label="Search",
        help_text="Part of a username or of the target's name",
    )
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def trail_filter(self) -> TrailFilter:
        data = self.cleaned_data
        return TrailFilter(
            by=data["by"],
            action=data["action"],
            target_type=data["target_type"].strip(),
            target_id=data["target_id"].strip(),
            since=data["since"],
            until=data["until"],
            text=data["q"].strip(),
        )


@console_view(VIEW)
def audit_trail(request: HttpRequest) -> HttpResponse:
    form = TrailFilterForm(request.GET or None)
    context: dict[str, Any] = {"title": "Audit trail", "form": form, "rows": [], "page": None}
    if form.is_bound and not form.is_valid():
        return TemplateResponse(request, "console/audit.html", context, status=400)
    where = form.trail_filter() if form.is_bound else TrailFilter()
    cleaned = form.cleaned_data if form.is_bound else {}
    page = staff_actions_page(
        entries=staff_actions_filtered(where=where),
        before=cleaned.get("before"),
        after=cleaned.get("after"),
        searching=bool(where.text),
    )
    query = _filter_query(request)
    context.update(
        page=page,
        rows=[_row(entry) for entry in page.entries],
        older_url=f"?{_with(query, before=page.older)}" if page.older else "",
        newer_url=f"?{_with(query, after=page.newer)}" if page.newer else "",
        newest_url=f"?{query.urlencode()}",
        download_url=f"{reverse('console:audit_download')}?{query.urlencode()}",
    )
    return TemplateResponse(request, "console/audit.html", context)


@console_view(VIEW)
def audit_download(request: HttpRequest) -> HttpResponse:
    """Every entry the filters match, as CSV for people (cells that a spreadsheet would
    run are neutralised). Recorded before the first byte goes out."""
    form = TrailFilterForm(request.GET)
    if not form.is_valid():
        problems = [
            f"{field}: {' '.join(map(str, errors))}" for field, errors in form.errors.items()
        ]
        return HttpResponse(
            "Not downloaded, the filters are wrong: " + "; ".join(problems),
            status=400,
            content_type="text/plain",
        )
    filename = f"staff-audit-{timezone.now():%Y%m%d-%H%M%S}.csv"
    filters = {k: v for k, v in request.GET.items() if v and k not in ("before", "after")}
    staff_action_record(
        by=staff_user(request),
        action=Action.DOWNLOAD,
        detail={"file": filename, "what": "staff audit trail", "filters": filters},
    )
    entries = staff_actions_filtered(where=form.trail_filter())
    response = StreamingHttpResponse(
        csv_lines_for_people(CSV_COLUMNS, _csv_rows(entries)), content_type="text/csv"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    # console_view's views answer HttpResponse; a streamed one is the same to Django.
    return cast(HttpResponse, response)


def _csv_rows(entries) -> Iterator[list[Any]]:
    for entry in entries.values(*CSV_COLUMNS).iterator(chunk_size=CSV_CHUNK):
        entry["at"] = entry["at"].isoformat()
        for name in ("changes", "detail"):
            entry[name] = json.dumps(entry[name], ensure_ascii=False) if entry[name] else ""
        yield [entry[name] for name in CSV_COLUMNS]


def _row(entry: StaffAction) -> dict[str, Any]:
    """What a person reads of an entry: the diff as field, old, new."""
    return {
        "entry": entry,
        "target_url": campaign_url(int(entry.target_id))
        if entry.target_type == "campaigns.campaign" and entry.target_id.isdigit()
        else "",
        "changes": [(field, *_pair(pair)) for field, pair in entry.changes.items()],
        "detail": sorted(entry.detail.items()),
        "ip_short": entry.ip_hash[:HASH_SHOWN],
    }


def _pair(pair: Any) -> tuple[Any, Any]:
    if isinstance(pair, list | tuple) and len(pair) == 2:
        return pair[0], pair[1]
    return "", pair


def _filter_query(request: HttpRequest):
    query = request.GET.copy()
    for cursor in ("before", "after"):
        query.pop(cursor, None)
    return query


def _with(query, **cursor: int | None) -> str:
    query = query.copy()
    for name, value in cursor.items():
        query[name] = str(value)
    return query.urlencode()
