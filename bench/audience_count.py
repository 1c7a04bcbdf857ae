"""Benchmark: the campaign flow's live audience count (``audience_preview``, one grouped
query) on N members (default 1,000,000), against a floor.

N reachable members are written in SQL (``campaign_setup.members_seed``, plus one in 20
bounced, complained or unsubscribed), in a database of this script's own. Each round
times, in this process with Django set up, ``audience_preview`` on an unsaved campaign
for each filter set the flow offers (everyone; UK and EU; two locales and a sign-up
range; a purpose's current state; only members who have not acknowledged), and the
floor: ``SELECT count(*) FROM accounts_member`` (one scan of the same table, no
grouping). Medians and p99 of the rounds are printed; the target is that every filter
set answers under 1 s, so the count keeps up with someone typing.

Usage: .venv/bin/python bench/audience_count.py [--rows N] [--repeat R] [--skip-seed]
"""

import argparse
import time
from datetime import UTC, datetime

import campaign_setup
import harness
from harness import median, table, verdict

DATABASE = "renotify_bench_flow_audience"
UNREACHABLE_EVERY = 20
TARGET_SECONDS = 1.0


def _filter_sets(version) -> dict[str, dict]:
    from accounts.models import Purpose

    purpose = Purpose.objects.order_by("pk").first()
    return {
        "everyone": {},
        "UK and EU": {"jurisdictions": ["UK", "EU"]},
        "de, fr; signed up 2019-2020": {
            "locales": ["de", "fr"],
            "members_created_after": datetime(2019, 1, 1, tzinfo=UTC),
            "members_created_before": datetime(2021, 1, 1, tzinfo=UTC),
        },
        "purpose state out": {"purpose": purpose, "purpose_state": "out"},
        "not acknowledged": {"only_not_acknowledged": True},
    }


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-seed", action="store_true", help="reuse the members")
    args = parser.parse_args()
    url = campaign_setup.database_url(DATABASE)
    if not args.skip_seed:
        harness.progress(f"preparing {DATABASE} with {args.rows:,} reachable members")
        campaign_setup.database_prepare(url)
        with harness.connect(url) as conn:
            campaign_setup.members_seed(
                conn, reachable=args.rows, unreachable_every=UNREACHABLE_EVERY
            )
    campaign_setup.django_start(url)
    from django.db import connection

    from campaigns.models import Campaign
    from campaigns.selectors import audience_preview

    version = campaign_setup.notice_version_create()
    timings: dict[str, list[float]] = {"floor: count(*)": []}
    sets = _filter_sets(version)
    targeted: dict[str, int] = {}
    for name in sets:
        timings[name] = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM accounts_member")
        timings["floor: count(*)"].append(time.perf_counter() - started)
        for name, fields in sets.items():
            campaign = Campaign(name="bench", notice_version=version, **fields)
            started = time.perf_counter()
            preview = audience_preview(campaign=campaign)
            timings[name].append(time.perf_counter() - started)
            targeted[name] = preview.targeted
    rows = [
        (
            name,
            f"{targeted.get(name, '-'):,}" if name in targeted else "-",
            f"{median(values) * 1000:.0f} ms",
            f"{_p99(values) * 1000:.0f} ms",
            "" if name not in targeted else verdict(median(values) < TARGET_SECONDS),
        )
        for name, values in timings.items()
    ]
    print(table(("filter set", "targeted", "p50", "p99", f"< {TARGET_SECONDS:.0f} s"), rows))
    targets = {
        f"{name} p50 s": harness.target(
            median(timings[name]), f"< {TARGET_SECONDS:.0f}", median(timings[name]) < TARGET_SECONDS
        )
        for name in targeted
    }
    harness.save_results(
        "audience_count",
        {
            "rows": args.rows,
            **{name: {"p50_s": median(v), "p99_s": _p99(v)} for name, v in timings.items()},
            "targets": targets,
        },
    )


if __name__ == "__main__":
    main()
