"""Run the benchmarks on PostgreSQL and print their figures.

    .venv/bin/python bench/run.py [--only NAME] [--rows N] [--repeat R]

Every benchmark by default (how long that takes: bench/README.md), one at a time so
that none disturbs another's figures; ``--only NAME`` runs one (``make bench
BENCH=NAME``). The import and export benchmarks share ``renotify_bench`` on the
server named by DATABASE_URL (when that is PostgreSQL) or on 127.0.0.1:5432; it is
dropped, created and migrated first. The others set up a database of their own
(``--rows``/``--repeat`` apply to the first two only; the rest run with their
defaults, see each script's docstring).
Each benchmark runs as a child process so that nothing it loads or allocates
carries over to the next; generated files go to var/bench/.
Figures are printed, never asserted: a MISS does not fail the run.
"""

import argparse
import json
import subprocess
import sys
import time

import harness
from psycopg import sql

SHARED_DATABASE = ("import_members", "export_suppressions")
# Each with its own database and defaults: issue #3 (campaign engine), #4 (webhooks),
# #5 (notice pages), #16 (outbound webhooks, member upsert, the suppression feed) and
# #17 (the console: its audience count, its dashboard and campaign page), #18 (the
# evidence pack) and #19 (the campaign end to end).
STANDALONE = (
    "fanout",
    "send_loop",
    "throttle_accuracy",
    "webhooks",
    "notice_pages",
    "outbound_webhooks",
    "member_upsert",
    "suppression_snapshot",
    "feed_follow",
    "audience_count",
    "console",
    "evidence",
    "evidence_report",
    "gates",
    "e2e",
)
BENCHMARKS = SHARED_DATABASE + STANDALONE
STANDALONE_ARGS = {
    "throttle_accuracy": ["--repeat", "3"],
    "evidence_report": ["--members", "1000000", "--repeat", "3"],
}
# ``--only evidence`` (issue #18's `make bench BENCH=evidence`) runs the packs and the
# effectiveness report, each on a 1M-member campaign seeded its own way (the report's
# data carries the feed and its consumers, which a pack does not need).
GROUPS = {"evidence": ("evidence", "evidence_report")}


def database_recreate(url: str) -> None:
    name = harness.database_name(url)
    maintenance = harness.with_database(url, "postgres")
    with harness.connect(maintenance, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def benchmark_run(name: str, url: str, rows: int | None, repeat: int | None) -> int:
    command = [harness.PYTHON, f"bench/{name}.py"]
    if name in STANDALONE:
        command += STANDALONE_ARGS.get(name, [])
    else:
        if rows is not None:
            command += ["--rows", str(rows)]
        if repeat is not None:
            command += ["--repeat", str(repeat)]
    print(f"\n=== {name} ===", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=harness.ROOT, env=harness.django_env(url))
    print(f"({name} took {time.perf_counter() - started:.0f} s in all)", flush=True)
    return done.returncode


def summary_print(names: list[str]) -> None:
    """Every target of this run in one place (each script saved its figures as JSON)."""
    rows, printed_only = [], []
    for name in names:
        path = harness.OUT_DIR / f"{name}.json"
        if not path.exists():
            continue
        targets = json.loads(path.read_text()).get("targets")
        if targets is None:
            printed_only.append(name)  # its PASS/MISS lines are in its own output above
            continue
        for target, result in targets.items():
            measured = result["measured"]
            if isinstance(measured, float):
                measured = f"{measured:.2f}" if measured < 10 else harness.fmt_rate(measured)
            rows.append([f"{name}: {target}", measured, result["target"],
                         harness.verdict(result["pass"])])  # fmt: skip
    print("\n=== summary ===")
    print(harness.table(["target", "measured", "target", "result"], rows))
    if printed_only:
        print(f"(targets of {', '.join(printed_only)}: in their own output above)")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Renotify's benchmarks.")
    parser.add_argument("--only", choices=BENCHMARKS, help="run just this benchmark")
    parser.add_argument("--rows", type=int, help="members per benchmark (default 1,000,000)")
    parser.add_argument("--repeat", type=int, help="timed rounds per figure (default 3)")
    args = parser.parse_args()

    url = harness.bench_database_url()
    names = list(GROUPS.get(args.only, [args.only])) if args.only else list(BENCHMARKS)
    if any(name in SHARED_DATABASE for name in names):
        print(f"bench database: {harness.database_name(url)} (recreated and migrated)")
        database_recreate(url)
        harness.database_migrate(url)
    for name in names:  # stale figures must not reach the summary if a script fails
        (harness.OUT_DIR / f"{name}.json").unlink(missing_ok=True)
    failed = [name for name in names if benchmark_run(name, url, args.rows, args.repeat) != 0]
    summary_print(names)
    if failed:
        sys.exit(f"benchmark(s) failed to run: {', '.join(failed)}")


if __name__ == "__main__":
    main()
