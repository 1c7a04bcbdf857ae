"""Benchmark: a purpose's suppression snapshot over HTTP against a raw COPY of the same
query, and the web worker's peak RSS at two sizes.

Set-up (bench/feed_setup.py): SCALE members (default 1,000,000) written in SQL, and two
purposes made through the app, whose commit syncs the feed (timed: the first entry of
every member): ``bench-all`` excluded everywhere (every member suppressed) and
``bench-tenth`` opt-out everywhere with one member in ten objecting (Preference rows
written in SQL, then the app's ``suppression_feed_sync``). gunicorn serves the app with
one sync worker.

Each round, paired so both sides see the same noise:

1. the snapshot of ``bench-all`` over HTTP (GET ``/api/v1/suppressions/bench-all/
   snapshot``), read to the end by this process: rows/s;
2. the floor: ``psql -c "COPY (same query) TO STDOUT ..."`` into /dev/null: the
   statement the endpoint runs (``db.suppression_feed.snapshot_ndjson_copy_sql``),
   no HTTP, no Python.

The worker's peak RSS (VmHWM) is read after a download of ``bench-tenth`` (SCALE/10
rows) and again after those of ``bench-all`` (SCALE rows): flat means the second is
within 10% (and 5 MB) of the first.

Usage: SCALE=1000000 .venv/bin/python bench/suppression_snapshot.py [--repeat R]
"""

import argparse
import os
import subprocess
import time

import feed_setup
import harness
import load_driver
from harness import fmt_rate, median, rate, table, verdict

DATABASE = "renotify_bench_snapshot"
PORT = 8771
TARGET_ROWS_PER_S = 200_000
TARGET_COPY_SHARE = 0.30
RSS_FLAT_FACTOR = 1.10
RSS_FLAT_SLACK_MB = 5
OBJECTED_EVERY = 10

PREFERENCES_SEED = """
INSERT INTO accounts_preference (member_id, purpose_id, choice, chosen_at)
SELECT id, %s, 'out', created_at + interval '1 day'
FROM accounts_member WHERE id %% {every} = 0
"""


def setup(members: int):
    url = feed_setup.feed_start(DATABASE, members=members)
    harness.progress("bench-all: purpose and the first entries of every member")
    everyone, sync_all = feed_setup.purpose_with_entries("bench-all", mode="excluded")
    harness.progress("bench-tenth: purpose, one in ten objecting")
    tenth, sync_tenth = feed_setup.purpose_with_entries("bench-tenth", mode="opt_out")
    with harness.connect(url) as conn:
        conn.execute(PREFERENCES_SEED.format(every=OBJECTED_EVERY), [tenth.pk])
        conn.commit()
    from accounts.services.suppression_feed import suppression_feed_sync

    started = time.perf_counter()
    suppression_feed_sync(purpose=tenth)
    resync = time.perf_counter() - started
    feed_setup.analyse(url)
    return url, everyone, {"bench-all": sync_all, "bench-tenth": sync_tenth, "objections": resync}


def copy_floor(url: str, purpose_id: int) -> float:
    from db.suppression_feed import snapshot_ndjson_copy_sql

    statement = snapshot_ndjson_copy_sql(purpose_id=purpose_id)
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run(["psql", url, "-X", "-q", "-c", statement], stdout=sink, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (median reported)")
    args = parser.parse_args()
    members = int(os.environ.get("SCALE", "1000000"))
    load_driver.sigterm_unwinds()
    url, everyone, syncs = setup(members)
    key = feed_setup.api_key()
    server = feed_setup.server_start(url, port=PORT, name="suppression_snapshot")
    try:
        small = feed_setup.snapshot_download(PORT, "bench-tenth", key)
        rss_small = feed_setup.worker_peak_rss_mb(server.pid)
        http_s, floor_s, rows = [], [], 0
        for round_ in range(args.repeat):
            harness.progress(f"round {round_ + 1}/{args.repeat}")
            download = feed_setup.snapshot_download(PORT, "bench-all", key)
            rows = download.rows
            http_s.append(download.seconds)
            floor_s.append(copy_floor(url, everyone.pk))
        rss_big = feed_setup.worker_peak_rss_mb(server.pid)
    finally:
        harness.process_stop(server)

    http_rate, floor_rate = rate(rows, median(http_s)), rate(rows, median(floor_s))
    share = http_rate / floor_rate
    flat = rss_big <= max(rss_small * RSS_FLAT_FACTOR, rss_small + RSS_FLAT_SLACK_MB)
    targets = [
        ("snapshot over HTTP rows/s", http_rate, f">= {TARGET_ROWS_PER_S:,}",
         http_rate >= TARGET_ROWS_PER_S),
        ("HTTP / raw COPY", share, f">= {TARGET_COPY_SHARE:.2f}", share >= TARGET_COPY_SHARE),
        ("worker peak RSS flat (MB)", f"{rss_small:.0f} -> {rss_big:.0f}",
         f"<= +{RSS_FLAT_FACTOR - 1:.0%}", flat),
    ]  # fmt: skip
    print(f"suppression snapshot: {members:,} members suppressed, median of {args.repeat}")
    print(
        f"first entries written by the app's sync: {members:,} members in"
        f" {syncs['bench-all']:.1f} s; one in ten objecting: {syncs['objections']:.1f} s"
    )
    print(f"snapshot {small.rows:,} rows (bench-tenth): {small.seconds:.2f} s")
    print(table(
        ["", "median s", "rows/s"],
        [["HTTP", f"{median(http_s):.2f}", fmt_rate(http_rate)],
         ["raw COPY", f"{median(floor_s):.2f}", fmt_rate(floor_rate)]],
    ))  # fmt: skip
    print(table(["target", "measured", "target", "result"],
                [[n, fmt_rate(m) if isinstance(m, float) and m > 10 else
                  (f"{m:.2f}" if isinstance(m, float) else m), g, verdict(ok)]
                 for n, m, g, ok in targets]))  # fmt: skip
    results = {
        "members": members,
        "repeat": args.repeat,
        "sync_seconds": syncs,
        "http_seconds": http_s,
        "copy_seconds": floor_s,
        "rss_mb": {"small": rss_small, "big": rss_big},
        "targets": {n: {"measured": m, "target": g, "pass": ok} for n, m, g, ok in targets},
    }
    path = harness.save_results("suppression_snapshot", results)
    print(f"\n(figures also in {path.relative_to(harness.ROOT)})")


if __name__ == "__main__":
    main()
