"""Benchmark: a campaign's fan-out against the raw INSERT ... SELECT, and the Celery
messages one whole campaign publishes.

1. Fan-out of N deliveries (default 1,000,000) on PostgreSQL. N reachable members
   are written in SQL (plus one in 50 bounced, complained or unsubscribed, which the
   audience leaves out), in a database of this script's own. Each round starts from
   an empty deliveries table and a CHECKPOINT, and times, in alternating order:

   - app: ``campaign_fan_out(campaign=..., wave=0)`` for a new campaign that targets
     everyone (the audience preview and snapshot, then INSERT ... SELECT ... WHERE
     NOT EXISTS in member-id slices of RENOTIFY_FANOUT_SLICE), called in
     this process with Django already set up;
   - floor: the same INSERT ... SELECT ... WHERE NOT EXISTS over the same
     members into a table of the same definition (``LIKE campaigns_delivery
     INCLUDING ALL``: columns, defaults, identity, checks, every index and the
     unique constraint; plus the table's foreign keys, which LIKE does not copy:
     none since campaigns 0004), as one statement in autocommit, with no application code;
   - floor without foreign keys: the same into ``LIKE campaigns_delivery INCLUDING
     ALL`` alone, to show what the two foreign keys cost.

   - app with a wording test: the same for a campaign whose audience is split 50/30/20
     between three versions of the notice (each row's version from the bucket hash
     computed in the same statement), to show what the assignment costs.

   Medians of the rounds are printed, and the median of each round's floor/app
   ratio (paired, so that the machine's noise hits both sides of a ratio alike).
   Then one EXPLAIN (ANALYZE, BUFFERS, WAL) of the floor statement with its
   constraints made immediate (rolled back) splits its time between the insert
   (heap, indexes, the NOT EXISTS anti-join) and each foreign key's per-row check.

2. Celery messages per campaign, for a campaign of M recipients (default 20,000)
   sent in full to a sink backend. ``Task.apply_async`` (which ``delay`` calls) is
   patched to append each publish to an in-process FIFO instead of a broker; the
   script then plays a single worker: it runs ``campaigns_start_due`` once (what
   beat publishes every minute, not per campaign, so not counted), then the body of
   each queued task in order until the queue is empty (publishes by name, as
   ``campaigns.enqueue`` makes them with ``send_task``, are caught the same way).
   Countdowns are ignored (all
   work is due at once with the throttle set high). Every publish made for the
   campaign is counted: the fan-out task, the sender chains' first messages and
   each chain's re-enqueues.

Usage: .venv/bin/python bench/fanout.py [--rows N] [--repeat R] [--celery-rows M]
"""

import argparse
import re
import time
from collections import Counter, deque
from unittest import mock

import campaign_setup
import harness
from harness import fmt_rate, fmt_s, median, rate, table, verdict

DATABASE = "renotify_bench_fanout"
REDIS_URL = "redis://127.0.0.1:6379/7"
FLOOR_TABLES = {"floor": "bench_floor_delivery", "floor_nofk": "bench_floor_delivery_nofk"}
TARGET_FLOOR_SHARE = 0.70
TARGET_ROWS_PER_S = 200_000
TARGET_RECIPIENTS_PER_MESSAGE = 500
# A wording test's assignment (a hash and a CASE per row) may cost a tenth more at most.
TARGET_SPLIT_COST = 1.10
UNREACHABLE_EVERY = 50
SEND_THROTTLE = 1_000_000  # per minute: the throttle never waits in the Celery count

FLOOR_INSERT = """
INSERT INTO {table} (campaign_id, member_id, wave, status, created_at, attempts,
    locale, esp_message_id, error)
SELECT %(campaign)s, m.id, 0, 'pending', now(), 0, '', '', ''
FROM accounts_member m WHERE email_status = 'ok' AND unsubscribed_at IS NULL
AND NOT EXISTS (SELECT 1 FROM {table} existing
    WHERE existing.campaign_id = %(campaign)s AND existing.wave = 0
    AND existing.member_id = m.id)
"""


# --- Set-up (not timed) ----------------------------------------------------------------


def floor_tables_create(conn) -> None:
    """Tables defined like campaigns_delivery. LIKE does not copy foreign keys: the
    first floor gets the originals' definitions as they are (deferred, as Django
    makes them); the second has none."""
    with conn.cursor() as cur:
        for table_name in FLOOR_TABLES.values():
            cur.execute(f"DROP TABLE IF EXISTS {table_name}")
            cur.execute(f"CREATE TABLE {table_name} (LIKE campaigns_delivery INCLUDING ALL)")
        cur.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'campaigns_delivery'::regclass AND contype = 'f'"
        )
        for (definition,) in cur.fetchall():
            cur.execute(f"ALTER TABLE {FLOOR_TABLES['floor']} ADD {definition}")
    conn.commit()


def tables_empty(conn) -> None:
    """Fresh heaps and indexes for the next timed run, and a fresh WAL budget."""
    conn.execute(f"TRUNCATE campaigns_delivery, {', '.join(FLOOR_TABLES.values())} CASCADE")
    conn.commit()
    harness.checkpoint(conn)


# --- The two timed runs -------------------------------------------------------------------


def floor_run(conn, table_name: str, campaign_id: int) -> tuple[float, int]:
    previous = conn.autocommit
    conn.autocommit = True
    try:
        started = time.perf_counter()
        cursor = conn.execute(FLOOR_INSERT.format(table=table_name), {"campaign": campaign_id})
        seconds = time.perf_counter() - started
    finally:
        conn.autocommit = previous
    return seconds, cursor.rowcount


def app_run() -> tuple[float, int, float]:
    """campaign_fan_out for a new campaign: seconds, rows added, seconds in the preview."""
    campaign = campaign_setup.campaign_create(state="sending", throttle_per_minute=6000)
    return _fan_out_timed(campaign)


def _fan_out_timed(campaign) -> tuple[float, int, float]:
    from campaigns.services import fanout

    preview_seconds = []
    real_preview = fanout.audience_preview

    def timed_preview(**kwargs):
        started = time.perf_counter()
        try:
            return real_preview(**kwargs)
        finally:
            preview_seconds.append(time.perf_counter() - started)

    with mock.patch.object(fanout, "audience_preview", timed_preview):
        started = time.perf_counter()
        added = fanout.campaign_fan_out(campaign=campaign, wave=0)
        seconds = time.perf_counter() - started
    return seconds, added, sum(preview_seconds)


SPLIT = (5000, 3000, 2000)


def app_split_run() -> tuple[float, int, float]:
    """``app_run`` for a campaign with a three-way wording test: seconds, rows added,
    seconds in the preview (the split's versions are copies of the notice's)."""
    from campaigns.models import CampaignVariant, NoticeVersion

    campaign = campaign_setup.campaign_create(state="sending", throttle_per_minute=6000)
    first = campaign.notice_version
    versions = [first] + [
        NoticeVersion.objects.create(
            notice=first.notice,
            effective_date=first.effective_date,
            objection_deadline=first.objection_deadline,
        )
        for _ in SPLIT[1:]
    ]
    CampaignVariant.objects.bulk_create(
        CampaignVariant(campaign=campaign, notice_version=v, share=share)
        for v, share in zip(versions, SPLIT, strict=True)
    )
    return _fan_out_timed(campaign)


def floor_explain(conn, campaign_id: int) -> dict[str, float]:
    """Seconds of the floor statement in the insert itself and in each foreign key's
    checks (made immediate, or EXPLAIN would not see them), from EXPLAIN ANALYZE."""
    statement = FLOOR_INSERT.format(table=FLOOR_TABLES["floor"])
    with conn.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, WAL) {statement}", {"campaign": campaign_id})
        plan = [line for (line,) in cur.fetchall()]
    conn.rollback()
    parts = {}
    for line in plan:
        if found := re.match(r"\s*Insert on .*actual time=[\d.]+\.\.([\d.]+)", line):
            parts["insert (heap, indexes, NOT EXISTS)"] = float(found[1]) / 1000
        elif found := re.match(r"\s*Trigger for constraint (\S+): time=([\d.]+)", line):
            parts[f"check of {found[1]}"] = float(found[2]) / 1000
        elif found := re.match(r"\s*Execution Time: ([\d.]+)", line):
            parts["whole statement"] = float(found[1]) / 1000
    return parts


# --- Celery messages of one campaign --------------------------------------------------------


def celery_count(recipients: int) -> dict:
    """Publishes by task name for one campaign of ``recipients``, sent in full."""
    from celery import Celery, current_app
    from celery.app.task import Task

    from campaigns.models import Delivery
    from campaigns.tasks import campaigns_start_due

    campaign = campaign_setup.campaign_create(
        state="scheduled", throttle_per_minute=SEND_THROTTLE, audience=recipients
    )
    queue: deque = deque()

    def publish(task, args=None, kwargs=None, **options):
        queue.append((task.name, tuple(args or ()), dict(kwargs or {})))

    def send_task(app, name, args=None, kwargs=None, **options):
        # campaigns.enqueue publishes by task name (Celery.send_task), not apply_async.
        queue.append((name, tuple(args or ()), dict(kwargs or {})))

    published: Counter[str] = Counter()
    campaign_setup.SinkBackend.reset()
    started = time.perf_counter()
    with (
        mock.patch.object(Task, "apply_async", publish),
        mock.patch.object(Celery, "send_task", send_task),
    ):
        campaigns_start_due()  # beat's message: one per minute for all campaigns
        while queue:
            name, args, kwargs = queue.popleft()
            published[name] += 1
            current_app.tasks[name](*args, **kwargs)
    seconds = time.perf_counter() - started
    statuses = Counter(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True))
    return {
        "recipients": recipients,
        "published": dict(published),
        "total": sum(published.values()),
        "statuses": dict(statuses),
        "sink_messages": campaign_setup.SinkBackend.messages,
        "seconds": seconds,
    }


# --- Report ----------------------------------------------------------------------------------

LABELS = {
    "floor": "floor: same table definition, one statement",
    "floor_nofk": "floor: LIKE ... INCLUDING ALL, no foreign keys",
    "app": "app: campaign_fan_out",
    "app_split": "app: campaign_fan_out, wording test 50/30/20",
}


def _share_line(label: str, ratios: list[float]) -> str:
    share = median(ratios)
    return (
        f"{label}: {share:.0%} (rounds: {', '.join(f'{r:.0%}' for r in ratios)})"
        f"   target >= {TARGET_FLOOR_SHARE:.0%}: {verdict(share >= TARGET_FLOOR_SHARE)}"
    )


def report(rows: int, runs: dict, preview: list, explain: dict, celery: dict) -> tuple[str, dict]:
    seconds = {name: [s for s, _ in values] for name, values in runs.items()}
    medians = {name: median(values) for name, values in seconds.items()}
    paired = {
        name: [f / a for f, a in zip(seconds[name], seconds["app"], strict=True)]
        for name in FLOOR_TABLES
    }
    app_rate = rate(rows, medians["app"])
    split_cost = [w / a for w, a in zip(seconds["app_split"], seconds["app"], strict=True)]
    split_ok = median(split_cost) <= TARGET_SPLIT_COST
    lines = [
        table(
            ["fan-out of deliveries", "rows", "median s", "rows/s", "runs (s)"],
            [
                *(
                    [
                        LABELS[name],
                        f"{rows:,}",
                        fmt_s(medians[name]),
                        fmt_rate(rate(rows, medians[name])),
                        " ".join(fmt_s(s) for s in seconds[name]),
                    ]
                    for name in ("floor", "floor_nofk", "app", "app_split")
                ),
                [
                    "  of which the audience preview",
                    "",
                    fmt_s(median(preview)),
                    "",
                    " ".join(fmt_s(p) for p in preview),
                ],
            ],
        ),
        "",
        _share_line("app / floor (same table definition)", paired["floor"]),
        _share_line("app / floor without foreign keys (for reference)", paired["floor_nofk"]),
        f"app rows/s: {fmt_rate(app_rate)}"
        f"   target >= {TARGET_ROWS_PER_S:,}: {verdict(app_rate >= TARGET_ROWS_PER_S)}",
        f"app with a wording test / app: {median(split_cost):.2f}x"
        f" (rounds: {', '.join(f'{r:.2f}' for r in split_cost)})"
        f"   target <= {TARGET_SPLIT_COST:.2f}x: {verdict(split_ok)}",
        "",
        "Where the floor statement's time goes (EXPLAIN ANALYZE, foreign keys immediate):",
        *(f"  {part}: {value:.2f} s" for part, value in explain.items()),
    ]
    n, total = celery["recipients"], celery["total"]
    allowed = n / TARGET_RECIPIENTS_PER_MESSAGE
    lines += [
        "",
        f"Celery messages for one campaign of {n:,} recipients (sent in full in"
        f" {celery['seconds']:.0f} s, deliveries {celery['statuses']},"
        f" RENOTIFY_CHUNK_SIZE {celery['chunk_size']}):",
        *(f"  {name}: {count}" for name, count in sorted(celery["published"].items())),
        f"  total {total}: 1 per {n / total:,.0f} recipients"
        f"   target <= 1 per {TARGET_RECIPIENTS_PER_MESSAGE} (<= {allowed:.0f}):"
        f" {verdict(total <= allowed)}",
    ]
    results = {
        "rows": rows,
        "seconds": seconds,
        "preview_seconds": preview,
        "rows_per_s": {name: rate(rows, m) for name, m in medians.items()},
        "app_share_of_floor": {name: median(r) for name, r in paired.items()},
        "wording_test_cost": median(split_cost),
        "floor_explain_seconds": explain,
        "celery": celery,
        # The verdicts printed above; the share without foreign keys is for reference only.
        "targets": {
            "app / floor (same table definition)": harness.target(
                median(paired["floor"]),
                f">= {TARGET_FLOOR_SHARE:.2f}",
                median(paired["floor"]) >= TARGET_FLOOR_SHARE,
            ),
            "app rows/s": harness.target(
                app_rate, f">= {TARGET_ROWS_PER_S:,}", app_rate >= TARGET_ROWS_PER_S
            ),
            "app with a wording test / app": harness.target(
                median(split_cost), f"<= {TARGET_SPLIT_COST:.2f}", split_ok
            ),
            "Celery messages per campaign": harness.target(
                total, f"<= 1 per {TARGET_RECIPIENTS_PER_MESSAGE} recipients", total <= allowed
            ),
        },
    }
    return "\n".join(lines), results


def rounds_run(conn, rows: int, repeat: int, campaign_id: int) -> tuple[dict, list]:
    runs: dict[str, list] = {"floor": [], "floor_nofk": [], "app": [], "app_split": []}
    preview = []
    names = list(runs)
    for round_no in range(repeat):
        # Rotate the order so that no run always follows the same one.
        shift = round_no % len(names)
        for which in names[shift:] + names[:shift]:
            tables_empty(conn)
            harness.progress(f"round {round_no + 1}/{repeat}: {which}")
            if which == "app":
                seconds, added, preview_seconds = app_run()
                preview.append(preview_seconds)
            elif which == "app_split":
                seconds, added, _preview = app_split_run()
            else:
                seconds, added = floor_run(conn, FLOOR_TABLES[which], campaign_id)
            if added != rows:
                raise SystemExit(f"{which} added {added:,} rows, expected {rows:,}")
            runs[which].append((seconds, added))
    return runs, preview


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="deliveries to fan out")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument(
        "--celery-rows", type=int, default=20_000, help="recipients of the Celery count"
    )
    args = parser.parse_args()

    url = campaign_setup.database_url(DATABASE)
    harness.progress(f"database {DATABASE}: recreate and migrate")
    campaign_setup.database_prepare(url)
    campaign_setup.django_start(
        url, REDIS_URL=REDIS_URL, EMAIL_BACKEND="campaign_setup.SinkBackend"
    )
    from django.conf import settings

    conn = harness.connect(url)
    harness.progress(f"members: {args.rows:,} reachable + 1 in {UNREACHABLE_EVERY} not")
    campaign_setup.members_seed(conn, reachable=args.rows, unreachable_every=UNREACHABLE_EVERY)
    floor_tables_create(conn)
    campaign_id = campaign_setup.campaign_create(state="sending", throttle_per_minute=6000).pk

    runs, preview = rounds_run(conn, args.rows, args.repeat, campaign_id)
    tables_empty(conn)
    harness.progress("EXPLAIN ANALYZE of the floor statement")
    explain = floor_explain(conn, campaign_id)

    tables_empty(conn)
    harness.progress(f"Celery count: a full send to {args.celery_rows:,} recipients")
    celery = celery_count(args.celery_rows)
    celery["chunk_size"] = settings.RENOTIFY_CHUNK_SIZE
    if celery["statuses"] != {"sent": args.celery_rows}:
        raise SystemExit(f"the Celery count campaign did not send in full: {celery}")
    tables_empty(conn)
    conn.close()

    text, results = report(args.rows, runs, preview, explain, celery)
    print(f"Fan-out on PostgreSQL, {args.repeat} rounds\n")
    print(text)
    print(f"\n(figures also in {harness.save_results('fanout', results)})")


if __name__ == "__main__":
    main()
