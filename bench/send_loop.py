"""Benchmark: one worker process's send loop, end to end per delivery, against a bare
loop sending the identical messages through the same backend.

Members (all reachable; countries and locales weighted as in ``population``) are
written in SQL to a database of this script's own; the notice is a few hundred
words of Markdown (headings, lists, links) in five languages (en, de, fr, es, pl;
other locales fall back to English). For each backend and round, three child
processes run one after the other:

1. prep (not timed): a campaign in state "sending" for the first N members, throttle
   10,000,000/min (so the shared Redis throttle grants every take at once), and its
   fan-out;
2. app: ``campaign_send_chunk(campaign_id=...)`` called in a loop until a call claims
   nothing: claim, render (templates compiled once per campaign x locale), sign the
   two tokens, send (one ``send_messages`` per delivery, as the app does), record.
   The loop is timed; the process's peak RSS is read by GNU time;
3. floor: the same deliveries in id order, each message built untimed by the app's
   own code (``sending._Sender._message``: same subject, bodies, headers, metadata),
   500 at a time; then only the sending is timed: a bare loop calling
   ``send_messages([message])`` per message on one connection opened beforehand.

App and floor alternate which runs first. Backends:

(a) sink: ``campaign_setup.SinkBackend`` serialises each message with
    ``message.message().as_bytes()`` (as SMTP must) and counts messages and bytes;
    the byte totals of app and floor are compared (the Date header has a fixed width);
(b) esp: django-anymail's Postmark backend (ANYMAIL_POSTMARK_SERVER_TOKEN and
    ANYMAIL_POSTMARK_API_URL) against the fake Postmark API of ``esp_sink`` started by
    this script on 127.0.0.1 (an asyncio HTTP/1.1 server with keep-alive in a process
    of its own, here without its log and webhook feeder,
    answering each POST with Postmark's send response: To, SubmittedAt, MessageID,
    ErrorCode 0), which counts requests, body bytes and TCP connections. It is
    stopped by pid however the run ends.

Peak RSS of the app process at N and N/10 members shows whether memory grows with
the audience. Medians of the rounds are printed, with the median of each round's
app/floor ratio.

Usage: .venv/bin/python bench/send_loop.py [--rows N] [--small-rows n] [--repeat R]
           [--backends sink,esp] [--profile]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import campaign_setup
import harness
from esp_sink import esp_start, esp_stats, esp_stop, free_port
from harness import fmt_mb, fmt_rate, fmt_s, median, table, verdict

DATABASE = "renotify_bench_send"
REDIS_URL = "redis://127.0.0.1:6379/6"
THROTTLE = 10_000_000  # per minute: the throttle never makes the loop wait
FLOOR_BATCH = 500  # messages built (untimed) before each timed bare-loop stretch
TARGET_FLOOR_SHARE = 0.60
TARGET_SINK_RATE = 1_000
# "Flat": peak RSS at N members within 10% (and 5 MB) of that at N/10.
RSS_FLAT_FACTOR = 1.10
RSS_FLAT_SLACK_MB = 5
SCRIPT = str(Path(__file__).resolve())
BACKENDS = {
    "sink": "campaign_setup.SinkBackend",
    "esp": "anymail.backends.postmark.EmailBackend",
}


# --- Child processes (Django configured by the parent's environment) -------------------------


def _django() -> None:
    sys.path.insert(0, str(harness.ROOT))
    import django

    django.setup()


def _emit(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def child_prep(audience: int) -> None:
    _django()
    from campaigns.services.fanout import campaign_fan_out

    campaign = campaign_setup.campaign_create(
        state="sending", throttle_per_minute=THROTTLE, audience=audience
    )
    added = campaign_fan_out(campaign=campaign)
    _emit({"campaign": campaign.pk, "deliveries": added})


def child_app(campaign_id: int, profile: bool) -> None:
    _django()
    from django.db import connection

    from campaigns.services.sending import campaign_send_chunk

    connection.ensure_connection()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    chunks = sent = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    while (outcome := campaign_send_chunk(campaign_id=campaign_id)).claimed:
        chunks += 1
        sent += outcome.sent
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
    _emit(
        {
            "sent": sent,
            "chunks": chunks,
            "seconds": seconds,
            "cpu_seconds": cpu,
            "sink_messages": campaign_setup.SinkBackend.messages,
            "sink_bytes": campaign_setup.SinkBackend.bytes,
        }
    )


def child_floor(campaign_id: int) -> None:
    _django()
    from django.core.mail import get_connection

    from campaigns.models import Campaign, Delivery
    from campaigns.services.sending import Claimed, _Sender

    def _claimed(pk: int, wave: int, attempts: int, email: str, locale: str) -> Claimed:
        return Claimed(
            id=pk, wave=wave, attempts=attempts, email=email, locale=locale, reachable=True
        )

    campaign = Campaign.objects.select_related("notice_version").get(pk=campaign_id)
    builder = _Sender(campaign)  # the app's own message building, used untimed
    rows = (
        Delivery.objects.filter(campaign_id=campaign_id)
        .order_by("id")
        .values_list("id", "wave", "attempts", "member__email", "member__locale")
        .iterator(chunk_size=FLOOR_BATCH)
    )
    transport = get_connection(fail_silently=False)
    transport.open()
    sent, seconds, cpu, batch = 0, 0.0, 0.0, []

    def flush() -> None:
        nonlocal sent, seconds, cpu
        messages = [builder._message(_claimed(*row))[0] for row in batch]
        started, cpu_started = time.perf_counter(), time.process_time()
        for message in messages:
            sent += transport.send_messages([message])
        seconds += time.perf_counter() - started
        cpu += time.process_time() - cpu_started
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) == FLOOR_BATCH:
            flush()
    if batch:
        flush()
    transport.close()
    builder.close()
    _emit(
        {
            "sent": sent,
            "seconds": seconds,
            "cpu_seconds": cpu,
            "sink_messages": campaign_setup.SinkBackend.messages,
            "sink_bytes": campaign_setup.SinkBackend.bytes,
        }
    )


# --- The parent: data, children, figures ------------------------------------------------------


def _child(env: dict[str, str], *args: str) -> tuple[dict, harness.Run]:
    run = harness.measure([harness.PYTHON, SCRIPT, "--child", *args], env=env)
    for line in reversed(run.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT ")), run
    raise SystemExit(f"no result from child {args}:\n{run.stdout}\n{run.stderr}")


def deliveries_settle(conn, campaign_id: int, expect: int) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT status, count(*) FROM campaigns_delivery WHERE campaign_id = %s"
            " GROUP BY status",
            [campaign_id],
        )
        statuses = dict(cur.fetchall())
    conn.commit()
    if statuses != {"sent": expect}:
        raise SystemExit(f"campaign {campaign_id}: deliveries {statuses}, expected {expect} sent")


def deliveries_clear(conn) -> None:
    conn.execute("TRUNCATE campaigns_delivery CASCADE")
    conn.commit()
    harness.checkpoint(conn)


def measurement(conn, env, backend: str, size: int, *, floor: bool, order: int, port: int):
    """prep, then app and (when ``floor``) floor in the order given: a dict of figures."""
    prep, _ = _child(env, "prep", "--audience", str(size))
    campaign, figures = prep["campaign"], {"size": size}
    if prep["deliveries"] != size:
        raise SystemExit(f"fan-out made {prep['deliveries']} deliveries, expected {size}")
    steps = ["app", "floor"] if floor else ["app"]
    for step in steps if order % 2 == 0 else reversed(steps):
        harness.checkpoint(conn)
        if backend == "esp":
            esp_stats(port, reset=True)
        harness.progress(f"{backend} {size:,}: {step}")
        result, run = _child(env, step, "--campaign", str(campaign))
        if result["sent"] != size:
            raise SystemExit(f"{step} sent {result['sent']} of {size}: {run.stderr[-2000:]}")
        if backend == "esp":
            result["esp"] = esp_stats(port)
        figures[step] = {**result, "rss_mb": run.peak_rss_mb}
        if step == "app":
            deliveries_settle(conn, campaign, size)
    deliveries_clear(conn)
    return figures


def backend_env(url: str, backend: str, port: int) -> dict[str, str]:
    return campaign_setup.django_env(
        url,
        REDIS_URL=REDIS_URL,
        EMAIL_BACKEND=BACKENDS[backend],
        ANYMAIL_POSTMARK_SERVER_TOKEN="bench-server-token",
        ANYMAIL_POSTMARK_API_URL=f"http://127.0.0.1:{port}/",
        PYTHONPATH=os.pathsep.join([str(harness.ROOT), str(Path(SCRIPT).parent)]),
    )


def report(rows: int, small_rows: int, results: dict) -> tuple[str, dict]:
    lines, summary, targets = [], {}, {}
    for backend, runs in results.items():
        big = [r for r in runs if r["size"] == rows]
        small = [r for r in runs if r["size"] == small_rows]
        app_s = [r["app"]["seconds"] for r in big]
        floor_s = [r["floor"]["seconds"] for r in big]
        ratios = [f / a for f, a in zip(floor_s, app_s, strict=True)]
        share = median(ratios)
        app_rate, floor_rate = rows / median(app_s), rows / median(floor_s)
        rss_big = median([r["app"]["rss_mb"] for r in big])
        rss_small = median([r["app"]["rss_mb"] for r in small])
        flat = rss_big <= rss_small * RSS_FLAT_FACTOR + RSS_FLAT_SLACK_MB
        per_message_us = (median(app_s) - median(floor_s)) / rows * 1e6
        cpu_share = median([r["floor"]["cpu_seconds"] / r["app"]["cpu_seconds"] for r in big])
        lines += [
            f"({backend}) {BACKENDS[backend]}",
            table(
                ["", "messages", "median s", "msg/s", "us/msg", "runs (s)"],
                [
                    [
                        name,
                        f"{rows:,}",
                        fmt_s(median(values)),
                        fmt_rate(rows / median(values)),
                        f"{median(values) / rows * 1e6:,.0f}",
                        " ".join(fmt_s(v) for v in values),
                    ]
                    for name, values in (
                        ("floor: bare loop, same messages", floor_s),
                        ("app: campaign_send_chunk loop", app_s),
                    )
                ],
            ),
            f"  app / floor (median of paired rounds): {share:.0%}"
            f" (rounds: {', '.join(f'{r:.0%}' for r in ratios)})"
            f"   target >= {TARGET_FLOOR_SHARE:.0%}: {verdict(share >= TARGET_FLOOR_SHARE)}",
            f"  app overhead over the floor: {per_message_us:,.0f} us per message;"
            f" on this process's CPU time alone (less noisy) app / floor is {cpu_share:.0%}",
        ]
        if backend == "sink":
            lines.append(
                f"  app msg/s: {fmt_rate(app_rate)}"
                f"   target >= {TARGET_SINK_RATE:,}: {verdict(app_rate >= TARGET_SINK_RATE)}"
            )
            same = all(r["app"]["sink_bytes"] == r["floor"]["sink_bytes"] for r in big)
            lines.append(f"  app and floor serialised the same bytes: {'yes' if same else 'NO'}")
        else:
            esp_app, esp_floor = big[0]["app"]["esp"], big[0]["floor"]["esp"]
            lines.append(
                f"  fake ESP saw: app {esp_app['requests']:,} requests over"
                f" {esp_app['connections']:,} TCP connections ({esp_app['bytes']:,} bytes);"
                f" floor {esp_floor['requests']:,} over {esp_floor['connections']:,}"
                f" ({esp_floor['bytes']:,} bytes)"
            )
        lines += [
            f"  app peak RSS: {fmt_mb(rss_small)} MB at {small_rows:,} members,"
            f" {fmt_mb(rss_big)} MB at {rows:,}   target flat: {verdict(flat)}",
            "",
        ]
        targets[f"{backend}: app / floor"] = harness.target(
            share, f">= {TARGET_FLOOR_SHARE:.2f}", share >= TARGET_FLOOR_SHARE
        )
        if backend == "sink":
            targets["sink: app msg/s"] = harness.target(
                app_rate, f">= {TARGET_SINK_RATE:,}", app_rate >= TARGET_SINK_RATE
            )
        targets[f"{backend}: app peak RSS MB, {small_rows:,} -> {rows:,}"] = harness.target(
            f"{fmt_mb(rss_small)} -> {fmt_mb(rss_big)}", "flat", flat
        )
        summary[backend] = {
            "app_seconds": app_s,
            "floor_seconds": floor_s,
            "app_msgs_per_s": app_rate,
            "floor_msgs_per_s": floor_rate,
            "app_share_of_floor": share,
            "app_share_of_floor_cpu": cpu_share,
            "rss_mb": {str(small_rows): rss_small, str(rows): rss_big},
            "runs": runs,
        }
    return "\n".join(lines), {"rows": rows, "small_rows": small_rows, **summary, "targets": targets}


def parent(args) -> None:
    url = campaign_setup.database_url(DATABASE)
    harness.progress(f"database {DATABASE}: recreate and migrate")
    campaign_setup.database_prepare(url)
    conn = harness.connect(url)
    harness.progress(f"members: {args.rows:,}")
    campaign_setup.members_seed(conn, reachable=args.rows)
    port = free_port()
    esp = esp_start(port) if "esp" in args.backends else None
    results: dict[str, list] = {backend: [] for backend in args.backends}
    try:
        if args.profile:
            env = backend_env(url, args.backends[0], port)
            prep, _ = _child(env, "prep", "--audience", str(args.small_rows))
            _, run = _child(env, "app", "--campaign", str(prep["campaign"]), "--profile")
            print(run.stderr)
            deliveries_clear(conn)
            return
        for round_no in range(args.repeat):
            for backend in args.backends:
                env = backend_env(url, backend, port)
                for size, floor in ((args.rows, True), (args.small_rows, False)):
                    results[backend].append(
                        measurement(
                            conn, env, backend, size, floor=floor, order=round_no, port=port
                        )
                    )
    finally:
        if esp is not None:
            esp_stop(esp)
        conn.close()
    text, summary = report(args.rows, args.small_rows, results)
    print(f"Send loop, one worker process, {args.repeat} rounds\n")
    print(text)
    print(f"(figures also in {harness.save_results('send_loop', summary)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="messages per timed run")
    parser.add_argument("--small-rows", type=int, help="audience for the RSS comparison")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--backends", default="sink,esp", help="sink, esp or both")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead: cProfile one app run of --small-rows to stderr",
    )
    parser.add_argument("--child", choices=["prep", "app", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--audience", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--campaign", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.small_rows = args.small_rows or max(1, args.rows // 10)
    if args.child == "prep":
        child_prep(args.audience)
    elif args.child == "app":
        child_app(args.campaign, args.profile)
    elif args.child == "floor":
        child_floor(args.campaign)
    else:
        parent(args)


if __name__ == "__main__":
    main()
