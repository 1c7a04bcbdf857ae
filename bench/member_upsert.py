"""Benchmark: bulk member upsert through the API, 1,000 members per request, against
``manage.py import_members`` on the same rows in the same rounds.

Each round, into an emptied members table:

1. ``import_members`` of the rows as a CSV file, the command run in this process
   (Django is set up here): its work, without an interpreter's start-up, so the ratio
   is the API's to beat;
2. the same rows as ``POST /api/v1/members/bulk`` bodies of 1,000 members (the raw
   values, so the API validates and normalises them as the importer does), sent by
   ``--concurrency`` connections to gunicorn (load_driver's server: 2 sync workers,
   production-like settings); timed from the first request to the last answer, every
   answer checked (200, every member created).

Medians of the rounds are reported, with the ratio paired round by round.

Usage: SCALE=100000 .venv/bin/python bench/member_upsert.py [--rounds R] [--concurrency C]
           [--keep]
SCALE: members per round (default 100,000).
"""

import argparse
import http.client
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import campaign_setup
import harness
import load_driver
import population
from harness import fmt_rate, fmt_s, median, table, verdict

DATABASE = "renotify_bench_members"
PORT = 8771
REDIS_URL = "redis://127.0.0.1:6379/12"
BATCH = 1000
PATH = "/api/v1/members/bulk"
TARGET_RATE = 10_000  # members/s through the API
TARGET_IMPORT_SHARE = 0.5  # of import_members' rate on the same rows


def wsgi_app():
    """The app as gunicorn serves it here ('member_upsert:wsgi_app()')."""
    return load_driver.wsgi_app()


@dataclass
class Figures:
    import_seconds: list[float] = field(default_factory=list)
    api_seconds: list[float] = field(default_factory=list)


def bodies_write(rows: list[population.Row]) -> list[bytes]:
    """The request bodies: BATCH members each, the values as the CSV file has them."""
    return [
        json.dumps(
            {"members": [dict(zip(population.HEADER, row, strict=True)) for row in chunk]}
        ).encode()
        for chunk in (rows[start : start + BATCH] for start in range(0, len(rows), BATCH))
    ]


def api_key_make(url: str) -> str:
    """A members:write client of the bench's own (its rate far above what is sent)."""
    campaign_setup.django_start(url)
    from django.db import connections

    from api.models import ApiClient, Scope
    from api.services.clients import api_client_create

    client, key = api_client_create(name="bench", scopes=[Scope.MEMBERS_WRITE], by=None)
    ApiClient.objects.filter(pk=client.pk).update(rate="1000000/m")
    connections.close_all()  # the server has its own
    return key


def post(body: bytes, key: str) -> int:
    """POST one batch; the members it created (the answer is checked)."""
    conn = http.client.HTTPConnection(load_driver.HOST, PORT, timeout=120)
    try:
        conn.request(
            "POST",
            PATH,
            body=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise SystemExit(f"POST {PATH}: {response.status} {answer[:300]!r}")
    return json.loads(answer)["created"]


def api_run(bodies: list[bytes], key: str, concurrency: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        created = sum(pool.map(lambda body: post(body, key), bodies))
    seconds = time.perf_counter() - started
    expected = sum(body.count(b'"external_id"') for body in bodies)
    if created != expected:
        raise SystemExit(f"the API created {created} members of {expected}")
    return seconds


def import_run(csv_path: Path, expect_created: int) -> float:
    """``import_members`` in this process (Django is set up here): the command's work,
    without an interpreter's start-up."""
    from django.core.management import call_command
    from django.db import connections

    out = io.StringIO()
    started = time.perf_counter()
    call_command("import_members", str(csv_path), "--no-progress", stdout=out)
    seconds = time.perf_counter() - started
    connections.close_all()
    if f"created {expect_created}," not in out.getvalue():
        raise SystemExit(f"import_members: unexpected report {out.getvalue().strip()!r}")
    return seconds


def round_run(conn, csv_path: Path, bodies, key, args, figures) -> None:
    rows = args.scale
    harness.members_reset(conn)
    harness.checkpoint(conn)
    figures.import_seconds.append(import_run(csv_path, rows))
    harness.members_reset(conn)
    harness.checkpoint(conn)
    figures.api_seconds.append(api_run(bodies, key, args.concurrency))
    if harness.count_rows(conn, "accounts_member") != rows:
        raise SystemExit("the API did not write every member")


def report(figures: Figures, args) -> dict:
    rows = args.scale
    api_rates = [rows / s for s in figures.api_seconds]
    import_rates = [rows / s for s in figures.import_seconds]
    shares = [a / i for a, i in zip(api_rates, import_rates, strict=True)]
    api_rate, import_rate, share = median(api_rates), median(import_rates), median(shares)
    print(
        table(
            ["run", "median time", "members/s"],
            [
                [
                    "import_members (in process)",
                    fmt_s(median(figures.import_seconds)),
                    fmt_rate(import_rate),
                ],
                [
                    f"API, {BATCH:,} per request",
                    fmt_s(median(figures.api_seconds)),
                    fmt_rate(api_rate),
                ],
            ],
        )
    )
    targets = {
        "API members/s": (api_rate, TARGET_RATE),
        "API / import_members": (share, TARGET_IMPORT_SHARE),
    }
    print()
    for name, (measured, goal) in targets.items():
        shown = f"{measured:.2f}" if measured < 10 else fmt_rate(measured)
        print(f"{name}: {shown} (target >= {goal:g}) {verdict(measured >= goal)}")
    return {
        "scale": rows,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "api_seconds": figures.api_seconds,
        "import_seconds": figures.import_seconds,
        "round_shares": shares,
        "targets": {
            name: {"measured": measured, "target": f">= {goal:g}", "pass": measured >= goal}
            for name, (measured, goal) in targets.items()
        },
    }


def database_drop(url: str) -> None:
    from django.db import connections
    from psycopg import sql

    connections.close_all()
    with harness.connect(harness.with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(harness.database_name(url))
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4, help="connections sending")
    parser.add_argument("--keep", action="store_true", help="leave the database behind")
    args = parser.parse_args()
    args.scale = int(os.environ.get("SCALE", "100000"))
    args.url = campaign_setup.database_url(DATABASE)
    load_driver.sigterm_unwinds()
    harness.OUT_DIR.mkdir(parents=True, exist_ok=True)
    workdir = harness.OUT_DIR / "member_upsert"
    workdir.mkdir(exist_ok=True)

    harness.progress(f"database {DATABASE}, {args.scale:,} members")
    campaign_setup.database_prepare(args.url)
    rows = list(population.member_rows(args.scale))
    csv_path = workdir / f"members-{len(rows)}.csv"
    population.write_csv(csv_path, iter(rows))
    bodies = bodies_write(rows)
    key = api_key_make(args.url)
    figures = Figures()
    log = harness.OUT_DIR / "member_upsert-gunicorn.log"
    env = load_driver.server_env(args.url, redis_url=REDIS_URL, var_dir="member_upsert")
    server = load_driver.server_start("member_upsert:wsgi_app()", port=PORT, env=env, log=log)
    try:
        with harness.connect(args.url) as conn:
            api_run(bodies[:2], key, args.concurrency)  # warm both workers up
            for number in range(args.rounds):
                harness.progress(f"round {number + 1}/{args.rounds}")
                round_run(conn, csv_path, bodies, key, args, figures)
    finally:
        harness.process_stop(server)
        if not args.keep:
            database_drop(args.url)
    print(
        f"\nmember upsert: {args.scale:,} members, {len(bodies)} requests of up to {BATCH:,},"
        f" {args.concurrency} connections, gunicorn {load_driver.WORKERS} sync workers,"
        f" {args.rounds} round(s), {os.cpu_count()} CPUs\n"
    )
    path = harness.save_results("member_upsert", report(figures, args))
    print(f"\n(figures saved to {path.relative_to(harness.ROOT)}; server log {log.name})")


if __name__ == "__main__":
    sys.exit(main())
