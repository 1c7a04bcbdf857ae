"""Benchmark: the staff console's dashboard and campaign page on 1M members and deliveries.

Set-up (set-based SQL, ``renotify_bench_console``, dropped at the end unless ``--keep``;
a kept database of the right size is reused, ``--fresh`` re-seeds it):

- ``--rows`` members (default 1,000,000; ``SCALE`` works too), written by
  ``campaign_setup.members_seed``;
- one campaign "sending" the realistic notice with one delivery per member, in
  realistic statuses (``DELIVERY_MIX``: most delivered or opened, a few bounced, failed,
  unknown, still pending), milestones set as the ESP's events would have;
- 30 days of ledger events (acknowledgements, objections, unsubscribes, about one
  member in ten, spread over the days), pointing at the campaign's deliveries: written
  directly (the hash chain is not computed: nothing here verifies it);
- the suppression feed's current state for the ai-training purpose, one row per
  member ("out" in the UK/EU/EEA/CH by policy, and for the objectors);
- a staff member holding the approver's permissions and a session made directly
  (no login form, no second factor: ``RENOTIFY_STAFF_2FA=sso`` is set for the server
  in case the deployment's two-factor setting exists).

gunicorn serves the app (DEBUG off, 1 sync worker) with a floor page added: the
console's own base page around one indexed lookup (the campaign by primary key),
behind the same guard (``console_view``) and middleware. Each page is fetched
``--requests`` times (default 200), one at a time, interleaved (floor, dashboard,
campaign page, ...) so that all three see the same noise; p50 and p99 of each and the
ratio to the floor's are printed. Target: the dashboard's p50 under 300 ms.

``--recount`` sets the console's cache periods to zero: every view counts everything
(what the pages would cost without keeping figures for a few seconds).

Usage: .venv/bin/python bench/console.py [--rows N] [--requests R] [--keep] [--fresh]
       [--recount]
"""

import argparse
import http.client
import os
import time
from pathlib import Path

import campaign_setup
import console_server
import harness
import load_driver
import psycopg
import redis
from harness import table, verdict
from psycopg import sql

DATABASE = "renotify_bench_console"
PORT = 8774
REDIS_URL = "redis://127.0.0.1:6379/13"
TARGET_DASHBOARD_MS = 300.0
USERNAME = "bench-approver"

# Delivery statuses by id % 1000, as [lo, hi) ranges: what a campaign most of the way
# through sending looks like.
DELIVERY_MIX = [
    ("pending", 0, 40),
    ("bounced", 40, 55),
    ("failed", 55, 60),
    ("unknown", 60, 62),
    ("complained", 62, 63),
    ("sent", 63, 300),
    ("delivered", 300, 650),
    ("opened", 650, 900),
    ("clicked", 900, 1000),
]
REACHED = ("sent", "delivered", "opened", "clicked", "complained")
DELIVERED = ("delivered", "opened", "clicked", "complained")
OPENED = ("opened", "clicked")

DELIVERIES_SQL = """
INSERT INTO campaigns_delivery (campaign_id, member_id, wave, status, created_at, attempts,
    locale, sent_at, esp_message_id, error, delivered_at, opened_at, clicked_at, bounced_at,
    complained_at, soft_bounces)
SELECT %(campaign)s, m.id, 0, mix.status, now() - interval '3 days', 1, m.locale,
    CASE WHEN mix.status IN {reached} OR mix.status = 'bounced'
         THEN now() - interval '3 days' END,
    CASE WHEN mix.status = 'pending' THEN '' ELSE 'esp-' || m.id END,
    CASE WHEN mix.status = 'failed' THEN '550 refused' ELSE '' END,
    CASE WHEN mix.status IN {delivered} THEN now() - interval '3 days' END,
    CASE WHEN mix.status IN {opened} THEN now() - interval '2 days' END,
    CASE WHEN mix.status = 'clicked' THEN now() - interval '2 days' END,
    CASE WHEN mix.status = 'bounced' THEN now() - interval '3 days' END,
    CASE WHEN mix.status = 'complained' THEN now() - interval '2 days' END,
    0
FROM accounts_member m
JOIN ({mix}) AS mix (status, lo, hi) ON m.id %% 1000 >= mix.lo AND m.id %% 1000 < mix.hi
ORDER BY m.id
"""

# One member in ten responded, spread over the last 30 days: by id % 100, 0-5 acknowledged,
# 6-8 objected, 9 unsubscribed. Hashes are placeholders (the chain is not verified here).
EVENTS_SQL = """
INSERT INTO accounts_consentevent (seq, member_id, purpose_id, action, source,
    notice_version_id, delivery_id, created_at, ip_hash, user_agent, comment, metadata,
    prev_hash, hash)
SELECT row_number() OVER (ORDER BY d.id), d.member_id,
    CASE WHEN d.member_id %% 100 BETWEEN 6 AND 8 THEN %(purpose)s END,
    CASE WHEN d.member_id %% 100 <= 5 THEN 'acknowledge'
         WHEN d.member_id %% 100 <= 8 THEN 'object' ELSE 'unsubscribe' END,
    'preference-page', %(version)s, d.id,
    now() - (d.member_id %% 30) * interval '1 day' - (d.member_id %% 997) * interval '1 minute',
    '', '', '', '{}', repeat('0', 64), md5(d.id::text) || md5(d.member_id::text)
FROM campaigns_delivery d
WHERE d.campaign_id = %(campaign)s AND d.member_id %% 100 < 10
  AND d.status IN ('delivered', 'opened', 'clicked')
ORDER BY d.id
"""

SUPPRESSION_SQL = """
INSERT INTO accounts_suppressionstate (purpose_id, member_id, external_id, state, reason,
    changed_at, cursor)
SELECT %(purpose)s, m.id, m.external_id,
    CASE WHEN m.jurisdiction IN ('UK', 'EU', 'EEA', 'CH') OR m.id %% 100 BETWEEN 6 AND 8
         THEN 'out' ELSE 'in' END,
    CASE WHEN m.id %% 100 BETWEEN 6 AND 8 THEN 'objected' ELSE 'policy' END,
    now() - interval '10 days', m.id
FROM accounts_member m
"""


def _in(values) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _mix_sql() -> str:
    return "VALUES " + ", ".join(f"('{s}', {lo}, {hi})" for s, lo, hi in DELIVERY_MIX)


def seeded_size(url: str) -> int:
    """Members in a kept database (0 if it is missing or was never fully seeded)."""
    try:
        with harness.connect(url) as conn:
            (done,) = conn.execute(
                "SELECT count(*) FROM auth_user WHERE username = %s", [USERNAME]
            ).fetchone()
            if not done:
                return 0
            (count,) = conn.execute("SELECT count(*) FROM accounts_member").fetchone()
            return count
    except psycopg.OperationalError:  # no such database yet: seed it
        return 0


def database_drop(url: str) -> None:
    name = harness.database_name(url)
    with harness.connect(harness.with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def seed(url: str, rows: int) -> float:
    """The whole population in set-based SQL. Returns seconds taken."""
    started = time.perf_counter()
    harness.progress(f"preparing {DATABASE}")
    campaign_setup.database_prepare(url)
    with harness.connect(url) as conn:
        harness.progress(f"seeding {rows:,} members")
        campaign_setup.members_seed(conn, reachable=rows)
    campaign_setup.django_start(url)
    from django.utils import timezone

    from accounts.models import LedgerCheck, Purpose
    from campaigns.models import CampaignState

    campaign = campaign_setup.campaign_create(state=CampaignState.SENDING, throttle_per_minute=6000)
    campaign.fanned_out_at = timezone.now()
    campaign.audience_snapshot = {"targeted": rows, "unreachable": {}}
    campaign.save(update_fields=["fanned_out_at", "audience_snapshot"])
    purpose = Purpose.objects.get(slug="ai-training")
    LedgerCheck.objects.create(events_checked=0, intact=True)
    params = {"campaign": campaign.pk, "purpose": purpose.pk, "version": campaign.notice_version_id}
    with harness.connect(url) as conn:
        harness.progress(f"{rows:,} deliveries")
        conn.execute(
            DELIVERIES_SQL.format(
                reached=_in(REACHED), delivered=_in(DELIVERED), opened=_in(OPENED), mix=_mix_sql()
            ),
            params,
        )
        harness.progress("30 days of ledger events")
        conn.execute(EVENTS_SQL, params)
        harness.progress("suppression states")
        conn.execute(SUPPRESSION_SQL, params)
        conn.commit()
        for name in (
            "campaigns_delivery",
            "accounts_consentevent",
            "accounts_suppressionstate",
            "accounts_member",
        ):
            harness.vacuum_analyze(conn, name)
    _staff_create()
    return time.perf_counter() - started


APPROVER_PERMS = (
    "campaigns.view_campaign",
    "campaigns.view_noticeversion",
    "campaigns.approve_campaign",
    "campaigns.operate_campaign",
    "campaigns.resend_delivery",
)


def _staff_create() -> None:
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(USERNAME, is_staff=True)
    for perm in APPROVER_PERMS:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )


def session_cookie() -> str:
    """A signed-in session for the bench's staff member, made directly."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    user = User.objects.get(username=USERNAME)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


# --- The server ------------------------------------------------------------------------


# --recount: nothing kept between views (every figure counted on every request).
NO_KEEPING = {
    "RENOTIFY_CONSOLE_PROGRESS_SECONDS": "0",
    "RENOTIFY_CONSOLE_REACH_SECONDS": "0",
    "RENOTIFY_CONSOLE_COUNTS_SECONDS": "0",
}


def server_start(url: str, *, recount: bool):
    env = load_driver.server_env(
        url,
        redis_url=REDIS_URL,
        var_dir="console",
        RENOTIFY_STAFF_2FA="sso",
        **(NO_KEEPING if recount else {}),
    )
    log = Path(harness.OUT_DIR) / "console-gunicorn.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return harness.gunicorn_start(
        "console_server:wsgi_app()",
        port=PORT,
        workers=1,
        env=env,
        ready_path=load_driver.NOOP_PATH,
        log=log,
    )


def fetch_ms(path: str, cookie: str) -> float:
    """One GET on a new connection (gunicorn's sync worker closes it): milliseconds to the
    whole body. Anything but 200 stops the run."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
    conn.request("GET", path, headers={"Cookie": f"sessionid={cookie}"})
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    conn.close()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("SCALE", "1000000")))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--fresh", action="store_true", help="re-seed a kept database")
    parser.add_argument(
        "--recount",
        action="store_true",
        help="keep no figure between views: what every view would cost without the cache",
    )
    args = parser.parse_args()
    load_driver.sigterm_unwinds()
    url = campaign_setup.database_url(DATABASE)
    seed_seconds = 0.0
    if args.fresh or seeded_size(url) != args.rows:
        seed_seconds = seed(url, args.rows)
    else:
        harness.progress(f"reusing {DATABASE} ({args.rows:,} members)")
        campaign_setup.django_start(url)
    from campaigns.models import Campaign

    campaign = Campaign.objects.get(name="bench campaign")
    cookie = session_cookie()
    pages = {
        "floor": f"{console_server.FLOOR_PATH}{campaign.pk}/",
        "dashboard": "/console/",
        "campaign page": f"/console/campaigns/{campaign.pk}/",
    }
    # Figures a previous run kept in the cache (by campaign id) must not be served.
    redis.Redis.from_url(REDIS_URL).flushdb()
    server = server_start(url, recount=args.recount)
    try:
        for path in pages.values():  # warm: the worker's first request loads templates
            fetch_ms(path, cookie)
        timings: dict[str, list[float]] = {name: [] for name in pages}
        for i in range(args.requests):
            if i % 50 == 0:
                harness.progress(f"request {i + 1}/{args.requests} of each page")
            for name, path in pages.items():
                timings[name].append(fetch_ms(path, cookie))
    finally:
        harness.process_stop(server)
        if not args.keep:
            database_drop(url)

    floor_p50 = percentile(timings["floor"], 0.5)
    rows, figures = [], {}
    for name, values in timings.items():
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        figures[name] = {"p50_ms": p50, "p99_ms": p99, "ratio_p50": p50 / floor_p50}
        rows.append([name, f"{p50:.1f}", f"{p99:.1f}", f"{p50 / floor_p50:.1f}x"])
    dashboard_p50 = figures["dashboard"]["p50_ms"]
    ok = dashboard_p50 < TARGET_DASHBOARD_MS
    print(f"console pages: {args.rows:,} members and deliveries, {args.requests} requests each")
    if args.recount:
        print("--recount: every figure counted on every view (nothing kept in the cache)")
    if seed_seconds:
        print(f"seeded in {seed_seconds:.0f} s")
    print(table(["page", "p50 ms", "p99 ms", "p50 / floor"], rows))
    print(
        table(
            ["target", "measured", "target", "result"],
            [
                [
                    "dashboard p50",
                    f"{dashboard_p50:.0f} ms",
                    f"< {TARGET_DASHBOARD_MS:.0f} ms",
                    verdict(ok),
                ]
            ],
        )
    )
    results = {
        "rows": args.rows,
        "requests": args.requests,
        "pages": figures,
        "targets": {
            "dashboard p50": {
                "measured": dashboard_p50,
                "target": f"< {TARGET_DASHBOARD_MS:.0f} ms",
                "pass": ok,
            }
        },
    }
    path = harness.save_results("console-recount" if args.recount else "console", results)
    print(f"\n(figures also in {path.relative_to(harness.ROOT)})")


if __name__ == "__main__":
    main()
