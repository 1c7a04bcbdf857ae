"""Run the benchmarks against a fresh PostgreSQL database and print their figures.

    .venv/bin/python bench/run.py [--only NAME] [--rows N] [--repeat R]

The database is ``renotify_bench`` on the server named by DATABASE_URL (when that
is PostgreSQL) or on 127.0.0.1:5432; it is dropped, created and migrated first.
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

BENCHMARKS = ("import_members", "export_suppressions")


def database_recreate(url: str) -> None:
    name = harness.database_name(url)
    maintenance = harness.with_database(url, "postgres")
    with harness.connect(maintenance, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_migrate(url: str) -> None:
    done = subprocess.run(
        [harness.PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=harness.ROOT,
        env=harness.django_env(url),
    )
    if done.returncode != 0:
        raise SystemExit("migrate failed")


def benchmark_run(name: str, url: str, rows: int | None, repeat: int | None) -> int:
    command = [harness.PYTHON, f"bench/{name}.py"]
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
    rows = []
    for name in names:
        path = harness.OUT_DIR / f"{name}.json"
        if not path.exists():
            continue
        for target, result in json.loads(path.read_text())["targets"].items():
            measured = result["measured"]
            if isinstance(measured, float):
                measured = f"{measured:.2f}" if measured < 10 else harness.fmt_rate(measured)
            rows.append([f"{name}: {target}", measured, result["target"],
                         harness.verdict(result["pass"])])  # fmt: skip
    print("\n=== summary ===")
    print(harness.table(["target", "measured", "target", "result"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Renotify's benchmarks.")
    parser.add_argument("--only", choices=BENCHMARKS, help="run just this benchmark")
    parser.add_argument("--rows", type=int, help="members per benchmark (default 1,000,000)")
    parser.add_argument("--repeat", type=int, help="timed rounds per figure (default 3)")
    args = parser.parse_args()

    url = harness.bench_database_url()
    print(f"bench database: {harness.database_name(url)} (recreated and migrated)", flush=True)
    database_recreate(url)
    database_migrate(url)
    names = [args.only] if args.only else list(BENCHMARKS)
    for name in names:  # stale figures must not reach the summary if a script fails
        (harness.OUT_DIR / f"{name}.json").unlink(missing_ok=True)
    failed = [name for name in names if benchmark_run(name, url, args.rows, args.repeat) != 0]
    summary_print(names)
    if failed:
        sys.exit(f"benchmark(s) failed to run: {', '.join(failed)}")


if __name__ == "__main__":
    main()
