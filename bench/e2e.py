"""Benchmark: one campaign end to end, production-like, on PostgreSQL and Redis.

SCALE members (default 1,000,000) are imported with the app's importer; a campaign to
all of them is created, approved by a second staff member and scheduled through the
services, started and fanned out by the real tasks on workers, sent by Celery workers
on the ``bulk`` queue through django-anymail's Postmark backend into ``esp_sink``
(several processes on one port), whose feeder posts every message's ESP events back to
gunicorn's webhook (SendGrid's shape, 100 per POST), processed by a worker on the
``celery`` queue with beat running; 5% of the members acknowledge and 2% object on the
notice page over HTTP while the campaign sends (links taken from the sink); then the
suppression snapshot is exported. Before the campaign, the send rate of 1, 2 and 4
sender processes is measured on campaigns of SCALE/10 (Postmark's shape, one event
per POST, for their webhooks); the main campaign is sent with the best of them.
What is measured, the targets and the options: bench/README.md ("e2e").

Usage: SCALE=100000 .venv/bin/python bench/e2e.py [--counts 1,2,4] [--keep]
           [--main-shape sendgrid|postmark] [--sweep-shape postmark|sendgrid]
"""

import argparse
import http.client
import os
import queue
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import campaign_setup
import esp_sink
import harness
import load_driver
import population
import private_services
import processes
from harness import fmt_mb, fmt_rate, fmt_s, table, verdict

DATABASE = "renotify_e2e"
REDIS_URL = "redis://127.0.0.1:6379/8"
SINK_PROCESSES = 2  # one takes ~6,900 messages/s alone (esp_sink.py): two are ample
THROTTLE = 10_000_000  # per minute: the throttle never makes a sender wait
WEB_WORKERS = 2
ACK_PER_MILLE, OBJECT_PER_MILLE = 50, 20
MEMBER_THREADS = 4
POLL_SECONDS = 5.0  # the events watch (and events_settle) poll this often
PURPOSE = "ai-training"

TARGET_CAMPAIGN_SECONDS = 25 * 60
TARGET_TRAIL_SECONDS = 5 * 60
RSS_FLAT_FACTOR, RSS_FLAT_SLACK_MB = 1.10, 5  # as send_loop's "flat"


def scale() -> int:
    return int(os.environ.get("SCALE", "1000000"))


# --- Environment ------------------------------------------------------------------------


def app_env(url: str, port: int, sink_port: int, senders: int = 2) -> dict[str, str]:
    """Every app process's environment: production-like, Redis db 8 for cache, broker
    and beat, mail through anymail's Postmark backend into the sink."""
    return load_driver.server_env(
        url,
        redis_url=REDIS_URL,
        var_dir="e2e_var",
        SITE_URL=f"http://127.0.0.1:{port}",
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
        ANYMAIL_POSTMARK_SERVER_TOKEN="bench-server-token",
        ANYMAIL_POSTMARK_API_URL=f"http://127.0.0.1:{sink_port}/",
        RENOTIFY_SENDERS_PER_CAMPAIGN=str(senders),
        # All the member traffic comes from one address (as notice_pages).
        RENOTIFY_RATE_PER_IP="100000000/m",
        RENOTIFY_RATE_PER_TOKEN="1000/m",
        # The sink's complaints (esp_sink.EXTRA_EVENTS) must not trip the breaker by
        # chance early in a small campaign: it is not what is measured here.
        RENOTIFY_BREAKER_COMPLAINT_RATE="0.01",
    )


def redis_flush() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def feed_options(env: dict[str, str], port: int, shape: str) -> esp_sink.FeedOptions:
    return esp_sink.FeedOptions(
        url=f"http://127.0.0.1:{port}",
        shape=shape,
        auth=env["ANYMAIL_WEBHOOK_SECRET"].split(",")[0],
    )


# --- Phase 1: import --------------------------------------------------------------------


def members_import(url: str, members: int) -> dict:
    path = harness.OUT_DIR / f"e2e-members-{members}.csv"
    if not path.exists():
        harness.progress(f"writing {path.name}")
        population.write_csv(path, population.member_rows(members))
    harness.progress(f"import_members: {members:,} rows")
    run = harness.manage("import_members", str(path), "--no-progress", env=harness.django_env(url))
    with harness.connect(url) as conn:
        imported = harness.count_rows(conn, "accounts_member")
        harness.vacuum_analyze(conn, "accounts_member")
    return {"seconds": run.seconds, "rows": imported, "peak_rss_mb": run.peak_rss_mb}


# --- Phase 2: create, approve, schedule (in this process, through the services) ---------


def staff_users():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    def user(name: str, *perms: str):
        person = get_user_model().objects.create_user(name, is_staff=True, email=f"{name}@e2e.test")
        for perm in perms:
            app_label, codename = perm.split(".")
            person.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return get_user_model().objects.get(pk=person.pk)  # fresh permission cache

    author = user("e2e-author", "campaigns.add_campaign", "campaigns.change_campaign")
    approver = user("e2e-approver", "campaigns.approve_campaign", "campaigns.operate_campaign")
    return author, approver


def campaign_launch_prepare(author, approver) -> tuple[int, float]:
    """Create (the author), submit, approve and schedule (the approver, four eyes)."""
    from django.utils import timezone

    from campaigns.services import lifecycle

    started = time.perf_counter()
    campaign = lifecycle.campaign_create(
        by=author,
        name="e2e: AI training notice",
        notice_version=campaign_setup.notice_version_create(),
        starts_at=timezone.now(),
        throttle_per_minute=THROTTLE,
    )
    lifecycle.campaign_submit(campaign=campaign, by=author)
    lifecycle.campaign_approve(campaign=campaign, by=approver)
    lifecycle.campaign_schedule(campaign=campaign, by=approver)
    return campaign.pk, time.perf_counter() - started


def campaign_start_publish() -> None:
    """What beat does every minute, now: the worker starts due campaigns and fans out."""
    from campaigns import enqueue

    enqueue.task_publish("campaigns.tasks.campaigns_start_due")


# --- Database figures -------------------------------------------------------------------


def one(url: str, statement: str, params=()) -> tuple:
    with harness.connect(url, autocommit=True) as conn:
        return conn.execute(statement, params).fetchone()


def fanned_out(url: str, campaign: int) -> bool:
    return one(url, "SELECT fanned_out_at IS NOT NULL FROM campaigns_campaign WHERE id = %s",
               [campaign])[0]  # fmt: skip


def unsettled(url: str, campaign: int) -> int:
    """Deliveries not yet handed to the ESP (pending, claimed, sending)."""
    return one(
        url,
        "SELECT count(*) FROM campaigns_delivery WHERE campaign_id = %s"
        " AND status IN ('pending', 'claimed', 'sending')",
        [campaign],
    )[0]


def delivery_ids(url: str, campaign: int) -> set[int]:
    with harness.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT id FROM campaigns_delivery WHERE campaign_id = %s", [campaign])
        return {row[0] for row in rows}


def statuses(url: str, campaign: int) -> dict[str, int]:
    with harness.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM campaigns_delivery WHERE campaign_id = %s GROUP BY 1",
            [campaign],
        )
        return dict(rows.fetchall())


SIZES_SQL = """
SELECT pg_total_relation_size('campaigns_delivery'),
       pg_total_relation_size('campaigns_deliveryevent'),
       pg_total_relation_size('accounts_consentevent'), pg_database_size(current_database()),
       (SELECT count(*) FROM campaigns_delivery)
"""


def sizes(url: str) -> dict[str, float]:
    deliveries_b, events_b, ledger_b, total_b, deliveries = one(url, SIZES_SQL)
    per_million = 1_000_000 / max(deliveries, 1) / 2**20  # MB per million deliveries
    return {
        "deliveries": deliveries,
        "deliveries_mb_per_m": deliveries_b * per_million,
        "events_mb_per_m": events_b * per_million,
        "ledger_mb_per_m": ledger_b * per_million,
        "total_mb_per_m": total_b * per_million,
    }


# --- Watching the events' processing -----------------------------------------------------


@dataclass
class EventWatch:
    """Polls the events table (and the sink's queue) while a phase runs: the backlog
    over time and its maximum."""

    url: str
    sink: esp_sink.Sink
    # (seconds, events stored, stored but unprocessed, posted, produced but not posted yet)
    samples: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "EventWatch":
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.samples.append((time.monotonic() - self.t0, *self.read()))

    def read(self) -> tuple[int, int, int, int]:
        """(events stored: the highest id, stored but unprocessed, posted by the sink's
        feeder, waiting at the sink). The poll shares the machine with what it measures:
        it counts through the unprocessed events' partial index only, never the table."""
        stored, unprocessed = one(
            self.url,
            "SELECT (SELECT coalesce(max(id), 0) FROM campaigns_deliveryevent),"
            " (SELECT count(*) FROM campaigns_deliveryevent WHERE processed_at IS NULL)",
        )
        posted = int(self.sink.stats().get("events_posted", 0))
        return stored, unprocessed, posted, self.sink.events_backlog()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()

    def max_backlog(self, column: int = 2) -> int:
        """The largest backlog seen: stored but unprocessed (2) or at the sink (4)."""
        return max((s[column] for s in self.samples), default=0)


def events_settle(url: str, sink: esp_sink.Sink, *, timeout: float) -> bool:
    """Wait until the sink has posted every event and the app has processed them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = one(url, "SELECT count(*) FROM campaigns_deliveryevent WHERE processed_at IS NULL")
        if sink.events_backlog() <= 0 and left[0] == 0:
            return True
        time.sleep(POLL_SECONDS)
    return False


EVENTS_SQL = """
SELECT count(*), count(*) FILTER (WHERE processed_at IS NULL), count(*) FILTER (WHERE is_orphan),
    extract(epoch FROM min(received_at)), extract(epoch FROM max(received_at)),
    extract(epoch FROM max(processed_at))
FROM campaigns_deliveryevent WHERE received_at >= to_timestamp(%s)
"""


def events_figures(url: str, since: float, expected: int) -> dict:
    stored, unprocessed, orphans, first, last, processed = one(url, EVENTS_SQL, [since])
    first, last, processed = (float(v or 0) for v in (first, last, processed))
    span_received, span_processed = last - first, processed - first
    return {
        "expected": expected,
        "stored": stored,
        "unprocessed": unprocessed,
        "orphans": orphans,
        "received_per_s": harness.rate(stored, span_received),
        "processed_per_s": harness.rate(stored, span_processed),
        "trail_s": processed - last,
        "first_received_at": first,
        "last_received_at": last,
        "last_processed_at": processed,
    }


def expected_events(counts) -> int:
    return sum(len(esp_sink.event_kinds(d)) for d in counts)


# --- Phase 6: members on the notice page ----------------------------------------------------

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def member_choice(delivery_id: int) -> str | None:
    """5% acknowledge, 2% object: chosen by delivery id, the same in every run."""
    dice = esp_sink._mix(delivery_id, 31) % 1000
    if dice < ACK_PER_MILLE:
        return "acknowledge"
    if dice < ACK_PER_MILLE + OBJECT_PER_MILLE:
        return "object"
    return None


@dataclass
class MemberActions:
    """Follows the sink's log and, for the chosen members, GETs the notice page (as the
    email's link) and POSTs the choice with the CSRF cookie and token the page gave."""

    port: int
    log_dir: Path
    campaign: int
    counts: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    _todo: queue.Queue = field(default_factory=queue.Queue)
    _done_reading: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "MemberActions":
        self.t0, self.t_end = time.monotonic(), 0.0
        self.threads = [threading.Thread(target=self._follow, daemon=True)]
        self.threads += [
            threading.Thread(target=self._act, daemon=True) for _ in range(MEMBER_THREADS)
        ]
        for thread in self.threads:
            thread.start()
        return self

    def finish(self) -> None:
        """Read the log to its end once more, then wait for the queue to empty."""
        self._done_reading.set()
        for thread in self.threads:
            thread.join()
        self.t_end = time.monotonic()

    def _count(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def _follow(self) -> None:
        offsets: dict[Path, int] = {}
        while True:
            last_pass = self._done_reading.is_set()
            for path in sorted(self.log_dir.glob("sent-*.tsv")):
                with path.open() as f:
                    f.seek(offsets.get(path, 0))
                    for line in iter(f.readline, ""):
                        if not line.endswith("\n"):
                            break  # being written: read it next time
                        offsets[path] = f.tell()
                        self._consider(line)
            if last_pass:
                break
            time.sleep(0.5)
        for _ in range(MEMBER_THREADS):
            self._todo.put(None)

    def _consider(self, line: str) -> None:
        delivery, campaign, _, _, _, token = line.rstrip("\n").split("\t")
        choice = member_choice(int(delivery))
        if int(campaign) == self.campaign and choice and token:
            self._todo.put((token, choice))

    def _act(self) -> None:
        while (item := self._todo.get()) is not None:
            started = time.perf_counter()
            try:
                outcome = self._one(*item)
            except (OSError, http.client.HTTPException) as error:
                outcome = f"error {type(error).__name__}"
            self._count(outcome)
            with self._lock:
                self.latencies.append(time.perf_counter() - started)

    def _request(self, method: str, path: str, body: str = "", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _one(self, token: str, choice: str) -> str:
        path = f"/n/{token}/"
        status, headers, page = self._request("GET", path)
        if status != 200:
            return f"GET {status}"
        cookies = "; ".join(
            value.split(";", 1)[0] for name, value in headers if name.lower() == "set-cookie"
        )
        form = CSRF_INPUT.search(page.decode())
        if not form:
            return "GET without a form"
        body = f"csrfmiddlewaretoken={form.group(1)}&action={choice}"
        if choice == "object":
            body += f"&purpose={PURPOSE}"
        status, headers, _ = self._request(
            "POST",
            path,
            body,
            {
                "Cookie": cookies,
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": f"http://127.0.0.1:{self.port}",
            },
        )
        location = dict((k.lower(), v) for k, v in headers).get("location", "")
        return choice if status == 302 and f"done={choice}" in location else f"POST {status}"


# --- Phase 4: the sweep of sender processes -------------------------------------------------

SWEEP_DELIVERIES_SQL = """
INSERT INTO campaigns_delivery (campaign_id, member_id, wave, status, created_at, attempts,
    locale, esp_message_id, error, soft_bounces)
SELECT %(campaign)s, id, 0, 'pending', now(), 0, locale, '', '', 0
FROM accounts_member WHERE email_status = 'ok' AND unsubscribed_at IS NULL ORDER BY id LIMIT %(n)s
"""


def sweep_campaign(url: str, n: int) -> int:
    """A campaign already sending, with ``n`` pending deliveries written in SQL: the
    sweep measures sending alone (the main campaign goes through the whole flow)."""
    campaign = campaign_setup.campaign_create(state="sending", throttle_per_minute=THROTTLE)
    with harness.connect(url) as conn:
        conn.execute(SWEEP_DELIVERIES_SQL, {"campaign": campaign.pk, "n": n})
        conn.execute("UPDATE campaigns_campaign SET fanned_out_at = now() WHERE id = %s",
                     [campaign.pk])  # fmt: skip
        conn.commit()
        harness.vacuum_analyze(conn, "campaigns_delivery")
    return campaign.pk


def send_wait(url: str, campaign: int, *, timeout: float) -> float:
    """Seconds until no delivery of ``campaign`` is waiting to be sent; a campaign that
    stops sending (paused by its breaker, cancelled) ends the run with its reason."""
    started = time.perf_counter()
    while unsettled(url, campaign) and time.perf_counter() - started < timeout:
        state, reason = one(
            url, "SELECT state, state_reason FROM campaigns_campaign WHERE id = %s", [campaign]
        )
        if state in ("paused", "cancelled", "draft"):
            raise SystemExit(f"campaign {campaign} stopped sending: {state}: {reason}")
        time.sleep(0.5)
    return time.perf_counter() - started


def sweep(args, url, rig, env_for, sink) -> list[dict]:
    from campaigns.services.senders import sender_slots, senders_start

    results = []
    n = max(1, scale() // 10)
    for count in args.counts:
        campaign = sweep_campaign(url, n)
        worker = rig.worker(
            env=env_for(count), queues="bulk", concurrency=count, name=f"sweep{count}",
            kind=f"sender worker, sweep x{count}",
        )  # fmt: skip
        since = time.time()
        harness.progress(f"sweep: {n:,} messages with {count} sender process(es)")
        senders_start(campaign, slots=sender_slots(count))
        seconds = send_wait(url, campaign, timeout=3600)
        sent_at = time.time()
        rig.stop_one(worker)
        settled = events_settle(url, sink, timeout=900)
        counts = sink.log().counts(campaign)
        tally = esp_sink.tally(counts, delivery_ids(url, campaign))
        events = events_figures(url, since, expected_events(counts))
        results.append(
            {
                "processes": count,
                "messages": n,
                "seconds": seconds,
                "messages_per_s": harness.rate(n, seconds),
                "sink": tally,
                "statuses": statuses(url, campaign),
                "events": events,
                "events_settled": settled,
                "receive_trail_s": events["last_received_at"] - sent_at,
            }
        )
        harness.progress(
            f"  {harness.rate(n, seconds):,.0f} messages/s; events trail"
            f" {events['trail_s']:.1f} s; duplicates {tally['duplicates']}, missing"
            f" {tally['missing']}"
        )
    return results


# --- The no-op ceiling -----------------------------------------------------------------------


def noop_ceiling(port: int, shape: str, seconds: int = 5) -> float:
    """Events/s the same gunicorn takes on the no-op view, POSTs of ``shape``'s size."""
    sent = esp_sink.Sent(1, 1, "<d1.c1@e2e>", "esp-1", "m@example.test", "")
    per_post = esp_sink.SHAPES[shape][1]
    events = [
        p for _, p in esp_sink.events_for(shape, sent, at=__import__("datetime").datetime.now())
    ]
    body = esp_sink.post_body(shape, (events * per_post)[:per_post])
    lua = harness.OUT_DIR / f"e2e-noop-{shape}.lua"
    lua.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body.decode()}]==]\n"
    )
    done = subprocess.run(
        ["wrk", "-t2", "-c8", f"-d{seconds}s", "-s", str(lua),
         f"http://127.0.0.1:{port}{load_driver.NOOP_PATH}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))
    return rate * per_post


# --- Phases 3, 5, 6: the main campaign --------------------------------------------------------


def main_campaign(args, url, rig, env, sink, web_port, staff, server) -> dict:
    """Create, approve, schedule, start, fan out, send, feed and process, with members
    acting on their links meanwhile; timed from the start task's publish. ``staff`` is
    the (author, approver) pair."""
    author, approver = staff
    campaign, launch_s = campaign_launch_prepare(author, approver)
    watch = EventWatch(url, sink).start()
    members = MemberActions(web_port, sink.directory, campaign).start()
    since = time.time()
    started = time.perf_counter()
    postgres_cpu = server.cpu_seconds()
    campaign_start_publish()
    while not fanned_out(url, campaign):
        time.sleep(0.2)
    fanout_s = time.perf_counter() - started
    deliveries = len(delivery_ids(url, campaign))
    harness.progress(f"fanned out: {deliveries:,} deliveries in {fanout_s:.1f} s; sending")
    send_s = send_wait(url, campaign, timeout=6 * 3600) + fanout_s
    harness.progress(f"sent in {send_s:.0f} s from the start; waiting for the events")
    settled = events_settle(url, sink, timeout=3600)
    postgres_cpu = server.cpu_seconds() - postgres_cpu
    watch.stop()
    members.finish()
    counts = sink.log().counts(campaign)
    events = events_figures(url, since, expected_events(counts))
    whole = events["last_processed_at"] - since
    return {
        # PostgreSQL's CPU for the campaign, its events and the members' choices included.
        "postgres_cpu_s": postgres_cpu,
        "postgres_cpu_ms_per_delivery": 1000 * postgres_cpu / max(deliveries, 1),
        "campaign": campaign,
        "deliveries": deliveries,
        "launch_s": launch_s,
        "fanout_s": fanout_s,
        "send_s": send_s,
        "messages_per_s": harness.rate(deliveries, send_s - fanout_s),
        "whole_s": whole,
        "events": events,
        "events_settled": settled,
        "max_backlog": watch.max_backlog(),
        "max_sink_backlog": watch.max_backlog(4),
        # How long the app's intake trails the senders: the last event in after the last send.
        "receive_trail_s": events["last_received_at"] - (since + send_s),
        "backlog_samples": watch.samples,
        "sink": esp_sink.tally(counts, delivery_ids(url, campaign)),
        "statuses": statuses(url, campaign),
        "members": dict(members.counts),
        "members_requests_per_s": harness.rate(
            2 * sum(members.counts.values()), members.t_end - members.t0
        ),
        "members_p50_ms": 1000 * harness.median(members.latencies) if members.latencies else 0,
    }


# --- Phase 7: the suppression snapshot ---------------------------------------------------------


def suppressions_export(url: str) -> dict:
    path = harness.OUT_DIR / "e2e-suppressions.csv"
    run = harness.manage(
        "export_suppressions", "--purpose", PURPOSE, "--format", "csv", "--output", str(path),
        env=harness.django_env(url),
    )  # fmt: skip
    with path.open() as f:
        rows = sum(1 for _ in f) - 1  # the header
    return {"seconds": run.seconds, "rows": rows, "peak_rss_mb": run.peak_rss_mb}


# --- Report -------------------------------------------------------------------------------------


def report(r: dict) -> dict:
    main, best = r["main"], r["best"]
    ev = main["events"]
    rss = r["rss"]
    sender_main = rss.get("sender worker", {}).get("max_process_mb", 0.0)
    sender_small = rss.get(f"sender worker, sweep x{best}", {}).get("max_process_mb", 0.0)
    flat = sender_main <= sender_small * RSS_FLAT_FACTOR + RSS_FLAT_SLACK_MB
    print(
        f"End to end, {r['members']:,} members, {os.cpu_count()} CPUs, load average"
        f" {r['load']:.1f} at the start, {r['load_end']:.1f} at the end\n"
    )
    print(table(["phase", "wall s", "figure"], [
        ["1. import_members", fmt_s(r["import"]["seconds"]),
         f"{fmt_rate(harness.rate(r['import']['rows'], r['import']['seconds']))} rows/s"],
        ["2. create, approve, schedule (services)", fmt_s(main["launch_s"]), "two staff users"],
        ["3. start + fan-out (tasks on workers)", fmt_s(main["fanout_s"]),
         f"{fmt_rate(harness.rate(main['deliveries'], main['fanout_s']))} deliveries/s"],
        [f"4./5. send x{best} + webhooks (from the start)", fmt_s(main["send_s"]),
         f"{fmt_rate(main['messages_per_s'])} messages/s"],
        ["   last event processed (from the start)", fmt_s(main["whole_s"]), ""],
        ["7. export_suppressions (csv)", fmt_s(r["export"]["seconds"]),
         f"{r['export']['rows']:,} rows"],
    ]))  # fmt: skip
    print(
        f"\nSend rate by sender processes ({r['sweep'][0]['messages']:,}-message campaigns,"
        f" webhooks in {r['shapes']['sweep']}'s shape; the full campaign used x{best},"
        " the best here):"
    )
    print(table(["processes", "messages/s", "events recv/s", "processed/s",
                 "recv after send s", "processed after recv s", "dup", "missing"], [
        [s["processes"], fmt_rate(s["messages_per_s"]), fmt_rate(s["events"]["received_per_s"]),
         fmt_rate(s["events"]["processed_per_s"]), f"{s['receive_trail_s']:.1f}",
         f"{s['events']['trail_s']:.1f}",
         s["sink"]["duplicates"], s["sink"]["missing"]]
        for s in r["sweep"]
    ]))  # fmt: skip
    shape = r["shapes"]["main"]
    print(
        f"\nWebhooks of the full campaign ({shape}'s shape,"
        f" {esp_sink.SHAPES[shape][1]} event(s) per POST):"
    )
    print(table(["figure", "value"], [
        ["events expected / stored / unprocessed", f"{ev['expected']:,} / {ev['stored']:,} /"
         f" {ev['unprocessed']:,}"],
        ["received events/s (first to last received)", fmt_rate(ev["received_per_s"])],
        ["processed events/s (first received to last processed)",
         fmt_rate(ev["processed_per_s"])],
        ["no-op ceiling events/s, same gunicorn (100 / 1 per POST)",
         f"{fmt_rate(r['ceiling']['sendgrid'])} / {fmt_rate(r['ceiling']['postmark'])}"],
        ["backlog at the ESP, produced but not yet taken (max)",
         f"{main['max_sink_backlog']:,}"],
        ["backlog in the app, stored but unprocessed (max)", f"{main['max_backlog']:,}"],
        ["last event received - last message sent", f"{main['receive_trail_s']:.1f} s"],
        ["last processed - last received", f"{ev['trail_s']:.1f} s"],
    ]))  # fmt: skip
    print(f"backlog over the run, at the ESP / in the app: {backlog_line(main['backlog_samples'])}")
    m = main["members"]
    print(
        f"\nMembers on the notice page (GET then POST, {MEMBER_THREADS} at a time):"
        f" {m}, {fmt_rate(main['members_requests_per_s'])} requests/s,"
        f" p50 {main['members_p50_ms']:.0f} ms per GET+POST"
    )
    print("\nPeak RSS per process type (largest process; all of the type at once):")
    print(table(["type", "MB", "processes", "all MB"], [
        [kind, fmt_mb(v["max_process_mb"]), v["processes"], fmt_mb(v["peak_total_mb"])]
        for kind, v in sorted(rss.items())
    ]))  # fmt: skip
    z = r["sizes"]
    print(
        f"\nPostgreSQL per million deliveries: deliveries {fmt_mb(z['deliveries_mb_per_m'])} MB,"
        f" events {fmt_mb(z['events_mb_per_m'])} MB, ledger {fmt_mb(z['ledger_mb_per_m'])} MB,"
        f" database {fmt_mb(z['total_mb_per_m'])} MB ({z['deliveries']:,} deliveries in all)"
    )
    print(
        f"PostgreSQL CPU for the main campaign: {main['postgres_cpu_s']:.0f} s,"
        f" {main['postgres_cpu_ms_per_delivery']:.2f} ms per delivery (its events and the"
        f" members' choices included), {main['postgres_cpu_s'] / main['whole_s']:.2f} cores"
        " on average"
    )
    s = main["sink"]
    print(
        f"Sink: {s['messages']:,} messages for {main['deliveries']:,} deliveries;"
        f" duplicates {s['duplicates']}, missing {s['missing']}; statuses {main['statuses']}"
    )
    in_time = main["whole_s"] < TARGET_CAMPAIGN_SECONDS and ev["unprocessed"] == 0
    targets = {
        "whole campaign < 25 min": (main["whole_s"], "< 1500 s", in_time),
        "processing trails receipt < 5 min": (ev["trail_s"], "< 300 s",
                                              ev["trail_s"] < TARGET_TRAIL_SECONDS),
        "sink duplicates == 0": (s["duplicates"], "0", s["duplicates"] == 0),
        "sink missing == 0": (s["missing"], "0", s["missing"] == 0),
        "sender RSS flat (full vs SCALE/10)": (f"{sender_main:.0f} vs {sender_small:.0f} MB",
                                               "within 10%", flat),
    }  # fmt: skip
    print()
    print(table(["target", "measured", "goal", ""], [
        [name, f"{v:,.1f}" if isinstance(v, float) else v, goal, verdict(ok)]
        for name, (v, goal, ok) in targets.items()
    ]))  # fmt: skip
    return {name: {"measured": v, "target": goal, "pass": ok}
            for name, (v, goal, ok) in targets.items()}  # fmt: skip


def backlog_line(samples: list) -> str:
    """The backlogs at ten evenly spaced polls: "<t>s: <at the sink>/<unprocessed>"."""
    if not samples:
        return "no samples"
    picks = (
        [samples[i * (len(samples) - 1) // 9] for i in range(10)] if len(samples) > 10 else samples
    )
    return ", ".join(f"{t:.0f}s: {sink:,}/{unprocessed:,}" for t, _, unprocessed, _, sink in picks)


# --- Main ---------------------------------------------------------------------------------------


def run(args) -> dict:
    out = harness.OUT_DIR / "e2e"
    settings = private_services.production_settings()
    with private_services.postgres_running(out / "postgres", settings) as server:
        harness.progress(
            f"PostgreSQL of its own on port {server.port} (deploy/postgresql.conf); "
            f"database {DATABASE}: create and migrate; Redis db 8 flushed"
        )
        url = server.database_create(DATABASE)
        harness.database_migrate(url)
        return run_on(args, url, server)


def run_on(args, url: str, server: private_services.PrivatePostgres) -> dict:
    members = scale()
    redis_flush()
    results: dict = {"members": members, "load": os.getloadavg()[0]}
    results["shapes"] = {"main": args.main_shape, "sweep": args.sweep_shape}
    results["import"] = members_import(url, members)
    web_port, sink_port = esp_sink.free_port(), esp_sink.free_port()
    env_for = lambda senders: app_env(url, web_port, sink_port, senders)  # noqa: E731
    env = env_for(2)
    campaign_setup.django_start(url, **{k: v for k, v in env.items() if k not in os.environ})
    author, approver = staff_users()
    out = harness.OUT_DIR / "e2e"
    load_driver.sigterm_unwinds()
    with processes.Rig(out / "logs") as rig:
        rig.web(env=env, port=web_port, workers=WEB_WORKERS, app="load_driver:wsgi_app()")
        rig.worker(env=env, queues="celery", concurrency=1, name="events", kind="events worker")
        rig.beat(env=env)
        results["ceiling"] = {shape: noop_ceiling(web_port, shape) for shape in esp_sink.SHAPES}
        feed = feed_options(env, web_port, args.sweep_shape)
        with esp_sink.Sink(out / "sink-sweep", SINK_PROCESSES, feed, port=sink_port) as sink:
            for proc in sink.procs:
                rig.adopt("sink", proc)
            results["sweep"] = sweep(args, url, rig, env_for, sink)
        best = max(results["sweep"], key=lambda s: s["messages_per_s"])["processes"]
        results["best"] = best
        rig.worker(env=env_for(best), queues="bulk", concurrency=best, name="senders",
                   kind="sender worker")  # fmt: skip
        feed = feed_options(env, web_port, args.main_shape)
        with esp_sink.Sink(out / "sink-main", SINK_PROCESSES, feed, port=sink_port) as sink:
            for proc in sink.procs:
                rig.adopt("sink", proc)
            results["main"] = main_campaign(
                args, url, rig, env, sink, web_port, (author, approver), server
            )
        results["rss"] = rig.peak_rss()
        if args.keep:
            input(f"processes up (logs in {out / 'logs'}): Enter to stop ")
    results["export"] = suppressions_export(url)
    results["sizes"] = sizes(url)
    results["load_end"] = os.getloadavg()[0]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,2,4", help="sender processes to sweep")
    parser.add_argument("--keep", action="store_true", help="leave processes up until Enter")
    shapes = sorted(esp_sink.SHAPES)
    parser.add_argument(
        "--main-shape",
        choices=shapes,
        default="sendgrid",
        help="webhook shape of the full campaign (default: 100 per POST)",
    )
    parser.add_argument(
        "--sweep-shape",
        choices=shapes,
        default="postmark",
        help="webhook shape of the sweep's campaigns (default: 1 per POST)",
    )
    args = parser.parse_args()
    args.counts = [int(c) for c in args.counts.split(",")]
    harness.OUT_DIR.mkdir(parents=True, exist_ok=True)
    results = run(args)
    results["targets"] = report(results)
    path = harness.save_results("e2e", results)
    print(f"\n(figures saved to {path.relative_to(harness.ROOT)})")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
