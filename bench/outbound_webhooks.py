"""Benchmark: outbound webhooks, what beat's every-few-seconds runs cost when idle, how
fast the ledger becomes deliveries and deliveries become POSTs, and how long a run
with a dead endpoint takes.

In a database of this script's own (PostgreSQL), with Django in this process:

1. **Idle runs**: ``webhook_events_dispatch()`` with no new ledger event and
   ``webhook_deliveries_send_due()`` with nothing due, each run 200 times: the median
   milliseconds, and the share of one worker the two take at beat's interval
   (``RENOTIFY_WEBHOOK_SECONDS``), which is what the interval costs when nothing
   happens.
2. **Dispatch**: E ledger events (objections, ``--events``, default 20,000; written in SQL
   after the members, with placeholder hashes: the dispatcher never reads the chain)
   for 3 endpoints: the follower is set back and ``webhook_events_dispatch()`` called
   until it has caught up; deliveries made per second (median of the rounds).
3. **Sending**: D deliveries (a tenth of E: 2,000) to one endpoint served by a
   receiver in a process of its own (ThreadingHTTPServer answering 204), sent by
   ``webhook_deliveries_send_due()`` runs until none is due; deliveries per second, what
   one worker sustains.
4. **A dead endpoint**: 50 deliveries to an endpoint that takes connections and never
   answers (a listening socket nobody accepts from) and 50 to the live receiver, one
   run, with the default timeout and budget: its wall time (at most the budget), and
   how many of each were sent.

No targets (the issue sets none for webhooks): figures only. Every process started is
stopped by its pid.

Usage: .venv/bin/python bench/outbound_webhooks.py [--events E] [--repeat R]
"""

import argparse
import socket
import subprocess
import sys
import time

import campaign_setup
import harness
from harness import fmt_rate, median, rate, table

DATABASE = "renotify_bench_outbound_webhooks"
SENDS_EVERY = 10  # the sending rounds send one delivery in ten of the events' count
ENDPOINTS = 3
IDLE_RUNS = 200
DEAD_BACKLOG = 50

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        return None  # quiet: the benchmark reads no access log

server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
print(server.server_port, flush=True)
server.serve_forever()
"""

# Objections by the first E members, seq 1..E, with placeholder hashes.
EVENTS_SQL = """
INSERT INTO accounts_consentevent (seq, member_id, purpose_id, action, source,
    created_at, ip_hash, user_agent, comment, metadata, prev_hash, hash)
SELECT g, m.id, %(purpose)s, 'object', 'preference-page', now(), '', '', '', '{}',
    repeat('0', 64), repeat('0', 64)
FROM generate_series(1, %(events)s) AS g JOIN accounts_member m ON m.id = g
"""


def receiver_start() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [harness.PYTHON, "-c", RECEIVER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/hooks"


def idle_runs() -> dict[str, float]:
    from api.services.webhook_sending import webhook_deliveries_send_due
    from api.services.webhooks import webhook_events_dispatch

    timings = {}
    for name, call in (
        ("dispatch", webhook_events_dispatch),
        ("deliver", webhook_deliveries_send_due),
    ):
        runs = []
        for _ in range(IDLE_RUNS):
            started = time.perf_counter()
            call()
            runs.append(time.perf_counter() - started)
        timings[name] = median(runs) * 1000
    return timings


def dispatch_round(events: int) -> float:
    from api.models import LedgerFollower, WebhookDelivery
    from api.services.webhooks import webhook_events_dispatch

    WebhookDelivery.objects.all().delete()
    LedgerFollower.objects.update(seq=0)
    started = time.perf_counter()
    caught_up = False
    while not caught_up:  # one batch per call, until the ledger's head
        caught_up = webhook_events_dispatch()[1]
    seconds = time.perf_counter() - started
    assert WebhookDelivery.objects.count() == events * ENDPOINTS
    return rate(events * ENDPOINTS, seconds)


def sending_round(live, sends: int) -> float:
    from django.utils import timezone

    from api.models import WebhookDelivery, WebhookState
    from api.services.webhook_sending import webhook_deliveries_send_due

    WebhookDelivery.objects.exclude(endpoint=live).delete()
    chosen = WebhookDelivery.objects.filter(endpoint=live).order_by("pk")[:sends]
    WebhookDelivery.objects.filter(pk__in=list(chosen.values_list("pk", flat=True))).update(
        state=WebhookState.PENDING, next_attempt_at=timezone.now()
    )
    WebhookDelivery.objects.filter(endpoint=live).exclude(pk__in=chosen).update(
        state=WebhookState.DELIVERED
    )
    started, sent = time.perf_counter(), 0
    while True:
        run = webhook_deliveries_send_due()
        sent += run.delivered
        if run.delivered + run.failed + run.postponed == 0:
            break
    return rate(sent, time.perf_counter() - started)


def dead_endpoint_run(client, live) -> dict[str, float]:
    from django.conf import settings
    from django.utils import timezone

    from api.models import WebhookDelivery, WebhookState
    from api.services.webhook_sending import webhook_deliveries_send_due
    from api.services.webhooks import webhook_endpoint_create

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(DEAD_BACKLOG * 2)
    try:
        dead, _ = webhook_endpoint_create(
            client=client, url=f"http://127.0.0.1:{listener.getsockname()[1]}/", by=None
        )
        WebhookDelivery.objects.all().delete()
        now = timezone.now()
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(
                endpoint=endpoint,
                event_seq=seq,
                event_type="preference.changed",
                payload={"id": f"evt_{seq}", "type": "preference.changed"},
                state=WebhookState.PENDING,
                next_attempt_at=now,
            )
            for endpoint in (dead, live)  # the dead one's are due first
            for seq in range(1, DEAD_BACKLOG + 1)
        )
        started = time.perf_counter()
        run = webhook_deliveries_send_due()
        seconds = time.perf_counter() - started
    finally:
        listener.close()
    return {
        "seconds": seconds,
        "budget": settings.RENOTIFY_WEBHOOK_BUDGET,
        "dead_attempts": run.failed,
        "live_delivered": run.delivered,
        "postponed": run.postponed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="ledger events (members)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    events, sends = args.events, max(1, args.events // SENDS_EVERY)

    url = campaign_setup.database_url(DATABASE)
    harness.progress(f"database {DATABASE}: {events:,} members and ledger events")
    campaign_setup.database_prepare(url)
    with harness.connect(url) as conn:
        campaign_setup.members_seed(conn, reachable=events)
    campaign_setup.django_start(url)

    from django.conf import settings
    from django.db import connection

    from accounts.models import Purpose
    from api.services.clients import api_client_create
    from api.services.webhooks import webhook_endpoint_create

    receiver, receiver_url = receiver_start()
    try:
        client, _ = api_client_create(name="bench", scopes=[], by=None)
        endpoints = [
            webhook_endpoint_create(client=client, url=receiver_url, by=None)[0]
            for _ in range(ENDPOINTS)
        ]
        harness.progress("idle runs")
        idle = idle_runs()
        with connection.cursor() as cursor:
            purpose = Purpose.objects.get(slug="ai-training").pk
            cursor.execute(EVENTS_SQL, {"purpose": purpose, "events": events})
        harness.progress(f"dispatch, {args.repeat} rounds")
        dispatch = [dispatch_round(events) for _ in range(args.repeat)]
        harness.progress(f"sending, {args.repeat} rounds")
        sending = [sending_round(endpoints[0], sends) for _ in range(args.repeat)]
        harness.progress("a dead endpoint")
        dead = dead_endpoint_run(client, endpoints[0])
    finally:
        harness.process_stop(receiver)

    interval = settings.RENOTIFY_WEBHOOK_SECONDS
    idle_share = (idle["dispatch"] + idle["deliver"]) / 1000 / interval
    print(f"outbound webhooks: {events:,} events, {sends:,} sends")
    print(
        table(
            ["figure", "measured"],
            [
                ["idle dispatch run (ms, median)", f"{idle['dispatch']:.2f}"],
                ["idle deliver run (ms, median)", f"{idle['deliver']:.2f}"],
                [f"idle share of one worker at {interval:g} s", f"{idle_share:.3%}"],
                [f"dispatch: deliveries/s ({ENDPOINTS} endpoints)", fmt_rate(median(dispatch))],
                ["sending: deliveries/s (one worker)", fmt_rate(median(sending))],
                ["dead endpoint run (s)", f"{dead['seconds']:.2f} (budget {dead['budget']:g})"],
                [
                    "dead endpoint run: dead attempts / live delivered",
                    f"{dead['dead_attempts']} / {dead['live_delivered']}",
                ],
            ],
        )
    )
    harness.save_results(
        "outbound_webhooks",
        {
            "events": events,
            "sends": sends,
            "idle_ms": idle,
            "idle_share": idle_share,
            "dispatch_per_s": dispatch,
            "sending_per_s": sending,
            "dead_endpoint": dead,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
