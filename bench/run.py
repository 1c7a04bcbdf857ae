"""Run the benchmarks on PostgreSQL, print their figures and publish them.

    .venv/bin/python bench/run.py [--only NAME] [--scale N] [--repeat R]

Every benchmark by default (how long that takes: bench/README.md), one at a time so
that none disturbs another's figures; ``--only NAME`` runs one (``make bench
BENCH=NAME``). First it checks that PostgreSQL (DATABASE_URL, else 127.0.0.1:5432),
Redis (REDIS_URL, else 127.0.0.1:6379), wrk and GNU time are there, and stops with one
line per missing thing if not. The import and export benchmarks share
``renotify_bench`` on that server; it is dropped, created and migrated first. The
others set up a database of their own (``--repeat`` applies to the first two only; the
rest run with their defaults, see each script's docstring).

``--scale N`` (or ``SCALE=N``, ``make bench SCALE=N``) runs each benchmark at N members
or rows instead of its published size (``SIZES`` below).
Each benchmark runs as a child process so that nothing it loads or allocates
carries over to the next; generated files go to var/bench/. After each one,
bench/results.json and bench/RESULTS.md get that benchmark's section (results_writer).
Figures are printed, never asserted: a MISS does not fail the run.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import harness
import preflight
import results_writer
from psycopg import sql

SHARED_DATABASE = ("import_members", "export_suppressions")
# Each with its own database and defaults: issue #3 (campaign engine), #4 (webhooks),
# #5 (notice pages), #16 (outbound webhooks, member upsert, the suppression feed) and
# #17 (the console: its audience count, its dashboard and campaign page), #18 (the
# evidence pack) and #19 (the campaign end to end; faults: its own PostgreSQL and Redis,
# both brokers).
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
    "faults",
)
BENCHMARKS = SHARED_DATABASE + STANDALONE
STANDALONE_ARGS = {
    "throttle_accuracy": ["--repeat", "3"],
    "evidence_report": ["--repeat", "3"],
    # The published topology: workers on two hosts (network namespaces of its own).
    "faults": ["--hosts", "2"],
}
# The published size of each benchmark that takes it as a flag: the first flag is its
# member (or row, or event) count, which SCALE replaces; any other size scales in
# proportion (fanout's Celery count is a fiftieth of its fan-out). Each script's own
# default, except evidence_report, published at 1M (its script defaults to 100,000).
SIZES = {
    "import_members": (("--rows", 1_000_000),),
    "export_suppressions": (("--rows", 1_000_000),),
    "fanout": (("--rows", 1_000_000), ("--celery-rows", 20_000)),
    "send_loop": (("--rows", 100_000),),  # and a tenth of it for the RSS comparison
    "webhooks": (("--events", 100_000),),
    "notice_pages": (("--members", 1_000_000),),
    "outbound_webhooks": (("--events", 20_000),),
    "audience_count": (("--rows", 1_000_000),),
    "console": (("--rows", 1_000_000),),
    "evidence": (("--members", 1_000_000),),
    "evidence_report": (("--members", 1_000_000),),
    "gates": (("--rows", 1_000_000),),
}
# Any other benchmark reads SCALE from its environment (member_upsert,
# suppression_snapshot, feed_follow), except these, whose size is not a count:
# throttle_accuracy sends for a fixed time at a fixed limit.
UNSCALED = ("throttle_accuracy",)
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


def size_args(name: str, scale: int | None) -> list[str]:
    """The size flags for ``name``: its published sizes, or SCALE and sizes in proportion."""
    sizes = SIZES.get(name, ())
    if not sizes:
        return []
    published = sizes[0][1]
    args = []
    for flag, size in sizes:
        args += [flag, str(max(1, round(size * scale / published)) if scale else size)]
    return args


def benchmark_command(name: str, scale: int | None, repeat: int | None) -> list[str]:
    command = [f"bench/{name}.py", *size_args(name, scale)]
    if name in SHARED_DATABASE:
        command += ["--repeat", str(repeat)] if repeat is not None else []
    else:
        command += STANDALONE_ARGS.get(name, [])
    return command


def benchmark_env(url: str, name: str, scale: int | None) -> dict[str, str]:
    """SCALE reaches the scripts that read it; unset, each runs at its own default."""
    env = harness.django_env(url)
    env.pop("SCALE", None)
    if scale and name not in SIZES and name not in UNSCALED:
        env["SCALE"] = str(scale)
    return env


def command_text(command: list[str], env: dict[str, str]) -> str:
    """The command as a user would type it (with the SCALE it was given, if any)."""
    prefix = f"SCALE={env['SCALE']} " if "SCALE" in env else ""
    return prefix + shlex.join(command)


def benchmark_run(name: str, url: str, scale: int | None, repeat: int | None) -> dict:
    """Run one benchmark; its section for the results (status, time, targets, figures)."""
    command = benchmark_command(name, scale, repeat)
    env = benchmark_env(url, name, scale)
    load_before = preflight.load_average()
    print(f"\n=== {name} ===", flush=True)
    started = time.perf_counter()
    done = subprocess.run([harness.PYTHON, *command], cwd=harness.ROOT, env=env)
    seconds = time.perf_counter() - started
    print(f"({name} took {seconds:.0f} s in all)", flush=True)
    path = harness.OUT_DIR / f"{name}.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    return {
        "status": "ran" if done.returncode == 0 else "failed",
        "exit_code": done.returncode,
        "wall_seconds": round(seconds, 1),
        "command": command_text(command, env),
        "load_before": load_before,
        "targets": figures.get("targets"),
        "figures": {key: value for key, value in figures.items() if key != "targets"},
    }


def summary_print(sections: dict[str, dict]) -> None:
    """Every target of this run in one place."""
    rows, figures_only = [], []
    for name, section in sections.items():
        if not section["targets"]:
            if section["status"] == "ran":  # a failed one is named at the end
                figures_only.append(name)
            continue
        for target, result in section["targets"].items():
            rows.append(
                [
                    f"{name}: {target}",
                    results_writer.value_fmt(result["measured"]),
                    result["target"],
                    harness.verdict(result["pass"]),
                ]
            )
    print("\n=== summary ===")
    if rows:
        print(harness.table(["target", "measured", "target", "result"], rows))
    if figures_only:
        print(f"(no targets saved by: {', '.join(figures_only)})")


def preflight_run(url: str, scale: int | None) -> dict:
    """The run's facts, or exit with one line per missing service or tool."""
    redis_url = os.environ.get("REDIS_URL") or preflight.DEFAULT_REDIS_URL
    servers, problems = preflight.services_check(url, redis_url)
    if problems:
        sys.exit("make bench cannot start:\n" + "\n".join(f"- {p}" for p in problems))
    return preflight.run_facts(servers, scale)


def scale_from_env() -> int | None:
    value = os.environ.get("SCALE", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        sys.exit(f"SCALE must be a whole number of members, such as 100000 (got {value!r})")
    return int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Renotify's benchmarks.")
    parser.add_argument("--only", choices=BENCHMARKS, help="run just this benchmark")
    parser.add_argument(
        "--scale", type=int, default=scale_from_env(), help="members/rows (default: SCALE)"
    )
    parser.add_argument("--repeat", type=int, help="timed rounds per figure (default 3)")
    args = parser.parse_args()

    url = harness.bench_database_url()
    run = preflight_run(url, args.scale)
    names = list(GROUPS.get(args.only, [args.only])) if args.only else list(BENCHMARKS)
    if any(name in SHARED_DATABASE for name in names):
        print(f"bench database: {harness.database_name(url)} (recreated and migrated)")
        database_recreate(url)
        harness.database_migrate(url)
    for name in names:  # stale figures must not reach the results if a script fails
        (harness.OUT_DIR / f"{name}.json").unlink(missing_ok=True)
    sections = {}
    for name in names:
        sections[name] = benchmark_run(name, url, args.scale, args.repeat)
        # Written after each benchmark, so an interrupted run keeps what it finished.
        results = results_writer.section_record(
            results_writer.results_load(), run=run, name=name, section=sections[name]
        )
        results_writer.results_write(results, order=list(BENCHMARKS))
    summary_print(sections)
    print(f"\n(results in {results_writer.RESULTS_MD.relative_to(harness.ROOT)})")
    failed = [name for name, section in sections.items() if section["status"] != "ran"]
    if failed:
        sys.exit(f"benchmark(s) failed to run: {', '.join(failed)}")


if __name__ == "__main__":
    main()
