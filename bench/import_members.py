"""Benchmark: `manage.py import_members` at platform scale, against a SQL floor.

Measured, each through the real command in a child process (wall time including
Django's start-up, and that process's peak RSS):

1. first import of N rows into an empty members table;
2. the same file again (nothing changed, so nothing needs writing);
3. a file in which 10% of the rows have a new email address or country;
4. the SQL floor: the same rows, already validated, loaded by COPY into a staging
   table and upserted into the emptied members table by one INSERT ... SELECT ...
   ON CONFLICT statement, with no Python in between; then the suppression feed's
   sync (``feed_sync_once.py``), which the command also runs after its commit: the
   new members' first feed entries, in the app's own set-based statements. The floor is
   measured in every round, next to our runs, so the ratio holds on a noisy machine,
   and the feed's share of it is printed.

Each round repeats 1-4; medians are reported. Peak RSS is also shown for a first
import of N/10 rows: it must not grow with the file.

Usage: python bench/import_members.py [--rows N] [--repeat R] [--profile]
"""

import argparse
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness
import population
from harness import fmt_mb, fmt_rate, fmt_s, median, rate, table, verdict

TARGET_FIRST_RATE = 80_000
TARGET_FLOOR_SHARE = 0.60
TARGET_UNCHANGED_RATE = 200_000
TARGET_RSS_MB = 300

FLOOR_STAGING = "bench_floor_staging"
# The importer's own upsert, minus what only matters for existing rows' email status.
FLOOR_UPSERT = f"""
INSERT INTO accounts_member AS m (external_id, email, locale, country, jurisdiction,
    email_status, email_status_changed_at, created_at, updated_at)
SELECT external_id, email, locale, country, jurisdiction, 'ok', NULL, now(), now()
FROM {FLOOR_STAGING}
ON CONFLICT (external_id) DO UPDATE SET email = excluded.email, locale = excluded.locale,
    country = excluded.country, jurisdiction = excluded.jurisdiction,
    updated_at = excluded.updated_at
WHERE (m.email, m.locale, m.country) IS DISTINCT FROM (excluded.email, excluded.locale,
    excluded.country)
"""


@dataclass
class Files:
    base: Path
    changed: Path
    small: Path
    header_only: Path
    validated: Path


@dataclass
class Scenario:
    """One timed scenario's runs: seconds and peak RSS (MB) per round."""

    label: str
    rows: int
    seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def add(self, seconds: float, rss_mb: float = 0.0) -> None:
        self.seconds.append(seconds)
        self.rss_mb.append(rss_mb)

    @property
    def rates(self) -> list[float]:
        return [rate(self.rows, s) for s in self.seconds]

    @property
    def median_rate(self) -> float:
        return rate(self.rows, median(self.seconds))


# --- Preparing the files (not timed) -----------------------------------------------------


def files_prepare(rows: int) -> Files:
    out = harness.OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    small = max(rows // 10, 1)
    files = Files(
        base=out / f"members-{rows}.csv",
        changed=out / f"members-{rows}-changed.csv",
        small=out / f"members-{small}.csv",
        header_only=out / "members-header-only.csv",
        validated=out / f"members-{rows}-validated.tsv",
    )
    harness.progress(f"writing {files.base.name}, {files.changed.name}, {files.small.name}")
    population.write_csv(files.base, population.member_rows(rows))
    population.write_csv(files.changed, population.changed_rows(rows))
    population.write_csv(files.small, population.member_rows(small))
    population.write_csv(files.header_only, iter(()))
    harness.progress(f"writing {files.validated.name} with the importer's own validation")
    done = harness.measure(
        [harness.PYTHON, "bench/validated_rows.py", str(files.base), str(files.validated)],
        env=harness.django_env(),
    )
    if int(done.stdout) != rows:
        raise SystemExit(f"validated {done.stdout.strip()} rows of {rows}")
    return files


# --- Running the importer -------------------------------------------------------------------

SUMMARY = re.compile(r"(read|created|updated|unchanged|rejected) (\d+)")


def import_run(path: Path, expect: dict[str, int]) -> harness.Run:
    """Import ``path`` through the command and check the report says what we expect,
    so a benchmark of a silently broken import cannot look fast."""
    run = harness.manage("import_members", str(path), "--no-progress")
    report = {name: int(value) for name, value in SUMMARY.findall(run.stdout)}
    wrong = {k: (report.get(k), v) for k, v in expect.items() if report.get(k) != v}
    if wrong:
        raise SystemExit(f"{path.name}: unexpected report {run.stdout.strip()!r}: {wrong}")
    return run


def floor_run(conn, validated: Path) -> float:
    """The SQL floor: COPY the validated rows into a staging table and upsert them
    with one statement, in one transaction. Connecting is not timed."""
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            f"CREATE TEMPORARY TABLE {FLOOR_STAGING} (external_id text NOT NULL,"
            " email text NOT NULL, locale text NOT NULL, country text NOT NULL,"
            " jurisdiction text NOT NULL) ON COMMIT DROP"
        )
        with cur.copy(f"COPY {FLOOR_STAGING} FROM STDIN") as copy, validated.open("rb") as f:
            while block := f.read(1 << 20):
                copy.write(block)
        cur.execute(FLOOR_UPSERT)
    return time.perf_counter() - started


def feed_sync_run(rows: int) -> float:
    """The suppression feed's sync after the floor's upsert (its own seconds, without
    Django's start-up), checked to have appended entries: a floor that skipped the
    feed's work would look fast."""
    done = harness.measure([harness.PYTHON, "bench/feed_sync_once.py"], env=harness.django_env())
    seconds, appended = done.stdout.split()
    if int(appended) == 0:
        raise SystemExit(f"the feed's sync appended nothing for {rows:,} new members")
    return float(seconds)


def startup_seconds(files: Files) -> float:
    """What every command pays before its first row: Python, Django, checks, connecting."""
    expect = {"read": 0, "created": 0}
    return median([import_run(files.header_only, expect).seconds for _ in range(3)])


def round_run(conn, files: Files, rows: int, scenarios: dict[str, Scenario]) -> None:
    """One round: the floor, then (right after it, so both meet the same machine)
    the first import, the unchanged re-import and the 10% changed import."""
    harness.members_reset(conn)
    harness.checkpoint(conn)
    loaded = floor_run(conn, files.validated)
    if harness.count_rows(conn, "accounts_member") != rows:
        raise SystemExit("the SQL floor did not load every row")
    feed = feed_sync_run(rows)
    scenarios["floor"].add(loaded + feed)
    scenarios["floor_feed"].add(feed)

    harness.members_reset(conn)
    harness.checkpoint(conn)
    run = import_run(files.base, {"read": rows, "created": rows, "rejected": 0})
    scenarios["first"].add(run.seconds, run.peak_rss_mb)

    harness.vacuum_analyze(conn, "accounts_member")
    harness.checkpoint(conn)
    run = import_run(files.base, {"unchanged": rows, "updated": 0, "created": 0})
    scenarios["unchanged"].add(run.seconds, run.peak_rss_mb)

    harness.checkpoint(conn)
    changed = population.changed_count(rows)
    run = import_run(files.changed, {"updated": changed, "created": 0, "rejected": 0})
    scenarios["changed"].add(run.seconds, run.peak_rss_mb)


def small_run(conn, files: Files, rows: int) -> harness.Run:
    small = max(rows // 10, 1)
    harness.members_reset(conn)
    harness.checkpoint(conn)
    return import_run(files.small, {"read": small, "created": small})


# --- Reporting ----------------------------------------------------------------------------


def report(rows, repeat, startup, scenarios, small, small_rows) -> tuple[str, dict]:
    first, unchanged, changed, floor = (
        scenarios[k] for k in ("first", "unchanged", "changed", "floor")
    )
    share = first.median_rate / floor.median_rate
    feed_seconds = median(scenarios["floor_feed"].seconds)
    # The same ratio round by round (our run and the floor it ran next to).
    round_shares = [ours / base for ours, base in zip(first.rates, floor.rates, strict=True)]
    peak_1m = max(first.rss_mb + unchanged.rss_mb + changed.rss_mb)
    targets = {
        "first import rows/s": (first.median_rate, TARGET_FIRST_RATE, ">="),
        "first import / floor": (share, TARGET_FLOOR_SHARE, ">="),
        "unchanged re-import rows/s": (unchanged.median_rate, TARGET_UNCHANGED_RATE, ">="),
        f"peak RSS MB at {small_rows:,} rows": (small.peak_rss_mb, TARGET_RSS_MB, "<"),
        f"peak RSS MB at {rows:,} rows": (peak_1m, TARGET_RSS_MB, "<"),
    }

    def line(s: Scenario) -> list[object]:
        excl = rate(s.rows, median(s.seconds) - startup) if s is not floor else s.median_rate
        return [
            s.label,
            fmt_s(median(s.seconds)),
            fmt_rate(s.median_rate),
            fmt_rate(excl),
            " ".join(fmt_rate(r) for r in s.rates),
            fmt_mb(max(s.rss_mb)) if s is not floor else "-",
        ]

    figures = table(
        ["scenario", "median s", "rows/s", "rows/s excl. startup", "rows/s per round", "RSS MB"],
        [line(s) for s in (first, unchanged, changed, floor)],
    )
    checks = table(
        ["target", "measured", "target", "result"],
        [
            [name, _fmt(value), f"{op} {_fmt(goal)}", verdict(_meets(value, goal, op))]
            for name, (value, goal, op) in targets.items()
        ],
    )
    text = "\n".join(
        [
            f"members import: {rows:,} rows, median of {repeat} round(s)",
            f"command start-up (header-only file): {startup:.2f} s, included in 'median s'",
            "",
            figures,
            "",
            f"first import / floor, round by round: {' '.join(f'{r:.2f}' for r in round_shares)}",
            f"the feed's sync (the new members' first entries), in the floor and in the"
            f" command alike: {feed_seconds:.2f} s, {feed_seconds / median(floor.seconds):.0%}"
            " of the floor",
            f"peak RSS, first import of {small_rows:,} rows: {small.peak_rss_mb:.0f} MB"
            f" ({fmt_rate(rate(small_rows, small.seconds))} rows/s);"
            f" of {rows:,} rows: {max(first.rss_mb):.0f} MB",
            "",
            checks,
        ]
    )
    results = {
        "rows": rows,
        "repeat": repeat,
        "startup_s": startup,
        "scenarios": {k: vars(s) for k, s in scenarios.items()},
        "small": {"rows": small_rows, "seconds": small.seconds, "rss_mb": small.peak_rss_mb},
        "targets": {
            name: {"measured": v, "target": f"{op} {_fmt(g)}", "pass": _meets(v, g, op)}
            for name, (v, g, op) in targets.items()
        },
    }
    return text, results


def _meets(value: float, goal: float, op: str) -> bool:
    return value >= goal if op == ">=" else value < goal


def _fmt(value: float) -> str:
    return f"{value:.2f}" if value < 10 else fmt_rate(value)


# --- Profiling (on request) -------------------------------------------------------------------


def profile_first_import(conn, files: Files) -> str:
    """One more first import under cProfile: where the Python time goes.

    cProfile adds overhead per call, so its totals exceed the timed runs; read the
    shares, not the seconds.
    """
    import pstats

    harness.members_reset(conn)
    stats_path = harness.OUT_DIR / "import_members.prof"
    harness.measure(
        [
            harness.PYTHON,
            "-m",
            "cProfile",
            "-o",
            str(stats_path),
            "manage.py",
            "import_members",
            str(files.base),
            "--no-progress",
        ],
        env=harness.django_env(),
    )
    sys.stdout.flush()
    stats = pstats.Stats(str(stats_path), stream=sys.stdout)
    stats.strip_dirs().sort_stats("tottime").print_stats(15)
    return str(stats_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (median reported)")
    parser.add_argument("--profile", action="store_true", help="also cProfile one import")
    args = parser.parse_args()

    files = files_prepare(args.rows)
    scenarios = {
        "first": Scenario("first import (empty table)", args.rows),
        "unchanged": Scenario("unchanged re-import", args.rows),
        "changed": Scenario("10% changed (email or country)", args.rows),
        "floor": Scenario("SQL floor: COPY + one upsert + the feed's sync", args.rows),
        "floor_feed": Scenario("of which the feed's sync", args.rows),
    }
    with harness.connect() as conn:
        harness.progress("command start-up")
        startup = startup_seconds(files)
        harness.progress(f"first import of {files.small.name} (RSS at a tenth of the size)")
        small = small_run(conn, files, args.rows)
        for number in range(1, args.repeat + 1):
            harness.progress(f"round {number}/{args.repeat}")
            round_run(conn, files, args.rows, scenarios)
        text, results = report(
            args.rows, args.repeat, startup, scenarios, small, max(args.rows // 10, 1)
        )
        print(text, flush=True)
        path = harness.save_results("import_members", results)
        print(f"\n(figures also in {path.relative_to(harness.ROOT)})")
        if args.profile:
            print("\ncProfile of one first import, top 15 by own time:")
            profile_first_import(conn, files)


if __name__ == "__main__":
    main()
