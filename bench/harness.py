"""Shared plumbing for the benchmarks: where the bench database is, how a command is
timed and its peak memory read, and how figures and targets are printed.

Benchmark scripts import this module as a sibling (``python bench/<name>.py`` puts
``bench/`` on ``sys.path``); none of it imports Django, so a script's own process
stays small and independent of the app.
"""

import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
OUT_DIR = ROOT / "var" / "bench"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/renotify_bench"
BENCH_DB = "renotify_bench"
GNU_TIME = "/usr/bin/time"


# --- The bench database ------------------------------------------------------------


def bench_database_url() -> str:
    """The PostgreSQL URL the benchmarks own (they drop and refill its tables).

    The server comes from DATABASE_URL when that points at PostgreSQL, but the
    database is always a separate one (``renotify_bench``, unless the URL already
    names a database with "bench" in it): a benchmark must never truncate the
    members of a development or production database by accident.
    """
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://", "pgsql://")):
        return DEFAULT_URL
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if "bench" not in name:
        parts = parts._replace(path=f"/{BENCH_DB}")
    return urlunsplit(parts._replace(scheme="postgres"))


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def connect(url: str | None = None, **kwargs) -> psycopg.Connection:
    return psycopg.connect(url or bench_database_url(), **kwargs)


def django_env(url: str | None = None) -> dict[str, str]:
    """Environment for a ``manage.py`` child: production-like (DEBUG off), so
    throwaway secrets satisfy the system checks that refuse to start without them."""
    return {
        **os.environ,
        "DATABASE_URL": url or bench_database_url(),
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-secret-key-not-used-anywhere-else-0123456789",
        "LEDGER_HMAC_KEY": "bench-only-ledger-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "ANYMAIL_WEBHOOK_SECRET": "bench:bench-only-webhook-secret",
        "RENOTIFY_WEBHOOK_ESPS": "postmark,sendgrid",
        "PYTHONUNBUFFERED": "1",
    }


def members_reset(conn: psycopg.Connection) -> None:
    """Empty accounts_member (and, by CASCADE, the tables that point at it), and the
    suppression feed's entries, which name members by a plain id: left behind, every
    first import's feed sync would append to the entries of the members before.

    TRUNCATE gives a fresh heap and fresh indexes, like a new deployment, where a
    DELETE would leave a million dead rows behind. The consent ledger and the feed
    refuse TRUNCATE by trigger; the benchmarks never write to the ledger, so it is
    checked to be empty, and the triggers are skipped for this one session (replica
    role).
    """
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM accounts_consentevent)")
        if cur.fetchone()[0]:
            raise SystemExit("accounts_consentevent is not empty: not a bench database?")
        cur.execute("SET session_replication_role = replica")
        cur.execute("TRUNCATE accounts_member, accounts_suppressionchange RESTART IDENTITY CASCADE")
        cur.execute("SET session_replication_role = DEFAULT")
    conn.commit()


def _outside_transaction(conn: psycopg.Connection, statement: str) -> None:
    previous = conn.autocommit
    conn.commit()
    conn.autocommit = True  # VACUUM cannot run inside a transaction block
    try:
        conn.execute(statement)
    finally:
        conn.autocommit = previous


def vacuum_analyze(conn: psycopg.Connection, table: str) -> None:
    """Settle a freshly written table (visibility map, hint bits, statistics), as
    autovacuum would have in production, so the next timing does not pay for it."""
    _outside_transaction(conn, f"VACUUM (ANALYZE) {table}")


def checkpoint(conn: psycopg.Connection) -> None:
    """Give the next timed run a fresh WAL budget: a large write can fill much of
    max_wal_size (1 GB by default; what an import writes: bench/README.md), so without
    this some runs would pay for a checkpoint half-way and others not.
    """
    _outside_transaction(conn, "CHECKPOINT")


def count_rows(conn: psycopg.Connection, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        (count,) = cur.fetchone()
    conn.commit()
    return count


# --- Measuring a child process -------------------------------------------------------


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str


def measure(command: Sequence[str], env: dict[str, str] | None = None) -> Run:
    """Run ``command`` to completion: wall time and the peak RSS of that process alone.

    Peak RSS comes from GNU time (``%M``, the child's ``ru_maxrss`` from wait4). It
    is not read in this process with ``RUSAGE_CHILDREN`` because Linux starts a
    child's ``ru_maxrss`` at its parent's RSS when it forks; GNU time is a tiny
    parent, so the figure is the command's own.
    """
    if not os.access(GNU_TIME, os.X_OK):
        raise SystemExit(f"{GNU_TIME} (GNU time) is needed for peak RSS: apt-get install time")
    with tempfile.NamedTemporaryFile("r", suffix=".time") as rusage:
        started = time.perf_counter()
        done = subprocess.run(
            [GNU_TIME, "-o", rusage.name, "-f", "%M", *command],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        lines = rusage.read().split()
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}")
    return Run(seconds, int(lines[-1]) / 1024, done.stdout, done.stderr)


def manage(*args: str, env: dict[str, str] | None = None) -> Run:
    return measure([PYTHON, "manage.py", *args], env=env or django_env())


# --- Figures and targets ---------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else float("inf")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def target(measured: object, goal: str, ok: bool) -> dict:
    """One target as the results keep it (``"targets": {name: target(...)}`` in a script's
    JSON; bench/run.py publishes them): the figure, the goal as text, met or not."""
    return {"measured": measured, "target": goal, "pass": bool(ok)}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        first, *rest = (
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def fmt_rate(value: float) -> str:
    # A run shorter than the start-up it is corrected by has no meaningful rate.
    return f"{value:,.0f}" if 0 < value < float("inf") else "n/a"


def fmt_mb(value: float) -> str:
    return f"{value:,.0f}"


def fmt_s(value: float) -> str:
    return f"{value:.2f}"


def save_results(name: str, results: dict) -> Path:
    """Machine-readable copy of a script's figures, for comparing runs over time."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def progress(message: str) -> None:
    """Progress goes to stderr so that stdout holds only the figures."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


# --- Processes the benchmarks start (each stopped by its pid) ----------------------------


def gunicorn_start(
    app: str, *, port: int, workers: int, env: dict[str, str], ready_path: str, log=None
) -> subprocess.Popen:
    """gunicorn serving ``app`` (module:callable) on 127.0.0.1:``port`` in its own process
    group, once GET ``ready_path`` answers 204; output to ``log`` (a Path) if given."""
    output = {"stdout": log.open("w"), "stderr": subprocess.STDOUT} if log else {}
    proc = subprocess.Popen(
        [
            str(Path(PYTHON).parent / "gunicorn"),
            app,
            "--workers",
            str(workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--timeout",
            "120",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        **output,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited during start-up{f': see {log}' if log else ''}")
        if http_status(port, ready_path) == 204:
            return proc
        time.sleep(0.2)
    process_stop(proc)
    raise SystemExit("gunicorn did not answer within 60 s")


def http_status(port: int, path: str) -> int:
    """The status of GET ``path`` on 127.0.0.1:``port``; 0 if nothing answers."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return 0


def process_stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process we started; its own process group (start_new_session)
    is killed only if it has not gone within 20 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def database_migrate(url: str) -> None:
    """``manage.py migrate`` on the database at ``url``."""
    done = subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=django_env(url),
    )
    if done.returncode != 0:
        raise SystemExit(f"migrate failed for {database_name(url)}")
