"""Benchmark: the effectiveness report (``evidence.reports.effectiveness_report``) for one
purpose and jurisdiction over a campaign to N members (default 100,000; the target is
under 2 s at 1,000,000), against a floor.

Set-up, in a database of this script's own: N reachable members written in SQL
(``campaign_setup.members_seed``), one campaign to everyone fanned out by the app
(``campaign_fan_out``), then in SQL: sends spread over three days (one in 50 bounced,
one in 500 complained, the rest delivered), acknowledgements by 30% of members, objections
by 5% through the five routes, unsubscribes by 1%, the feed (an entry per member, then
an "objected" entry per objection where the policy is not "excluded", minutes later),
its state table, and two consumers whose positions advanced every 5,000 entries, 10
minutes and 2 hours after the entries. Ledger rows are written directly (their hashes
are not a chain: the report never verifies it).

Each round times, in this process with Django set up, the report and the floor: one
pass over the campaign's notice deliveries to members of the jurisdiction
(``SELECT count(*) ... JOIN accounts_member``), which any reach figure has to read.
``report_measure`` is the timing alone, for ``bench/evidence.py`` to call on its own data.

Usage: .venv/bin/python bench/evidence_report.py [--members N] [--repeat R]
       [--jurisdiction J] [--skip-seed] [--database NAME]
"""

import argparse
import time
from datetime import timedelta

import campaign_setup
import harness
from harness import median, table, verdict

DATABASE = "renotify_bench_evidence_report"
TARGET_SECONDS = 2.0
PURPOSE = "ai-training"
FLOOR_SQL = (
    "SELECT count(*) FROM campaigns_delivery d JOIN accounts_member m ON m.id = d.member_id"
    " WHERE d.campaign_id = %s AND d.wave = 0 AND m.jurisdiction = %s"
)


def report_measure(
    *, purpose_slug: str = PURPOSE, jurisdiction: str, campaign_ids: list[int], repeat: int = 5
) -> dict:
    """Median seconds of the report and of the floor over ``repeat`` paired rounds, and
    their ratio; Django must be set up on the data. ``campaign_ids``: the campaigns the
    report is narrowed to (the floor reads the first one's deliveries)."""
    from django.db import connection

    from accounts.models import Purpose
    from evidence.reports import effectiveness_report

    purpose = Purpose.objects.get(slug=purpose_slug)
    report_s, floor_s = [], []
    report = None
    for _ in range(repeat):
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(FLOOR_SQL, [campaign_ids[0], jurisdiction])
            members = cursor.fetchone()[0]
        floor_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        report = effectiveness_report(
            purpose=purpose, jurisdiction=jurisdiction, campaigns=campaign_ids
        )
        report_s.append(time.perf_counter() - started)
    assert report is not None
    return {
        "jurisdiction": jurisdiction,
        "members_in_jurisdiction": members,
        "objections": report.feed.objections,
        "report_p50_s": median(report_s),
        "floor_p50_s": median(floor_s),
        "ratio": median(report_s) / median(floor_s) if median(floor_s) else None,
        "target_s": TARGET_SECONDS,
        "ok": median(report_s) < TARGET_SECONDS,
    }


# --- Set-up --------------------------------------------------------------------------

OUTCOMES_SQL = """
UPDATE campaigns_delivery SET
  sent_at = %(t0)s + (id %% 259200) * interval '1 second',
  status = CASE WHEN id %% 50 = 0 THEN 'bounced' WHEN id %% 500 = 1 THEN 'complained'
           ELSE 'delivered' END,
  bounced_at = CASE WHEN id %% 50 = 0
               THEN %(t0)s + (id %% 259200 + 60) * interval '1 second' END,
  delivered_at = CASE WHEN id %% 50 <> 0
                 THEN %(t0)s + (id %% 259200 + 60) * interval '1 second' END,
  complained_at = CASE WHEN id %% 500 = 1
                  THEN %(t0)s + (id %% 259200 + 3600) * interval '1 second' END
WHERE campaign_id = %(campaign)s
"""
# (action, purpose or NULL, source expression, which members, hours after the send)
EVENTS = [
    ("acknowledge", False, "'preference-page'", "d.member_id % 10 < 3", "d.member_id % 48"),
    ("object", True,
     "(ARRAY['preference-page','one-click','api','in_app','gpc'])[1 + d.member_id % 5]",
     "d.member_id % 20 = 7", "1 + d.member_id % 72"),
    ("unsubscribe", False, "'one-click'", "d.member_id % 100 = 11", "d.member_id % 24"),
]  # fmt: skip
EVENTS_SQL = """
INSERT INTO accounts_consentevent (seq, member_id, purpose_id, action, source,
  notice_version_id, delivery_id, created_at, ip_hash, user_agent, comment, metadata,
  prev_hash, hash)
SELECT (SELECT coalesce(max(seq), 0) FROM accounts_consentevent)
       + row_number() OVER (ORDER BY d.id),
  d.member_id, {purpose}, %(action)s::varchar, {source}, %(version)s, d.id,
  d.sent_at + ({hours}) * interval '1 hour' + interval '5 minutes', '', '', '', '{{}}',
  '', md5(d.id::text || %(action)s::varchar)
FROM campaigns_delivery d WHERE d.campaign_id = %(campaign)s AND d.sent_at IS NOT NULL
  AND {which}
"""
FEED_SQL = """
INSERT INTO accounts_suppressionchange (purpose_id, member_id, external_id, state, reason,
  changed_at, recorded_at)
SELECT %(purpose)s, m.id, m.external_id,
  CASE WHEN m.jurisdiction IN ('UK','EU','EEA','CH') THEN 'out' ELSE 'in' END,
  CASE WHEN m.jurisdiction IN ('UK','EU','EEA','CH') THEN 'jurisdiction-excluded'
       ELSE 'not-objected' END, %(t0)s - interval '1 day', %(t0)s - interval '1 day'
FROM accounts_member m ORDER BY m.id;
INSERT INTO accounts_suppressionchange (purpose_id, member_id, external_id, state, reason,
  changed_at, recorded_at)
SELECT %(purpose)s, m.id, m.external_id, 'out', 'objected', e.created_at,
  e.created_at + (30 + m.id %% 600) * interval '1 second'
FROM accounts_consentevent e JOIN accounts_member m ON m.id = e.member_id
WHERE e.action = 'object' AND m.jurisdiction NOT IN ('UK','EU','EEA','CH')
ORDER BY e.created_at + (30 + m.id %% 600) * interval '1 second';
INSERT INTO accounts_suppressionstate (purpose_id, member_id, external_id, state, reason,
  changed_at, cursor)
SELECT DISTINCT ON (member_id) purpose_id, member_id, external_id, state, reason,
  changed_at, id FROM accounts_suppressionchange WHERE purpose_id = %(purpose)s
ORDER BY member_id, id DESC;
"""
REPORTS_SQL = """
INSERT INTO api_consumerpositionreport (client_id, purpose_id, cursor, reported_at)
SELECT %(client)s, %(purpose)s, id, recorded_at + %(lag)s * interval '1 second'
FROM accounts_suppressionchange
WHERE purpose_id = %(purpose)s
  AND (id %% 5000 = 0 OR id = (SELECT max(id) FROM accounts_suppressionchange))
ORDER BY id
"""


def data_seed(members: int) -> None:
    """The campaign, its outcomes, the responses, the feed and two consumers."""
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Purpose
    from api.models import ApiClient, ConsumerPosition
    from campaigns.services.fanout import campaign_fan_out

    purpose = Purpose.objects.get(slug=PURPOSE)
    campaign = campaign_setup.campaign_create(state="sending", throttle_per_minute=6000)
    harness.progress(f"fan-out to {members:,} members")
    campaign_fan_out(campaign=campaign)
    t0 = timezone.now() - timedelta(days=30)
    type(campaign).objects.filter(pk=campaign.pk).update(fanned_out_at=t0)
    params = {"t0": t0, "campaign": campaign.pk, "version": campaign.notice_version_id,
              "purpose": purpose.pk}  # fmt: skip
    with connection.cursor() as cursor:
        harness.progress("outcomes, responses, feed, consumers")
        cursor.execute(OUTCOMES_SQL, params)
        for action, with_purpose, source, which, hours in EVENTS:
            sql = EVENTS_SQL.format(
                purpose="%(purpose)s" if with_purpose else "NULL",
                source=source.replace("%", "%%"),
                which=which.replace("%", "%%"),
                hours=hours.replace("%", "%%"),
            )
            cursor.execute(sql, {**params, "action": action})
        for statement in FEED_SQL.split(";\n"):
            if statement.strip():
                cursor.execute(statement, params)
        for name, lag in (("pipeline (10 min)", 600), ("warehouse (2 h)", 7200)):
            client = ApiClient.objects.create(
                name=name, key_prefix=name[:8], key_hash="0" * 64, scopes=["suppressions:read"]
            )
            cursor.execute(REPORTS_SQL, {**params, "client": client.pk, "lag": lag})
            ConsumerPosition.objects.create(client=client, purpose=purpose, cursor=0)
        cursor.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jurisdiction", default="US")
    parser.add_argument("--skip-seed", action="store_true", help="reuse the data")
    parser.add_argument("--database", default=DATABASE, help="keep data of several sizes")
    args = parser.parse_args()
    url = campaign_setup.database_url(args.database)
    if not args.skip_seed:
        harness.progress(f"preparing {args.database} with {args.members:,} members")
        campaign_setup.database_prepare(url)
        with harness.connect(url) as conn:
            campaign_setup.members_seed(conn, reachable=args.members)
    campaign_setup.django_start(url)
    if not args.skip_seed:
        data_seed(args.members)
    from campaigns.models import Campaign

    campaign_ids = [Campaign.objects.order_by("pk").values_list("pk", flat=True).first()]
    results = {
        place: report_measure(jurisdiction=place, campaign_ids=campaign_ids, repeat=args.repeat)
        for place in dict.fromkeys([args.jurisdiction, "EU"])
    }
    rows = [
        (
            place,
            f"{r['members_in_jurisdiction']:,}",
            f"{r['objections']:,}",
            f"{r['report_p50_s'] * 1000:.0f} ms",
            f"{r['floor_p50_s'] * 1000:.0f} ms",
            f"{r['ratio']:.1f}x" if r["ratio"] else "-",
            verdict(r["ok"]),
        )
        for place, r in results.items()
    ]
    print(f"effectiveness report, campaign to {args.members:,} members, {args.repeat} rounds")
    print(table(("jurisdiction", "members", "objections", "report p50", "floor p50", "ratio",
                 f"< {TARGET_SECONDS:.0f} s"), rows))  # fmt: skip
    targets = {
        f"report p50 s, {place}": harness.target(
            r["report_p50_s"], f"< {TARGET_SECONDS:.0f}", r["ok"]
        )
        for place, r in results.items()
    }
    harness.save_results(
        "evidence_report", {"members": args.members, **results, "targets": targets}
    )


if __name__ == "__main__":
    main()
