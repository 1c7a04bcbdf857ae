"""What ``make bench`` needs before anything runs, and the facts of the machine a run's
figures come from (written into bench/results.json and bench/RESULTS.md).

``services_check`` answers with one line per missing thing, saying how to get it, so
that ``bench/run.py`` can stop before a benchmark fails half-way with a traceback. No
Django here: versions of the app's libraries are read from the installed packages.
"""

import os
import platform
import shutil
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import harness
import psycopg
import redis

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CONNECT_TIMEOUT = 3  # seconds: a server that is down answers at once, a wrong host not
PACKAGES = ("Django", "celery", "psycopg")
# The run writes these itself: a tree with only them changed is not "dirty".
GENERATED = ("bench/RESULTS.md", "bench/results.json")


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or ''}".rstrip(":")


def postgres_check(url: str) -> tuple[str | None, str | None]:
    """(server version, None), or (None, the line saying what is wrong and what to do)."""
    named = os.environ.get("DATABASE_URL", "").startswith(("postgres", "pgsql"))
    source = "DATABASE_URL" if named else "DATABASE_URL unset or not PostgreSQL"
    maintenance = harness.with_database(url, "postgres")  # the bench database may not exist
    try:
        with psycopg.connect(maintenance, connect_timeout=CONNECT_TIMEOUT) as conn:
            (version,) = conn.execute("SELECT version()").fetchone()
    except psycopg.OperationalError as error:
        # "connection failed: connection to server at ..., port ... failed: <reason>"
        reason = str(error).strip().split("\n")[0].rpartition("failed: ")[2] or "no answer"
        return None, (
            f"PostgreSQL is not reachable at {_where(url)} ({source}): start it or set"
            f" DATABASE_URL ({reason})"
        )
    return version, None


def redis_check(url: str) -> tuple[str | None, str | None]:
    source = "REDIS_URL" if os.environ.get("REDIS_URL") else "REDIS_URL unset"
    client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT)
    try:
        version = client.info("server")["redis_version"]
    except redis.RedisError as error:
        return None, (
            f"Redis is not reachable at {_where(url)} ({source}): start it"
            f" (apt-get install redis-server) or set REDIS_URL ({error})"
        )
    finally:
        client.close()
    return version, None


def tools_missing() -> list[str]:
    problems = []
    if shutil.which("wrk") is None:
        problems.append("wrk is not installed: apt-get install wrk (make bench installs it)")
    if not os.access(harness.GNU_TIME, os.X_OK):
        problems.append(
            f"GNU time ({harness.GNU_TIME}) is not installed: apt-get install time"
            " (make bench installs it)"
        )
    return problems


def services_check(database_url: str, redis_url: str) -> tuple[dict[str, str], list[str]]:
    """The servers' versions, and one line per thing missing (empty when all is there)."""
    postgres, postgres_problem = postgres_check(database_url)
    redis_version, redis_problem = redis_check(redis_url)
    problems = [p for p in (postgres_problem, redis_problem) if p] + tools_missing()
    return {"postgresql": postgres or "", "redis": redis_version or ""}, problems


# --- The machine ---------------------------------------------------------------------------


def _proc_field(path: str, field: str) -> str:
    """The first ``field: value`` of a /proc file (empty where there is no /proc)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == field:
            return value.strip()
    return ""


def memory_gib() -> float | None:
    kib = _proc_field("/proc/meminfo", "MemTotal").removesuffix("kB").strip()
    return round(int(kib) / 2**20, 1) if kib else None


def load_average() -> list[float]:
    return [round(load, 2) for load in os.getloadavg()]


def git_state() -> dict[str, object]:
    """The commit checked out and whether anything but the generated results differs."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=harness.ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    excluded = [f":(exclude){path}" for path in GENERATED]
    changes = git("status", "--porcelain", "--", ".", *excluded)
    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(changes)}


def machine(servers: dict[str, str]) -> dict[str, object]:
    """Cores, memory, kernel and the versions the figures depend on."""
    return {
        "cores": os.cpu_count(),
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "memory_gib": memory_gib(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        **{package.lower(): metadata.version(package) for package in PACKAGES},
        "postgresql": servers["postgresql"],
        "redis": servers["redis"],
    }


def run_facts(servers: dict[str, str], scale: int | None) -> dict[str, object]:
    """One invocation of bench/run.py: when, at which commit and SCALE, on what."""
    return {
        "id": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **git_state(),
        "scale": scale,
        "load_before": load_average(),
        "machine": machine(servers),
    }
