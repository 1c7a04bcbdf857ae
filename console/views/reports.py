"""The effectiveness report in the console: a page, a printable page (print CSS, for a
PDF from the browser) and a CSV. All three read ``evidence.reports.effectiveness_report``
for the same form; the printable page and the CSV leave the console, so each is
recorded in the staff audit trail before it is sent.

Permission: ``campaigns.view_campaign`` and ``accounts.view_consentevent``, both in the
Viewer role: the report holds counts and durations only, never a member."""

from datetime import date
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from accounts.jurisdictions import Jurisdiction
from accounts.models import Purpose
from audit.models import Action
from audit.services import staff_action_record
from campaigns.models import Campaign
from config.spreadsheet import csv_lines_for_people
from console.access import console_view, staff_user
from console.forms import DateRangeForm
from evidence.reports import EffectivenessReport, effectiveness_report

PERMS = ("campaigns.view_campaign", "accounts.view_consentevent")
CSV_COLUMNS = ["section", "campaign", "item", "value"]


class ReportForm(DateRangeForm):
    purpose = forms.ModelChoiceField(
        queryset=Purpose.objects.order_by("name"), to_field_name="slug", empty_label=None
    )
    jurisdiction = forms.ChoiceField(choices=Jurisdiction.choices)
    campaigns = forms.ModelMultipleChoiceField(
        queryset=Campaign.objects.filter(fanned_out_at__isnull=False).order_by("-fanned_out_at"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every campaign that could reach the jurisdiction.",
    )
    since = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def report(self) -> EffectivenessReport:
        data = self.cleaned_data
        chosen = data["campaigns"]
        return effectiveness_report(
            purpose=data["purpose"],
            jurisdiction=data["jurisdiction"],
            campaigns=[c.pk for c in chosen] if chosen else None,
            since=data["since"],
            until=data["until"],
        )


@console_view(*PERMS)
def effectiveness(request: HttpRequest) -> HttpResponse:
    form = ReportForm(request.GET or None)
    context: dict[str, Any] = {"title": "Effectiveness report", "form": form, "report": None}
    if not form.is_bound:
        return TemplateResponse(request, "console/effectiveness.html", context)
    if not form.is_valid():
        return TemplateResponse(request, "console/effectiveness.html", context, status=400)
    query = request.GET.urlencode()
    context.update(
        report=form.report(),
        csv_url=f"{reverse('console:effectiveness_csv')}?{query}",
        print_url=f"{reverse('console:effectiveness_print')}?{query}",
    )
    return TemplateResponse(request, "console/effectiveness.html", context)


@console_view(*PERMS)
def effectiveness_print(request: HttpRequest) -> HttpResponse:
    """The report alone, laid out for paper (the browser prints it, or saves a PDF)."""
    form = ReportForm(request.GET)
    if not form.is_valid():
        return _bad_form(form)
    report = form.report()
    _record(request, report, "printable page")
    context = {"title": "Effectiveness report", "report": report, "printed_at": timezone.now()}
    return TemplateResponse(request, "console/effectiveness_print.html", context)


@console_view(*PERMS)
def effectiveness_csv(request: HttpRequest) -> HttpResponse:
    """The report's figures, one per row (section, campaign, item, value), for people:
    cells a spreadsheet would run are neutralised."""
    form = ReportForm(request.GET)
    if not form.is_valid():
        return _bad_form(form)
    report = form.report()
    filename = _record(request, report, "CSV")
    response = HttpResponse(
        "".join(csv_lines_for_people(CSV_COLUMNS, report_rows(report))), content_type="text/csv"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _record(request: HttpRequest, report: EffectivenessReport, what: str) -> str:
    filename = (
        f"effectiveness-{report.purpose.slug}-{report.jurisdiction}-"
        f"{timezone.now():%Y%m%d-%H%M%S}.csv"
    )
    staff_action_record(
        by=staff_user(request),
        action=Action.DOWNLOAD,
        detail={
            "what": f"effectiveness report ({what})",
            "file": filename if what == "CSV" else "",
            "filters": {k: request.GET.getlist(k) for k in request.GET},
        },
    )
    return filename


def _bad_form(form: ReportForm) -> HttpResponse:
    problems = [f"{field}: {' '.join(map(str, errors))}" for field, errors in form.errors.items()]
    return HttpResponse(
        "No report, the choices are wrong: " + "; ".join(problems),
        status=400,
        content_type="text/plain",
    )


def report_rows(report: EffectivenessReport) -> list[list[Any]]:
    """The CSV's rows: every figure the page shows, in its order."""
    rows: list[list[Any]] = [
        ["scope", "", "purpose", report.purpose.slug],
        ["scope", "", "jurisdiction", report.jurisdiction],
        ["scope", "", "from", _iso(report.since)],
        ["scope", "", "to", _iso(report.until)],
        *[["scope", "", "processing date", day.isoformat()] for day in report.processing_dates],
    ]
    for row in [*report.campaigns, report.total] if report.campaigns else []:
        name = row.campaign.name if row.campaign else "all campaigns"
        for item in ("targeted", "email_sent", "email_delivered", "in_app_served", "reached",
                     "complained", "reminders_sent"):  # fmt: skip
            rows.append(["reach", name, item, getattr(row, item)])
        rows += [["not reached", name, why, n] for why, n in row.not_reached.items()]
    days = report.notice_days
    rows += [["days from first notice to processing", "", item, _value(getattr(days, item))]
             for item in ("members", "minimum", "median", "p90")]  # fmt: skip
    rows += [["responses", "", name, n] for name, n in report.responses.items()]
    rows += [["rates", "", f"{name} of reached", _value(r)] for name, r in report.rates.items()]
    for day in report.trend:
        rows += [["per day", day.day.isoformat(), name, n] for name, n in day.counts.items()]
    rows += [["objection routes", "", r.label, r.objections] for r in report.routes]
    rows += [["unsubscribes", "", u.label, u.members] for u in report.unsubscribes]
    feed = report.feed
    for item in ("objections", "in_feed", "policy_out", "not_in_feed", "median_seconds"):
        rows.append(["suppression feed", "", item, _value(getattr(feed, item))])
    for consumer in feed.consumers:
        for item in ("acknowledged", "pending", "median_seconds"):
            rows.append(["consumer", consumer.client, item, _value(getattr(consumer, item))])
    return rows


def _iso(moment: date | None) -> str:
    return moment.isoformat() if moment else ""


def _value(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    return "" if value is None else value
