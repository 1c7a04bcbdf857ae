"""Benchmark: `manage.py export_suppressions` against a raw COPY of the same rows.

The members table is filled in SQL (generate_series; same country mix as the
import benchmark), with 10% of members objecting and 3% explicitly allowing
"ai-training" (preference rows written directly: the export reads preferences,
not the ledger). Then, each through the real command in a child process (wall
time including Django's start-up, and that process's peak RSS):

1. the CSV export (``--format csv``; on PostgreSQL the app uses COPY itself);
2. the JSON Lines export (``--format jsonl``; rows go through Python);
3. the floor: ``COPY (hand-written SELECT) TO STDOUT`` of the same rows and
   columns into a file, from this process (connecting is not timed). Its output
   is checked to be byte-identical to the command's CSV, header aside.

Rounds repeat 1-3 and medians are reported. The same runs at N/10 members show
whether memory stays flat.

Usage: python bench/export_suppressions.py [--rows N] [--repeat R]
"""

import argparse
import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness
import population
from harness import fmt_rate, fmt_s, median, rate, table, verdict
from psycopg import sql

PURPOSE = "ai-training"
TARGET_COPY_SHARE = 0.50
# "Flat": peak RSS at N members within 10% (and at least 5 MB) of that at N/10.
RSS_FLAT_FACTOR = 1.10
RSS_FLAT_SLACK_MB = 5
OBJECTED_PERCENT = 10
OPTED_IN_PERCENT = 3

MEMBERS_SEED = """
INSERT INTO accounts_member (external_id, email, locale, country, jurisdiction,
    email_status, email_status_changed_at, created_at, updated_at)
SELECT 'u' || substr(md5(g::text), 1, 16), 'member' || g || '@' || pool.domain,
    pool.locale, pool.code, pool.jurisdiction,
    CASE WHEN g % 50 = 0 THEN 'bounced' ELSE 'ok' END,
    CASE WHEN g % 50 = 0 THEN s.created + interval '1 day' END,
    s.created, s.created
FROM (
    SELECT g, random() AS r, now() - random() * interval '6 years' AS created
    FROM generate_series(1, {rows}) AS g
) AS s
JOIN ({pool}) AS pool (code, jurisdiction, locale, domain, lo, hi)
    ON s.r >= pool.lo AND s.r < pool.hi
ORDER BY g
"""
PREFERENCES_SEED = """
INSERT INTO accounts_preference (member_id, purpose_id, choice, chosen_at)
SELECT id, {purpose}, CASE WHEN id % 100 < {objected} THEN 'out' ELSE 'in' END,
    created_at + random() * (now() - created_at)
FROM accounts_member
WHERE id % 100 < {with_choice}
"""
# What a DBA would write by hand for the suppression list: excluded by the
# jurisdiction's policy, or objected, or not opted in where opt-in applies.
RAW_EXPORT = """
SELECT m.external_id, m.jurisdiction,
    CASE WHEN pol.mode = 'excluded' THEN 'jurisdiction-excluded'
         WHEN p.choice = 'out' THEN 'objected'
         ELSE 'not-opted-in' END,
    to_char((CASE WHEN pol.mode <> 'excluded' AND p.choice = 'out' THEN p.chosen_at
                  ELSE greatest(m.created_at, pol.mode_since) END) AT TIME ZONE 'UTC',
            'YYYY-MM-DD"T"HH24:MI:SS"Z"')
FROM accounts_member m
JOIN accounts_jurisdictionpolicy pol
    ON pol.jurisdiction = m.jurisdiction AND pol.purpose_id = {purpose}
LEFT JOIN accounts_preference p ON p.member_id = m.id AND p.purpose_id = {purpose}
WHERE pol.mode = 'excluded'
   OR (pol.mode = 'opt_out' AND p.choice = 'out')
   OR (pol.mode = 'opt_in' AND p.choice IS DISTINCT FROM 'in')
ORDER BY m.id
"""


@dataclass
class Scenario:
    """One timed scenario's runs at one size: seconds, rows written, peak RSS (MB)."""

    label: str
    seconds: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def add(self, seconds: float, rows: int, rss_mb: float = 0.0) -> None:
        self.seconds.append(seconds)
        self.rows.append(rows)
        self.rss_mb.append(rss_mb)

    @property
    def rates(self) -> list[float]:
        return [rate(n, s) for n, s in zip(self.rows, self.seconds, strict=True)]

    @property
    def median_rate(self) -> float:
        return rate(self.rows[0], median(self.seconds))


# --- Data (not timed) -------------------------------------------------------------------


def purpose_id(conn) -> int:
    row = conn.execute("SELECT id FROM accounts_purpose WHERE slug = %s", [PURPOSE]).fetchone()
    if row is None:
        raise SystemExit(f"purpose {PURPOSE!r} missing: is the bench database migrated?")
    conn.commit()
    return row[0]


def members_seed(conn, rows: int, purpose: int) -> None:
    harness.members_reset(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT setseed(0.2024)")  # the same population on every run
        cur.execute(MEMBERS_SEED.format(rows=int(rows), pool=population.country_pool_sql()))
        cur.execute(
            PREFERENCES_SEED.format(
                purpose=int(purpose),
                objected=OBJECTED_PERCENT,
                with_choice=OBJECTED_PERCENT + OPTED_IN_PERCENT,
            )
        )
    conn.commit()
    harness.vacuum_analyze(conn, "accounts_member")
    harness.vacuum_analyze(conn, "accounts_preference")
    harness.checkpoint(conn)


# --- Runs --------------------------------------------------------------------------------

WROTE = re.compile(r"wrote (\d+) suppressed")


def export_run(fmt: str, path: Path) -> tuple[harness.Run, int]:
    run = harness.manage(
        "export_suppressions", "--purpose", PURPOSE, "--format", fmt, "--output", str(path)
    )
    match = WROTE.search(run.stderr)
    if not match:
        raise SystemExit(f"export_suppressions said {run.stderr.strip()!r}")
    return run, int(match.group(1))


def raw_copy_run(conn, purpose: int, path: Path) -> tuple[float, int]:
    """The floor: the database writes CSV and this process only moves the bytes."""
    query = sql.SQL(RAW_EXPORT).format(purpose=sql.Literal(purpose))
    statement = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query)
    started = time.perf_counter()
    with conn.cursor() as cur, path.open("wb") as out:
        with cur.copy(statement) as copy:
            for block in copy:
                out.write(block)
        count = cur.rowcount
    conn.commit()
    return time.perf_counter() - started, count


def same_rows(ours: Path, raw: Path) -> bool:
    """Our CSV, less its header line, has exactly the raw COPY's bytes."""
    digests = []
    for path, skip_header in ((ours, True), (raw, False)):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            if skip_header:
                f.readline()
            while block := f.read(1 << 20):
                digest.update(block)
        digests.append(digest.hexdigest())
    return digests[0] == digests[1]


def size_run(conn, members: int, rounds: int, purpose: int) -> dict[str, Scenario]:
    """Seed ``members`` members, then ``rounds`` rounds of CSV, JSONL and raw COPY."""
    members_seed(conn, members, purpose)
    out = harness.OUT_DIR
    paths = {k: out / f"suppressions-{members}.{k}" for k in ("csv", "jsonl", "raw.csv")}
    scenarios = {
        "csv": Scenario("CSV (command; COPY inside)"),
        "jsonl": Scenario("JSON Lines (command)"),
        "raw": Scenario("raw COPY (SELECT ...) TO file"),
    }
    for number in range(1, rounds + 1):
        harness.progress(f"{members:,} members, round {number}/{rounds}")
        for fmt in ("csv", "jsonl"):
            run, count = export_run(fmt, paths[fmt])
            scenarios[fmt].add(run.seconds, count, run.peak_rss_mb)
        seconds, count = raw_copy_run(conn, purpose, paths["raw.csv"])
        scenarios["raw"].add(seconds, count)
        if number == 1:
            _check_same(paths, scenarios)
    return scenarios


def _check_same(paths: dict[str, Path], scenarios: dict[str, Scenario]) -> None:
    counts = {k: s.rows[-1] for k, s in scenarios.items()}
    if len(set(counts.values())) != 1:
        raise SystemExit(f"the exports disagree on the number of rows: {counts}")
    if not same_rows(paths["csv"], paths["raw.csv"]):
        raise SystemExit("the command's CSV differs from the raw COPY of the same rows")


def startup_seconds(conn) -> float:
    """What every command pays before its first row (an empty members table)."""
    harness.members_reset(conn)
    path = harness.OUT_DIR / "suppressions-empty.csv"
    return median([export_run("csv", path)[0].seconds for _ in range(3)])


# --- Reporting ------------------------------------------------------------------------------


def report(members, small_members, repeat, startup, big, small) -> tuple[str, dict]:
    csv_, jsonl, raw = big["csv"], big["jsonl"], big["raw"]
    share = csv_.median_rate / raw.median_rate
    round_shares = [ours / base for ours, base in zip(csv_.rates, raw.rates, strict=True)]

    def flat(fmt: str) -> tuple[float, float, bool]:
        before, after = max(small[fmt].rss_mb), max(big[fmt].rss_mb)
        limit = max(before * RSS_FLAT_FACTOR, before + RSS_FLAT_SLACK_MB)
        return before, after, after <= limit

    def line(s: Scenario, fmt: str | None) -> list[object]:
        seconds = median(s.seconds)
        return [
            s.label,
            f"{s.rows[0]:,}",
            fmt_s(seconds),
            fmt_rate(s.median_rate),
            fmt_rate(rate(s.rows[0], seconds - startup)) if fmt else fmt_rate(s.median_rate),
            " ".join(fmt_rate(r) for r in s.rates),
            f"{s.median_rate / raw.median_rate:.2f}",
            f"{max(small[fmt].rss_mb):.0f} -> {max(s.rss_mb):.0f}" if fmt else "-",
        ]

    figures = table(
        [
            "export",
            "rows",
            "median s",
            "rows/s",
            "rows/s excl. startup",
            "rows/s per round",
            "/ raw",
            f"RSS MB {small_members // 1000}k -> {members // 1000}k",
        ],
        [line(csv_, "csv"), line(jsonl, "jsonl"), line(raw, None)],
    )
    csv_flat, jsonl_flat = flat("csv"), flat("jsonl")
    flat_goal = f"<= +{RSS_FLAT_FACTOR - 1:.0%}"
    targets = [
        ("CSV export / raw COPY", f"{share:.2f}", f">= {TARGET_COPY_SHARE:.2f}",
         share >= TARGET_COPY_SHARE),
        ("CSV peak RSS flat (MB)", f"{csv_flat[0]:.0f} -> {csv_flat[1]:.0f}", flat_goal,
         csv_flat[2]),
        ("JSONL peak RSS flat (MB)", f"{jsonl_flat[0]:.0f} -> {jsonl_flat[1]:.0f}", flat_goal,
         jsonl_flat[2]),
    ]  # fmt: skip
    checks = table(
        ["target", "measured", "target", "result"],
        [[name, measured, goal, verdict(ok)] for name, measured, goal, ok in targets],
    )
    text = "\n".join(
        [
            f"suppression export: {members:,} members ({OBJECTED_PERCENT}% objected,"
            f" {OPTED_IN_PERCENT}% opted in), median of {repeat} round(s)",
            f"command start-up (empty table): {startup:.2f} s, included in 'median s'",
            "",
            figures,
            "",
            f"CSV / raw COPY, round by round: {' '.join(f'{r:.2f}' for r in round_shares)}",
            "",
            checks,
        ]
    )
    results = {
        "members": members,
        "repeat": repeat,
        "startup_s": startup,
        "sizes": {
            str(members): {k: vars(s) for k, s in big.items()},
            str(small_members): {k: vars(s) for k, s in small.items()},
        },
        "csv_share_of_raw_copy": share,
        "targets": {
            name: {"measured": measured, "target": goal, "pass": ok}
            for name, measured, goal, ok in targets
        },
    }
    return text, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="members")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (median reported)")
    args = parser.parse_args()
    harness.OUT_DIR.mkdir(parents=True, exist_ok=True)
    small_members = max(args.rows // 10, 1)

    with harness.connect() as conn:
        purpose = purpose_id(conn)
        harness.progress("command start-up")
        startup = startup_seconds(conn)
        small = size_run(conn, small_members, 1, purpose)
        big = size_run(conn, args.rows, args.repeat, purpose)
    text, results = report(args.rows, small_members, args.repeat, startup, big, small)
    print(text, flush=True)
    path = harness.save_results("export_suppressions", results)
    print(f"\n(figures also in {path.relative_to(harness.ROOT)})")


if __name__ == "__main__":
    main()
