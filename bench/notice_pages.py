"""Benchmark: the hosted notice page (GET) and a one-tap objection (POST) under load.

Against a floor (a minimal Django page on the same table), served by gunicorn as
``notice_pages:wsgi_app()``, driven by load_driver (wrk, and a fixed arrival rate).
What it measures, the targets, the options and what a run takes: bench/README.md.

Usage: .venv/bin/python bench/notice_pages.py [--members N] [--rounds R] [--seconds S]
           [--connections C] [--threads T] [--get-rate 400] [--post-rate 200]
           [--keep] [--fresh]
"""

import argparse
import json
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import harness
import load_driver

DATABASE = "renotify_bench_pages"
PORT = 8767
REDIS_URL = "redis://127.0.0.1:6379/12"
FLOOR_PATH = "/bench/floor/"
FLOOR_TABLE = "bench_floor_post"
SEED_TABLE = "bench_notice_pages"  # how the database was seeded, for reuse
HISTORY_TABLE = "bench_ledger_history"  # where the seeded ledger history ends
# The ledger is never empty in production: before any run, members at these delivery
# offsets acknowledged the notice (one in ten) or objected (one in fifty, with their
# Preference), as a chain of real events. The POST links avoid the objectors.
ACKNOWLEDGED_EVERY, ACKNOWLEDGED_AT = 10, 3
OBJECTED_EVERY, OBJECTED_AT = 50, 25
HISTORY_IP = "198.51.100.7"
PURPOSE = "ai-training"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CELERY_QUEUE = "celery"  # the default queue's Redis list
RATE_PER_IP = "100000000/m"  # raised: all the load comes from one address
RATE_PER_TOKEN = "1000/m"
GET_POOL = 100_000  # notice links the GETs rotate over
POST_CAP = 3_000  # POST links minted per second of a saturating run: above any rate seen
SAMPLE_SEED = 2026

GET_RATE = 400  # requests/s of the open-loop runs
POST_RATE = 200
TARGET_GET_RPS = 800
TARGET_GET_P99_MS = 25.0
TARGET_POST_RPS = 300
TARGET_POST_P99_MS = 50.0
TARGET_FLOOR_SHARE = 0.5  # "the real page should keep at least half of that"

FLOOR_TEMPLATE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Member</title></head>'
    "<body><h1>{{ member.external_id }}</h1><p>{{ member.locale }} {{ member.country }}</p>"
    '<form method="post">{% csrf_token %}'
    '<button type="submit" name="action" value="object">Object</button></form></body></html>'
)


# --- The server side: the app plus the floor (gunicorn 'notice_pages:wsgi_app()') ---------------


def wsgi_app():
    """The app's WSGI application with the floor page (and the no-op view) appended to
    its URLs, behind the same middleware."""
    return load_driver.wsgi_app(_floor_routes)


def _floor_routes() -> list:
    from django.apps import apps
    from django.db import connection
    from django.http import HttpResponse, HttpResponseRedirect
    from django.shortcuts import get_object_or_404
    from django.template import engines
    from django.urls import path

    Member = apps.get_model("accounts", "Member")
    page = engines["django"].from_string(FLOOR_TEMPLATE)

    def floor(request, member_id: int):
        member = get_object_or_404(Member, pk=member_id)
        if request.method == "POST":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {FLOOR_TABLE} (member_id, action) VALUES (%s, %s)",
                    [member.pk, request.POST.get("action", "")[:32]],
                )
            return HttpResponseRedirect(f"{FLOOR_PATH}{member.pk}/?done=object")
        return HttpResponse(page.render({"member": member}, request))

    return [path(f"{FLOOR_PATH.lstrip('/')}<int:member_id>/", floor)]


# --- Endpoints --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str  # "floor GET", "page POST", ...
    method: str
    prefix: str  # URL = prefix + key + "/"
    keys: str  # which key file: "get_tokens", "get_members", "post_tokens", ...
    expect: int
    location: str | None  # required in the Location header, for redirects

    @property
    def is_page(self) -> bool:
        return self.name.startswith("page")


ENDPOINTS = {
    "floor GET": Endpoint("floor GET", "GET", FLOOR_PATH, "get_members", 200, None),
    "page GET": Endpoint("page GET", "GET", "/n/", "get_tokens", 200, None),
    "floor POST": Endpoint("floor POST", "POST", FLOOR_PATH, "post_members", 302, "done=object"),
    "page POST": Endpoint("page POST", "POST", "/n/", "post_tokens", 302, "done=object"),
}


@dataclass
class Load:
    """What the load generators send: keys per endpoint, and the POSTs' CSRF pair."""

    keys: dict[str, list[str]]  # key file name -> URL keys (tokens or member ids)
    csrf_cookie: str
    csrf_token: str
    workdir: Path

    def body(self) -> str:
        return f"csrfmiddlewaretoken={self.csrf_token}&action=object&purpose={PURPOSE}"

    def headers(self, endpoint: Endpoint) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": "text/html"}
        if endpoint.method == "POST":
            headers.update(
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Cookie": f"csrftoken={self.csrf_cookie}",
                    "Origin": f"http://127.0.0.1:{PORT}",
                }
            )
        return headers

    def key_file(self, name: str, part: slice = slice(None)) -> Path:
        path = self.workdir / f"{name}-{part.start or 0}-{part.stop or 'end'}.txt"
        if not path.exists():
            path.write_text("\n".join(self.keys[name][part]) + "\n")
        return path


# --- Saturation: wrk, closed loop --------------------------------------------------------------

# After load_driver.LUA_DRIVER (MARK, T, STOP, marker, filler_request). Thread k of T
# sends the keys k, k+T, ... of FILE over and over until STOP appears, then fillers
# until its last real response is in: its "done" marker.
LUA = r"""
local FILE = [==[%(file)s]==]
local METHOD, PREFIX, BODY = "%(method)s", "%(prefix)s", %(body)s
local EXPECT, LOCATION = %(expect)d, %(location)s
local HEADERS = %(headers)s

-- Globals, so that done() can read them from each thread (thread:get).
sent, received, good, bad, repeats = 0, 0, 0, 0, 0
local keys, n, i = {}, 0, 0
local verifying, stopping, finished = false, false, false
local filler

local function finish()
  finished = true
  marker("done", received .. "\n")
end

local function check_finished()
  if stopping and not finished and received == sent then finish() end
end

function init(args)
  local k = 0
  for line in io.lines(FILE) do
    if line ~= "" then
      if k %% T == tid then n = n + 1; keys[n] = line end
      k = k + 1
    end
  end
  verifying = tid == 0  -- wrk calls thread 0's request() once to check it: not sent
  filler = filler_request()
  marker("init", "")  -- the script loaded and ran
end

function request()
  if verifying then
    verifying = false
    return filler
  end
  if not stopping then
    local f = io.open(STOP, "r")  -- one open() per request (cost: bench/README.md)
    if f then f:close(); stopping = true end
  end
  if stopping then
    check_finished()
    return filler
  end
  i = i + 1
  if i > n then i = 1 end
  if sent >= n then repeats = repeats + 1 end  -- a key used again: not a first view/POST
  sent = sent + 1
  return wrk.format(METHOD, PREFIX .. keys[i] .. "/", HEADERS, BODY)
end

function response(status, headers, body)
  if status == 204 then  -- a filler
    check_finished()
    return
  end
  received = received + 1
  local ok = status == EXPECT
  if ok and LOCATION then ok = string.find(headers["Location"] or "", LOCATION, 1, true) ~= nil end
  if ok then good = good + 1 else bad = bad + 1 end
  check_finished()
end

function done(summary, latency, requests)
  local s, r, g, b, rep = 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("sent"); r = r + t:get("received"); g = g + t:get("good")
    b = b + t:get("bad"); rep = rep + t:get("repeats")
  end
  io.write(string.format("BENCH sent=%%d received=%%d good=%%d bad=%%d repeats=%%d\n",
    s, r, g, b, rep))
end
"""


@dataclass
class Saturation:
    seconds: float  # wrk's start to the last real response
    sent: int
    received: int
    good: int
    bad: int
    repeats: int  # requests that reused a key (pool exhausted)
    socket_errors: int
    wrk_p50_ms: float  # closed loop, fillers included (a handful)
    wrk_p99_ms: float

    @property
    def rate(self) -> float:
        return harness.rate(self.good, self.seconds)

    @property
    def errors(self) -> int:
        return self.bad + self.socket_errors + (self.sent - self.received)


def wrk_run(
    endpoint: Endpoint, load: Load, keys: Path, seconds: float, threads: int, connections: int
) -> Saturation:
    lua_string = load_driver.lua_string
    values = {
        "file": keys,
        "method": endpoint.method,
        "prefix": endpoint.prefix,
        "body": lua_string(load.body() if endpoint.method == "POST" else None),
        "expect": endpoint.expect,
        "location": lua_string(endpoint.location),
        "headers": load_driver.lua_table(load.headers(endpoint)),
    }
    run = load_driver.wrk_start(
        LUA, values, threads=threads, connections=connections, duration=f"{int(seconds) + 300}s",
        timeout="30s", port=PORT, workdir=load.workdir,
    )  # fmt: skip
    try:
        # The clock starts once every thread has read its keys (init), just before it connects.
        if not run.wait("init", within=30):
            raise SystemExit(f"wrk's script did not start: {run.script}")
        started = time.perf_counter()
        time.sleep(seconds)
        run.stop_ask()
        finished = run.wait("done", within=60)
        elapsed = time.perf_counter() - started
    finally:
        output = run.output()
    counts = re.search(
        r"BENCH sent=(\d+) received=(\d+) good=(\d+) bad=(\d+) repeats=(\d+)", output
    )
    if counts is None:
        raise SystemExit(f"wrk gave no counts:\n{output}")
    if not finished:
        harness.progress(f"warning: some {endpoint.name} requests got no response")
    sent, received, good, bad, repeats = (int(v) for v in counts.groups())
    errors = load_driver.wrk_socket_error_count(output)
    run.remove()
    return Saturation(
        elapsed, sent, received, good, bad, repeats, errors, *load_driver.wrk_latency(output)
    )


# --- Latency: a fixed arrival rate, open loop (this process) ----------------------------------


def raw_requests(endpoint: Endpoint, load: Load, keys: list[str]) -> list[bytes]:
    body = load.body().encode() if endpoint.method == "POST" else b""
    headers = load.headers(endpoint)
    return [
        load_driver.raw_request(
            endpoint.method, f"{endpoint.prefix}{key}/", headers, body, port=PORT
        )
        for key in keys
    ]


def fixed_rate_run(endpoint: Endpoint, requests: list[bytes], rate: float) -> load_driver.Latency:
    check = load_driver.response_check(endpoint.expect, endpoint.location)
    return load_driver.fixed_rate_run(requests, rate, port=PORT, check=check)


# --- Database ----------------------------------------------------------------------------------

DELIVERIES_SQL = """
INSERT INTO campaigns_delivery (campaign_id, member_id, wave, status, created_at, attempts,
    locale, sent_at, esp_message_id, error, soft_bounces)
SELECT %(campaign)s, id, 0, 'sent', now() - interval '3 days', 1, locale,
    now() - interval '3 days' + id * interval '1 millisecond',
    'bench-' || id || '@renotify.test', '', 0
FROM accounts_member ORDER BY id
"""


def database_exists(url: str) -> bool:
    with harness.connect(harness.with_database(url, "postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [harness.database_name(url)]
        ).fetchone()
    return row is not None


def database_reusable(url: str, members: int) -> bool:
    """A database a previous ``--keep`` run seeded with the same number of members."""
    if not database_exists(url):
        return False
    with harness.connect(url) as conn:
        if conn.execute("SELECT to_regclass(%s)", [SEED_TABLE]).fetchone()[0] is None:
            return False
        row = conn.execute(f"SELECT members FROM {SEED_TABLE}").fetchone()
        if row is None or row[0] != members:
            return False
        deliveries = harness.count_rows(conn, "campaigns_delivery")
    return deliveries == members


def database_setup(url: str, members: int, *, fresh: bool) -> tuple[bool, dict[str, float]]:
    """Seed (or reuse) the database and set Django up in this process on it.
    Returns (reused, seconds per seeding step)."""
    import campaign_setup

    timings: dict[str, float] = {}
    reused = not fresh and database_reusable(url, members)
    if reused:
        harness.progress(f"reusing {DATABASE} ({members:,} members): migrate only")
        harness.database_migrate(url)
    else:
        harness.progress(f"seeding {DATABASE}: {members:,} members and deliveries")
        started = time.perf_counter()
        campaign_setup.database_prepare(url)
        timings["create_migrate_s"] = time.perf_counter() - started
        started = time.perf_counter()
        with harness.connect(url) as conn:
            campaign_setup.members_seed(conn, reachable=members)
        timings["members_s"] = time.perf_counter() - started
    campaign_setup.django_start(url, RENOTIFY_VAR_DIR=str(harness.OUT_DIR / "notice_pages_var"))
    if reused:
        _versions_freeze()
        if not _history_seeded(url):
            timings["history_s"] = ledger_history_seed(url)
        return True, timings
    campaign = campaign_setup.campaign_create(state="completed", throttle_per_minute=6000)
    _versions_freeze()  # after the campaign's version exists (a fresh seed made none before)
    started = time.perf_counter()
    with harness.connect(url) as conn:
        conn.execute(DELIVERIES_SQL, {"campaign": campaign.pk})
        conn.execute(
            f"CREATE TABLE {FLOOR_TABLE} (id bigserial PRIMARY KEY, member_id bigint NOT NULL,"
            " action varchar(32) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            f"CREATE TABLE {SEED_TABLE} (members bigint NOT NULL, seeded_at timestamptz NOT NULL)"
        )
        conn.execute(f"INSERT INTO {SEED_TABLE} VALUES (%s, now())", [members])
        conn.commit()
        harness.vacuum_analyze(conn, "campaigns_delivery")
    timings["deliveries_s"] = time.perf_counter() - started
    timings["history_s"] = ledger_history_seed(url)
    return False, timings


def _history_seeded(url: str) -> bool:
    with harness.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s)", [HISTORY_TABLE]).fetchone()[0] is not None


def ledger_history_seed(url: str) -> float:
    """Write the ledger's history (a valid hash chain, as ``consent_record`` would have
    written it) and the objectors' Preference rows; note where it ends. Returns seconds."""
    from datetime import UTC, datetime, timedelta

    from accounts import ledger
    from accounts.models import Action, Purpose, Source

    started = time.perf_counter()
    purpose_id = Purpose.objects.get(slug=PURPOSE).pk
    ip_hash = ledger.hash_ip(HISTORY_IP)
    begin = datetime.now(UTC) - timedelta(days=2)
    columns = ", ".join([*ledger.HASHED_FIELDS, "prev_hash", "hash"])
    with harness.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")  # TRUNCATE past the trigger
        conn.execute(
            "TRUNCATE accounts_consentevent, accounts_preference, campaigns_objectionreceipt,"
            " campaigns_receiptsweep RESTART IDENTITY CASCADE"
        )
        conn.execute("SET session_replication_role = DEFAULT")
        (lo,) = conn.execute("SELECT min(id) FROM campaigns_delivery").fetchone()
        (version_id,) = conn.execute(
            "SELECT c.notice_version_id FROM campaigns_delivery d"
            " JOIN campaigns_campaign c ON c.id = d.campaign_id WHERE d.id = %s",
            [lo],
        ).fetchone()
        rows = conn.execute(
            "SELECT id - %(lo)s, id, member_id FROM campaigns_delivery"
            " WHERE (id - %(lo)s) %% %(ack)s = %(ack_at)s OR (id - %(lo)s) %% %(obj)s = %(obj_at)s"
            " ORDER BY id",
            {
                "lo": lo,
                "ack": ACKNOWLEDGED_EVERY,
                "ack_at": ACKNOWLEDGED_AT,
                "obj": OBJECTED_EVERY,
                "obj_at": OBJECTED_AT,
            },
        ).fetchall()
        prev_hash = ledger.GENESIS_HASH
        with conn.cursor().copy(f"COPY accounts_consentevent ({columns}) FROM STDIN") as copy:
            for seq, (offset, delivery_id, member_id) in enumerate(rows, start=1):
                objected = offset % OBJECTED_EVERY == OBJECTED_AT
                fields = {
                    "seq": seq,
                    "member_id": member_id,
                    "purpose_id": purpose_id if objected else None,
                    "action": (Action.OBJECT if objected else Action.ACKNOWLEDGE).value,
                    "source": Source.PREFERENCE_PAGE.value,
                    "notice_version_id": version_id,
                    "delivery_id": delivery_id,
                    "created_at": begin + timedelta(milliseconds=seq),
                    "ip_hash": ip_hash,
                    "user_agent": USER_AGENT,
                    "comment": "",
                    "metadata": {},
                }
                event_hash = ledger.event_hash(fields, prev_hash=prev_hash)
                values = [fields[name] for name in ledger.HASHED_FIELDS]
                values[-1] = json.dumps(values[-1])  # metadata goes in as JSON text
                copy.write_row([*values, prev_hash, event_hash])
                prev_hash = event_hash
        conn.execute(
            "INSERT INTO accounts_preference (member_id, purpose_id, choice, chosen_at,"
            " last_event_id) SELECT member_id, purpose_id, 'out', created_at, id"
            " FROM accounts_consentevent WHERE action = %s ORDER BY seq",
            [Action.OBJECT.value],
        )
        conn.execute(
            f"CREATE TABLE {HISTORY_TABLE} AS SELECT"
            " (SELECT coalesce(max(seq), 0) FROM accounts_consentevent) AS last_seq,"
            " (SELECT coalesce(max(id), 0) FROM accounts_preference) AS last_preference_id"
        )
        conn.commit()
        for table in ("accounts_consentevent", "accounts_preference"):
            harness.vacuum_analyze(conn, table)
    harness.progress(f"ledger history: {len(rows):,} events")
    return time.perf_counter() - started


def _versions_freeze() -> None:
    """A version is frozen once its campaign starts sending (campaigns.services.lifecycle);
    the bench writes its campaign straight into "completed", so freeze it here too."""
    from django.utils import timezone

    from campaigns.models import NoticeVersion

    NoticeVersion.objects.filter(frozen_at=None).update(frozen_at=timezone.now())


def database_drop(url: str) -> None:
    from psycopg import sql

    with harness.connect(harness.with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(harness.database_name(url))
            )
        )


def state_reset(url: str) -> None:
    """The ledger back to its seeded history (and Preference, receipts with it), an
    empty floor table, no delivery viewed: settled and checkpointed. The append-only
    trigger refuses DELETE; it is skipped for this one session (replica role), as
    harness.members_reset does."""
    with harness.connect(url) as conn:
        last_seq, last_preference = conn.execute(f"SELECT * FROM {HISTORY_TABLE}").fetchone()
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM campaigns_objectionreceipt")
        conn.execute("DELETE FROM accounts_preference WHERE id > %s", [last_preference])
        conn.execute("DELETE FROM accounts_consentevent WHERE seq > %s", [last_seq])
        # A check recorded since (verify_ledger) would rightly report the end cut off.
        conn.execute("DELETE FROM accounts_ledgercheck")
        conn.execute("DELETE FROM campaigns_receiptsweep")
        # the sender has read the history: receipts are owed for the runs' objections only
        conn.execute("INSERT INTO campaigns_receiptsweep (id, last_seq) VALUES (1, %s)", [last_seq])
        conn.execute(f"TRUNCATE {FLOOR_TABLE} RESTART IDENTITY")
        conn.execute("SET session_replication_role = DEFAULT")
        conn.commit()
    views_reset(url)
    with harness.connect(url) as conn:
        for table in (
            "campaigns_delivery",
            "accounts_member",
            "accounts_consentevent",
            "accounts_preference",
        ):
            harness.vacuum_analyze(conn, table)
        harness.checkpoint(conn)


def views_reset(url: str) -> int:
    """Clear ``viewed_at``: the next GETs are first views. Returns the rows cleared (the
    distinct deliveries the GETs since the last reset viewed)."""
    with harness.connect(url) as conn:
        cleared = conn.execute(
            "UPDATE campaigns_delivery SET viewed_at = NULL WHERE viewed_at IS NOT NULL"
        ).rowcount
        conn.commit()
    return cleared


def event_ids_taken(url: str) -> int:
    """The ledger's id sequence as it stands (an append that found its seq taken
    consumed an id too)."""
    with harness.connect(url) as conn:
        return conn.execute("SELECT last_value FROM accounts_consentevent_id_seq").fetchone()[0]


def rows_written(url: str, endpoint: Endpoint) -> int:
    table = "accounts_consentevent" if endpoint.is_page else FLOOR_TABLE
    with harness.connect(url) as conn:
        return harness.count_rows(conn, table)


def delivery_pools(url: str, members: int, *, get_size: int, post_size: int):
    """(get, post) pools of (delivery id, member id), a seeded sample spread over the
    table; the two are disjoint when there are members enough."""
    rng = random.Random(SAMPLE_SEED)
    # Members who objected in the seeded history would record nothing on a POST.
    population = [o for o in range(members) if o % OBJECTED_EVERY != OBJECTED_AT]
    offsets = rng.sample(population, min(len(population), get_size + post_size))
    with harness.connect(url) as conn:
        (lo,) = conn.execute("SELECT min(id) FROM campaigns_delivery").fetchone()
        ids = [lo + o for o in offsets]
        member_of = dict(
            conn.execute(
                "SELECT id, member_id FROM campaigns_delivery WHERE id = ANY(%s)", [ids]
            ).fetchall()
        )
    if len(member_of) != len(ids):
        raise SystemExit("delivery ids are not contiguous: re-seed with --fresh")
    pairs = [(d, member_of[d]) for d in ids]
    return pairs[: min(get_size, len(pairs))], pairs[-post_size:]


def load_prepare(url: str, args, workdir: Path) -> tuple[Load, int]:
    """Mint the links' tokens and a CSRF pair (Django is set up in this process).
    Returns the load and the number of POST links reserved for each saturating run."""
    from django.http import HttpRequest
    from django.middleware.csrf import get_token

    from campaigns.tokens import notice_token

    post_sat = int(args.seconds * POST_CAP)
    post_fixed = int(args.seconds * args.post_rate) + 1
    if post_sat + post_fixed > args.members:
        raise SystemExit(
            f"{post_sat + post_fixed:,} distinct POST links needed, {args.members:,} members"
        )
    get_pool, post_pool = delivery_pools(
        url, args.members, get_size=GET_POOL, post_size=post_sat + post_fixed
    )
    started = time.perf_counter()
    keys = {
        "get_tokens": [notice_token(d) for d, _ in get_pool],
        "get_members": [str(m) for _, m in get_pool],
        "post_tokens": [notice_token(d) for d, _ in post_pool],
        "post_members": [str(m) for _, m in post_pool],
    }
    request = HttpRequest()
    form_token = get_token(request)
    harness.progress(
        f"minted {len(get_pool) + len(post_pool):,} tokens in"
        f" {time.perf_counter() - started:.1f} s ({len(get_pool):,} GET links,"
        f" {len(post_pool):,} POST links)"
    )
    return Load(keys, request.META["CSRF_COOKIE"], form_token, workdir), post_sat


# --- Processes (every one stopped by its pid) and Redis ---------------------------------------


def server_env(url: str) -> dict[str, str]:
    return load_driver.server_env(
        url,
        redis_url=REDIS_URL,
        var_dir="notice_pages_var",
        SITE_URL=f"http://127.0.0.1:{PORT}",
        RENOTIFY_RATE_PER_IP=RATE_PER_IP,
        RENOTIFY_RATE_PER_TOKEN=RATE_PER_TOKEN,
    )


def redis_db():
    import redis

    return redis.Redis.from_url(REDIS_URL)


def tasks_queued() -> int:
    return redis_db().llen(CELERY_QUEUE)


def receipts_owed(url: str) -> int:
    """The receipts the sender owes once it has read the ledger (it runs no worker: the
    sweep runs here, in this process, after each POST run)."""
    from campaigns.services.receipts import receipts_collect

    receipts_collect()
    with harness.connect(url) as conn:
        return harness.count_rows(conn, "campaigns_objectionreceipt")


# --- Rounds ------------------------------------------------------------------------------------


@dataclass
class Written:
    """Rows a POST run added, against the redirects it received."""

    run: str
    redirects: int
    rows: int
    receipts: int | None  # receipts owed (page POSTs only)
    kicks: int | None  # receipt sender tasks queued: at most one a second per process
    # objections whose unlocked append found the chain moved on, recorded the held way
    # (each such append took an event id and wrote nothing: ids taken - rows)
    held_retries: int | None = None

    @property
    def ok(self) -> bool:
        return self.rows == self.redirects and self.receipts in (None, self.rows)


@dataclass
class Round:
    saturation: dict[str, Saturation] = field(default_factory=dict)
    latency: dict[str, load_driver.Latency] = field(default_factory=dict)
    written: list[Written] = field(default_factory=list)
    first_views: dict[str, int] = field(default_factory=dict)  # page GET run -> deliveries

    def share(self, method: str) -> float:
        page = self.saturation[f"page {method}"].rate
        return page / self.saturation[f"floor {method}"].rate

    def errors(self) -> int:
        return sum(s.errors for s in self.saturation.values()) + sum(
            lat.errors for lat in self.latency.values()
        )


def one_run(kind: str, endpoint: Endpoint, rnd: Round, url: str, run: Callable, *args):
    """``run(endpoint, *args)`` with the database checks around it: a POST run's rows
    written (and receipts owed, sender kicks queued), a page GET run's first views."""
    page_post = endpoint.is_page and endpoint.method == "POST"
    before = rows_written(url, endpoint) if endpoint.method == "POST" else 0
    receipts_before, kicks_before = (receipts_owed(url), tasks_queued()) if page_post else (0, 0)
    ids_before = event_ids_taken(url) if page_post else 0
    result = run(endpoint, *args)
    good = result.good if kind == "saturation" else result.sent - result.errors
    if endpoint.method == "POST":
        receipts = receipts_owed(url) - receipts_before if page_post else None
        kicks = tasks_queued() - kicks_before if page_post else None
        rows = rows_written(url, endpoint) - before
        retries = event_ids_taken(url) - ids_before - rows if page_post else None
        rnd.written.append(Written(f"{endpoint.name} {kind}", good, rows, receipts, kicks, retries))
    elif endpoint.is_page:
        rnd.first_views[kind] = views_reset(url)
    return result


def round_run(number: int, args, *, url: str, load: Load, post_sat: int) -> Round:
    rnd = Round()
    state_reset(url)
    redis_db().flushdb()
    order = ("floor", "page") if number % 2 == 0 else ("page", "floor")
    wrk_opts = (args.seconds, args.threads, args.connections)
    for method, rate in (("GET", args.get_rate), ("POST", args.post_rate)):
        for who in order:
            ep = ENDPOINTS[f"{who} {method}"]
            part = slice(0, post_sat) if method == "POST" else slice(None)
            keys = load.key_file(ep.keys, part)
            sat = one_run("saturation", ep, rnd, url, wrk_run, load, keys, *wrk_opts)
            rnd.saturation[ep.name] = sat
            harness.progress(
                f"  {ep.name}: {sat.rate:,.0f} req/s saturating ({sat.good:,} good,"
                f" {sat.errors} errors, {sat.repeats:,} reused links)"
            )
        count = int(rate * args.seconds)
        for who in order:
            ep = ENDPOINTS[f"{who} {method}"]
            pool = load.keys[ep.keys]
            keys = pool[post_sat : post_sat + count] if method == "POST" else pool[:count]
            requests = raw_requests(ep, load, keys)
            lat = one_run("latency", ep, rnd, url, fixed_rate_run, requests, rate)
            rnd.latency[ep.name] = lat
            harness.progress(
                f"  {ep.name} at {rate} req/s: p50/p99 {lat.p50_ms:.1f}/{lat.p99_ms:.1f} ms,"
                f" achieved {lat.achieved_rate:,.0f}/s, {lat.errors} errors"
            )
    for w in rnd.written:
        if not w.ok:
            harness.progress(
                f"  warning: {w.run}: {w.rows} rows, {w.redirects} redirects,"
                f" {w.receipts} receipts owed"
            )
    return rnd


def warm_up(load: Load, args, post_sat: int) -> None:
    """Two seconds of each endpoint: both workers import, compile and connect first."""
    for ep in ENDPOINTS.values():
        part = slice(0, post_sat) if ep.method == "POST" else slice(None)
        keys = load.key_file(ep.keys, part)
        sat = wrk_run(ep, load, keys, 2, args.threads, args.connections)
        harness.progress(f"warm-up {ep.name}: {sat.rate:,.0f} req/s, {sat.errors} errors")
        if sat.good == 0:
            raise SystemExit(f"{ep.name}: no good response in the warm-up")


# --- Report ------------------------------------------------------------------------------------


def report(rounds: list[Round], args) -> dict:
    from harness import fmt_rate, median, table, verdict

    def sat(name: str) -> float:
        return median([r.saturation[name].rate for r in rounds])

    def lat(name: str, attr: str) -> float:
        return median([getattr(r.latency[name], attr) for r in rounds])

    def errors(name: str) -> int:
        return sum(r.saturation[name].errors + r.latency[name].errors for r in rounds)

    def ms(name: str) -> str:
        return f"{lat(name, 'p50_ms'):.1f} / {lat(name, 'p99_ms'):.1f} ms"

    share = {m: median([r.share(m) for r in rounds]) for m in ("GET", "POST")}
    rows = []
    for method, rate in (("GET", args.get_rate), ("POST", args.post_rate)):
        floor, page = f"floor {method}", f"page {method}"
        rows += [
            [
                f"{method} saturating req/s (wrk -t{args.threads} -c{args.connections})",
                fmt_rate(sat(floor)),
                fmt_rate(sat(page)),
                f"{share[method]:.0%}",
            ],
            [f"{method} p50 / p99 at {rate} req/s, open loop", ms(floor), ms(page), ""],
            [
                f"  achieved rate, max latency at {rate} req/s",
                f"{lat(floor, 'achieved_rate'):,.0f}/s, {lat(floor, 'max_ms'):.0f} ms",
                f"{lat(page, 'achieved_rate'):,.0f}/s, {lat(page, 'max_ms'):.0f} ms",
                "",
            ],
            [f"{method} errors (all runs, all rounds)", str(errors(floor)), str(errors(page)), ""],
        ]
    written = [w for r in rounds for w in r.written]
    page_written = [w for w in written if w.run.startswith("page")]
    reused = sum(r.saturation[n].repeats for r in rounds for n in ENDPOINTS if "page" in n)
    first_views = median([r.first_views.get("saturation", 0) for r in rounds])
    print(table(["figure (medians of rounds)", "floor", "notice page", "page / floor"], rows))
    print()
    by_round = {m: " ".join(f"{r.share(m):.2f}" for r in rounds) for m in ("GET", "POST")}
    print(f"page / floor saturating, by round: GET {by_round['GET']}, POST {by_round['POST']}")
    print(
        f"page POSTs: {sum(w.redirects for w in page_written):,} redirects,"
        f" {sum(w.rows for w in page_written):,} ledger rows added,"
        f" {sum(w.receipts or 0 for w in page_written):,} receipts owed,"
        f" {sum(w.kicks or 0 for w in page_written):,} sender kicks queued,"
        f" {sum(w.held_retries or 0 for w in page_written):,} recorded the held way after"
        " a stale unlocked read;"
        f" page GET saturating runs viewed {first_views:,.0f} deliveries for the first time"
        f" (median); links reused in page runs: {reused}"
    )
    print()
    total_errors = sum(r.errors() for r in rounds)
    targets = {
        "page GET saturating req/s": (sat("page GET"), TARGET_GET_RPS, ">="),
        f"page GET p99 ms at {args.get_rate} req/s": (
            lat("page GET", "p99_ms"),
            TARGET_GET_P99_MS,
            "<",
        ),
        "page POST saturating req/s": (sat("page POST"), TARGET_POST_RPS, ">="),
        f"page POST p99 ms at {args.post_rate} req/s": (
            lat("page POST", "p99_ms"),
            TARGET_POST_P99_MS,
            "<",
        ),
        "page GET / floor GET (saturating)": (share["GET"], TARGET_FLOOR_SHARE, ">="),
        "page POST / floor POST (saturating)": (share["POST"], TARGET_FLOOR_SHARE, ">="),
        "errors, every run": (total_errors, 0, "=="),
        "POST runs where rows written != redirects": (
            sum(1 for w in written if not w.ok),
            0,
            "==",
        ),
    }
    print(
        table(
            ["target", "measured", "target", "result"],
            [
                [name, _fmt(v), f"{op} {_fmt(g)}", verdict(_meets(v, g, op))]
                for name, (v, g, op) in targets.items()
            ],
        )
    )
    return {
        "members": args.members,
        "rounds": [
            {
                "saturation": {k: {**asdict(v), "rate": v.rate} for k, v in r.saturation.items()},
                "latency": {k: asdict(v) for k, v in r.latency.items()},
                "written": [asdict(w) for w in r.written],
                "first_views": r.first_views,
            }
            for r in rounds
        ],
        "targets": {
            name: {"measured": v, "target": f"{op} {_fmt(g)}", "pass": _meets(v, g, op)}
            for name, (v, g, op) in targets.items()
        },
    }


def _meets(value: float, goal: float, op: str) -> bool:
    return {">=": value >= goal, "<": value < goal, "==": value == goal}[op]


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.2f}" if value < 10 else harness.fmt_rate(value)


# --- Main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of every timed run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--get-rate", type=int, default=GET_RATE, help="open-loop GETs/s")
    parser.add_argument("--post-rate", type=int, default=POST_RATE, help="open-loop POSTs/s")
    parser.add_argument(
        "--keep", action="store_true", help="leave the database for the next run to reuse"
    )
    parser.add_argument("--fresh", action="store_true", help="re-seed even a reusable database")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")

    import campaign_setup

    harness.OUT_DIR.mkdir(parents=True, exist_ok=True)
    url = campaign_setup.database_url(DATABASE)
    load_driver.sigterm_unwinds()
    workdir = Path(tempfile.mkdtemp(prefix="notice-pages-"))
    log = harness.OUT_DIR / "notice_pages-gunicorn.log"
    redis_db().flushdb()
    try:
        reused, timings = database_setup(url, args.members, fresh=args.fresh)
        if timings:
            harness.progress(
                "seeded in "
                + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in timings.items())
            )
        load, post_sat = load_prepare(url, args, workdir)
        from django.db import connections

        connections.close_all()  # this process's own: the server has its own
        rounds: list[Round] = []
        server = load_driver.server_start(
            "notice_pages:wsgi_app()", port=PORT, env=server_env(url), log=log
        )
        try:
            warm_up(load, args, post_sat)
            for number in range(args.rounds):
                harness.progress(f"round {number + 1}/{args.rounds}")
                rounds.append(round_run(number, args, url=url, load=load, post_sat=post_sat))
        finally:
            harness.process_stop(server)
    finally:
        redis_db().flushdb()
        shutil.rmtree(workdir, ignore_errors=True)
        if not args.keep:
            database_drop(url)
    print(
        f"\nnotice pages: {args.members:,} members and deliveries"
        f" ({'reused' if reused else 'seeded'}), gunicorn {load_driver.WORKERS} sync workers,"
        f" wrk -t{args.threads} -c{args.connections}, {args.seconds:g} s runs,"
        f" {args.rounds} round(s), {os.cpu_count()} CPUs\n"
    )
    results = report(rounds, args)
    results["seeding"] = timings
    path = harness.save_results("notice_pages", results)
    print(f"\n(figures saved to {path.relative_to(harness.ROOT)}; server log {log.name})")


if __name__ == "__main__":
    main()
