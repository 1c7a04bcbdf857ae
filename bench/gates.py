"""Benchmark: evaluating a processing gate (``gates.selectors.gate_evaluate``: every
condition with its figure) on N members (default 1,000,000), against a floor.

N reachable members are written in SQL (``campaign_setup.members_seed``, plus one in 20
bounced, complained or unsubscribed), in a database of this script's own; one campaign
for everyone is fanned out to them (set-based), its notices marked delivered 40 days
ago (all but one in ten) and the campaign completed; the ledger is verified; a gate
for AI training in the UK names the campaign. Each round times, in this process with
Django set up, the floor, ``campaign_reach`` for the whole campaign (the reach report
staff already open), then ``gate_evaluate`` for the UK gate, whose reach is the same
aggregate restricted to the UK plus the window's, the consumers' and the ledger's
reads. Medians of the rounds and the ratio per round (paired) are printed; the target
is that the gate's page and ``gate_status`` answer under 2 s.

Usage: .venv/bin/python bench/gates.py [--rows N] [--repeat R] [--skip-seed]
"""

import argparse
import time
from datetime import timedelta

import campaign_setup
import harness
from harness import median, table, verdict

DATABASE = "renotify_bench_gates"
UNREACHABLE_EVERY = 20
UNDELIVERED_EVERY = 10
TARGET_SECONDS = 2.0


def _seed(url: str, rows: int) -> None:
    harness.progress(f"preparing {DATABASE} with {rows:,} reachable members")
    campaign_setup.database_prepare(url)
    with harness.connect(url) as conn:
        campaign_setup.members_seed(conn, reachable=rows, unreachable_every=UNREACHABLE_EVERY)


def _told_campaign():
    """The campaign for everyone, fanned out, mostly delivered 40 days ago, completed."""
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Campaign
    from campaigns.services.fanout import campaign_fan_out

    existing = Campaign.objects.filter(name="bench campaign", state="completed").first()
    if existing is not None:
        return existing
    told = campaign_setup.campaign_create(state="sending", throttle_per_minute=6000)
    harness.progress("fanning out")
    campaign_fan_out(campaign=told)
    then = timezone.now() - timedelta(days=40)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_delivery SET status = 'delivered', sent_at = %s,"
            " delivered_at = CASE WHEN id %% %s = 0 THEN NULL ELSE %s END"
            " WHERE campaign_id = %s",
            [then, UNDELIVERED_EVERY, then, told.pk],
        )
        cursor.execute("ANALYZE campaigns_delivery")
    Campaign.objects.filter(pk=told.pk).update(state="completed")
    told.refresh_from_db()
    return told


def _gate(told):
    from django.utils import timezone

    from accounts.models import Purpose
    from accounts.services.ledger_checks import ledger_check_run
    from gates.models import Gate

    ledger_check_run()
    gate, _ = Gate.objects.get_or_create(
        purpose=Purpose.objects.get(slug="ai-training"),
        jurisdiction="UK",
        defaults={
            "opens_to": "opt_out",
            "planned_opening": timezone.localdate() + timedelta(weeks=8),
        },
    )
    gate.campaigns.set([told])
    return gate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-seed", action="store_true", help="reuse the database")
    args = parser.parse_args()
    url = campaign_setup.database_url(DATABASE)
    if not args.skip_seed:
        _seed(url, args.rows)
    campaign_setup.django_start(url)
    from campaigns.selectors import campaign_reach
    from gates.selectors import gate_evaluate

    told = _told_campaign()
    gate = _gate(told)
    floor, gated, ratios = [], [], []
    status = None
    for _ in range(args.repeat):
        started = time.perf_counter()
        campaign_reach(campaign=told)
        floor.append(time.perf_counter() - started)
        started = time.perf_counter()
        status = gate_evaluate(gate=gate)
        gated.append(time.perf_counter() - started)
        ratios.append(gated[-1] / floor[-1])
    assert status is not None
    for condition in status.conditions:
        print(f"  [{'met' if condition.met else 'UNMET'}] {condition.label}: {condition.figure}")
    rows = [
        ("floor: campaign_reach, whole campaign", f"{median(floor) * 1000:.0f} ms", "", ""),
        (
            "gate_evaluate, UK",
            f"{median(gated) * 1000:.0f} ms",
            f"{median(ratios):.2f}x",
            verdict(median(gated) < TARGET_SECONDS),
        ),
    ]
    print(table(("what", "p50", "of floor", f"< {TARGET_SECONDS:.0f} s"), rows))
    harness.save_results(
        "gates",
        {
            "rows": args.rows,
            "floor_p50_s": median(floor),
            "gate_evaluate_p50_s": median(gated),
            "ratio_p50": median(ratios),
            "target_s": TARGET_SECONDS,
            "targets": {
                "gate_evaluate p50 s": harness.target(
                    median(gated), f"< {TARGET_SECONDS:.0f}", median(gated) < TARGET_SECONDS
                )
            },
        },
    )


if __name__ == "__main__":
    main()
