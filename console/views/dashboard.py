"""The staff landing page: campaigns and their progress, what needs attention, the
ledger's responses per day, suppressions per purpose and jurisdiction."""

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from accounts.models import Action
from console import selectors
from console.access import console_view, csp_widened
from console.attention import attention_items
from console.charts import Series, day_bars
from console.progress import progress_context

# The polling script (static/renotify/console-progress.js) and the fragments it reads.
POLLING_CSP = {"script-src": ["'self'"], "connect-src": ["'self'"]}

RESPONSE_SERIES = [
    Series(Action.OBJECT, "Objections", "solid"),
    Series(Action.ACKNOWLEDGE, "Acknowledgements", "hatch"),
    Series(Action.UNSUBSCRIBE, "Unsubscribes", "dots"),
]


@console_view("campaigns.view_campaign")
@csp_widened(POLLING_CSP)
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    campaigns = selectors.dashboard_campaigns(now=now)
    progress = selectors.campaigns_progress(campaigns=campaigns)
    daily = selectors.responses_per_day_cached(now=now)
    context = {
        "title": "Dashboard",
        "campaigns": [(c, progress_context(progress[c.pk])) for c in campaigns],
        "polling": any(p.live for p in progress.values()),
        "attention": attention_items(now=now),
        "daily": daily,
        "daily_series": RESPONSE_SERIES,
        "daily_chart": day_bars(
            id="responses-per-day",
            title="Objections, acknowledgements and unsubscribes per day, last 30 days",
            days=daily.days,
            series=RESPONSE_SERIES,
            values=daily.counts,
        ),
        "suppression": selectors.suppression_counts(now=now),
    }
    return TemplateResponse(request, "console/dashboard.html", context)
