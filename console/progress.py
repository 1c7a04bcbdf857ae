"""The progress component shared by the dashboard and the campaign page: a segmented bar
of a campaign's deliveries and its figures, refreshed by polling while it sends."""

from django.urls import reverse

from console.charts import Chart, Series, segmented
from console.selectors import Progress

SEGMENT_PATTERNS = {"sent": "solid", "not_sent": "cross", "unknown": "hatch", "to_send": "dots"}


def progress_chart(progress: Progress) -> Chart:
    pk = progress.campaign.pk
    return segmented(
        id=f"progress-{pk}",
        title=f"Progress of {progress.campaign.name}: {progress.done:,} of "
        f"{progress.total:,} deliveries done ({progress.percent}%)",
        segments=[
            (Series(key, label, SEGMENT_PATTERNS[key]), count)
            for key, label, count in progress.segments
        ],
    )


def progress_context(progress: Progress) -> dict:
    return {
        "progress": progress,
        "chart": progress_chart(progress),
        "poll_url": reverse("console:campaign_progress", args=[progress.campaign.pk]),
    }
