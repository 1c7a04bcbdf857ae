"""A campaign's wording test in the console: the report's section on the campaign page
(``wording_context``) and its CSV (an entry of the staff audit trail, like every
download)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone

from audit.models import Action
from audit.services import staff_action_record
from campaigns.models import Campaign
from campaigns.wording_report import CSV_COLUMNS, OUTCOMES, report_csv_rows, wording_test_report
from config.spreadsheet import csv_lines_for_people
from console import selectors
from console.access import console_view, staff_user

# Each outcome's heading on the page.
OUTCOME_LABELS = {
    "acknowledged": "Acknowledged",
    "objected": "Objected",
    "complained": "Complained (marked as spam)",
}


def wording_context(*, campaign: Campaign) -> dict:
    """The page's "Wording test" section; nothing for a campaign without one."""
    if not campaign.variants.exists():
        return {}
    rows, counted_at = selectors.wording_report_cached(campaign=campaign)
    return {
        "wording": {
            "rows": rows,
            "at": counted_at,
            "outcomes": [(name, OUTCOME_LABELS[name]) for name in OUTCOMES],
        }
    }


@console_view("campaigns.view_campaign")
def wording_download(request: HttpRequest, pk: int) -> HttpResponse:
    """The wording test's figures as CSV, counted now (not the page's kept copy)."""
    campaign = get_object_or_404(Campaign, pk=pk)
    filename = f"wording-test-{campaign.pk}-{timezone.now():%Y%m%d-%H%M%S}.csv"
    staff_action_record(
        by=staff_user(request),
        action=Action.DOWNLOAD,
        target=campaign,
        detail={"file": filename, "what": "wording test report"},
    )
    rows = wording_test_report(campaign=campaign)
    response = HttpResponse(
        "".join(csv_lines_for_people(CSV_COLUMNS, report_csv_rows(rows))),
        content_type="text/csv",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
