"""Set-up shared by the suppression feed benchmarks (suppression_snapshot, feed_follow).

- a PostgreSQL database of the calling script's own, dropped, created and migrated
  (``campaign_setup.database_prepare``), members written in SQL
  (``campaign_setup.members_seed``);
- purposes made through the app (``purpose_create``), whose first feed entries the
  app's own sync writes for every member, timed;
- an API client with ``suppressions:read`` and its key;
- gunicorn serving the app (``config.wsgi`` and the load driver's no-op view), one
  sync worker, so that "the web worker's peak RSS" is one process's.

Django is configured in this process for the script's database (``feed_start``).
"""

import http.client
import json
import time
from dataclasses import dataclass
from pathlib import Path

import campaign_setup
import harness
import load_driver

REDIS_URL = "redis://127.0.0.1:6379/14"


def feed_start(database: str, *, members: int) -> str:
    """The script's database, prepared and seeded with ``members``; Django set up on it.
    Returns its URL."""
    url = campaign_setup.database_url(database)
    harness.progress(f"preparing {database}")
    campaign_setup.database_prepare(url)
    with harness.connect(url) as conn:
        harness.progress(f"seeding {members:,} members")
        campaign_setup.members_seed(conn, reachable=members)
    campaign_setup.django_start(url)
    return url


def purpose_with_entries(slug: str, *, mode: str) -> tuple[object, float]:
    """A purpose with ``mode`` in every jurisdiction, made through the app: its commit
    syncs the feed (a first entry for every member). Returns it and the seconds taken."""
    from accounts.jurisdictions import Jurisdiction
    from accounts.services.policies import purpose_create

    started = time.perf_counter()
    purpose = purpose_create(slug=slug, name=slug, modes={j: mode for j in Jurisdiction})
    return purpose, time.perf_counter() - started


def api_key() -> str:
    from api.models import Scope
    from api.services.clients import api_client_create

    _client, key = api_client_create(name="bench", scopes=[Scope.SUPPRESSIONS_READ], by=None)
    return key


def analyse(url: str) -> None:
    with harness.connect(url) as conn:
        for table in ("accounts_suppressionchange", "accounts_suppressionstate"):
            harness.vacuum_analyze(conn, table)


# --- The server ------------------------------------------------------------------------


def wsgi_app():
    return load_driver.wsgi_app()


def server_start(url: str, *, port: int, name: str):
    env = load_driver.server_env(url, redis_url=REDIS_URL, var_dir=name)
    log = Path(harness.OUT_DIR) / f"{name}-gunicorn.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    return harness.gunicorn_start(
        "feed_setup:wsgi_app()",
        port=port,
        workers=1,
        env=env,
        ready_path=load_driver.NOOP_PATH,
        log=log,
    )


def worker_peak_rss_mb(master_pid: int) -> float:
    """The peak RSS (VmHWM) of gunicorn's worker: the master's one child."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    peaks = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


@dataclass
class Download:
    seconds: float
    rows: int  # NDJSON lines after the first, or entries
    first: dict  # the first line (snapshot) or the last page (changes)


def get(port: int, path: str, key: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {response.read()[:300]!r}")
    return response


def snapshot_download(port: int, slug: str, key: str) -> Download:
    """The whole snapshot over HTTP, read in 256 KB blocks, lines counted."""
    started = time.perf_counter()
    response = get(port, f"/api/v1/suppressions/{slug}/snapshot", key)
    first = json.loads(response.readline())
    lines = 0
    while block := response.read(256 * 1024):
        lines += block.count(b"\n")
    return Download(time.perf_counter() - started, lines, first)


def changes_follow(port: int, slug: str, key: str, *, page: int) -> Download:
    """Every entry of the feed over HTTP, ``page`` at a time, parsed as a client would."""
    started, after, entries = time.perf_counter(), 0, 0
    while True:
        body = json.loads(
            get(port, f"/api/v1/suppressions/{slug}/changes?after={after}&limit={page}", key).read()
        )
        entries += len(body["entries"])
        after = body["next_cursor"]
        if not body["has_more"]:
            return Download(time.perf_counter() - started, entries, body)
