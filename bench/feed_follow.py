"""Benchmark: following the suppression feed over HTTP, pages of 10,000 entries.

Set-up (bench/feed_setup.py): SCALE members (default 100,000) written in SQL and a
purpose made through the app, whose commit syncs the feed: SCALE entries, one per
member. gunicorn serves the app with one sync worker.

Each round follows the whole feed from cursor 0 (GET ``/api/v1/suppressions/
bench-feed/changes?after=<cursor>&limit=10000`` until ``has_more`` is false), each
page parsed as JSON as a client would: entries/s.

Usage: SCALE=100000 .venv/bin/python bench/feed_follow.py [--repeat R]
"""

import argparse
import os

import feed_setup
import harness
import load_driver
from harness import fmt_rate, median, rate, table, verdict

DATABASE = "renotify_bench_feed"
PORT = 8772
PAGE = 10_000
TARGET_ENTRIES_PER_S = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (median reported)")
    args = parser.parse_args()
    members = int(os.environ.get("SCALE", "100000"))
    load_driver.sigterm_unwinds()
    url = feed_setup.feed_start(DATABASE, members=members)
    harness.progress("bench-feed: purpose and the first entries of every member")
    _purpose, sync_seconds = feed_setup.purpose_with_entries("bench-feed", mode="opt_out")
    feed_setup.analyse(url)
    key = feed_setup.api_key()
    server = feed_setup.server_start(url, port=PORT, name="feed_follow")
    try:
        seconds, entries = [], 0
        for round_ in range(args.repeat):
            harness.progress(f"round {round_ + 1}/{args.repeat}")
            follow = feed_setup.changes_follow(PORT, "bench-feed", key, page=PAGE)
            entries = follow.rows
            seconds.append(follow.seconds)
    finally:
        harness.process_stop(server)

    entries_rate = rate(entries, median(seconds))
    ok = entries_rate >= TARGET_ENTRIES_PER_S
    print(f"feed follow: {entries:,} entries in pages of {PAGE:,}, median of {args.repeat}")
    print(f"first entries written by the app's sync: {members:,} members in {sync_seconds:.1f} s")
    print(f"rounds (s): {' '.join(f'{s:.2f}' for s in seconds)}")
    print(
        table(
            ["target", "measured", "target", "result"],
            [["entries/s", fmt_rate(entries_rate), f">= {TARGET_ENTRIES_PER_S:,}", verdict(ok)]],
        )
    )
    results = {
        "entries": entries,
        "repeat": args.repeat,
        "sync_seconds": sync_seconds,
        "seconds": seconds,
        "targets": {
            "entries/s": {
                "measured": entries_rate,
                "target": f">= {TARGET_ENTRIES_PER_S:,}",
                "pass": ok,
            }
        },
    }
    path = harness.save_results("feed_follow", results)
    print(f"\n(figures also in {path.relative_to(harness.ROOT)})")


if __name__ == "__main__":
    main()
