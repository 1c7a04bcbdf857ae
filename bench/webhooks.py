"""Benchmark: ESP webhook ingestion through the real HTTP stack, and its processing.

Against a ceiling (a no-op view behind the same gunicorn and middleware), served by
gunicorn as ``webhooks:wsgi_app()`` with a Celery worker processing the stored events,
driven by load_driver (wrk, and a fixed arrival rate). What it measures, the targets,
the options and what a run takes: bench/README.md.

Usage: .venv/bin/python bench/webhooks.py [--events N] [--rounds R] [--only SHAPE]
           [--processors 1,2] [--no-drain] [--latency-seconds S] [--noop-requests N] [--threads T]
           [--connections C] [--web-workers W] [--database NAME] [--redis-url URL]
           [--port P] [--keep]
"""

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import campaign_setup
import harness
import load_driver

DATABASE = "renotify_bench_webhooks"
PORT = 8765
REDIS_URL = "redis://127.0.0.1:6379/13"
PAYLOADS = Path(__file__).resolve().parent.parent / "tests" / "webhook_payloads"
SENT_AT = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
EVENT_AT = SENT_AT + timedelta(hours=1)  # "Delivery"/"delivered": an hour after sending
OPEN_AT = SENT_AT + timedelta(hours=2)
BARE_EVERY = 10  # every 10th event has no delivery_id metadata: matched by message id

TARGET_ONE_PER_POST = 1_200  # events/s stored
TARGET_BATCHED = 20_000
TARGET_LAG_SECONDS = 60.0
TARGET_P99_MS = 50.0


# --- The server side: the app plus a no-op view (gunicorn 'webhooks:wsgi_app()') -------


def wsgi_app():
    """The app's WSGI application with the no-op view appended to its URLs, behind the
    same middleware."""
    return load_driver.wsgi_app()


# --- Payloads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    name: str
    path: str
    per_post: int
    main: str  # fixture of the main set's events
    extra: str  # fixture of the latency run's (new) events
    target: int

    def is_batch(self) -> bool:
        return self.per_post > 1


SHAPES = {
    "postmark": Shape(
        "postmark",
        "/anymail/postmark/tracking/",
        1,
        "delivery.json",
        "open.json",
        TARGET_ONE_PER_POST,
    ),
    "sendgrid": Shape(
        "sendgrid",
        "/anymail/sendgrid/tracking/",
        100,
        "delivered.json",
        "open.json",
        TARGET_BATCHED,
    ),
}


def templates(shape: Shape, fixture: str) -> tuple[str, str]:
    """(with metadata, without) one-event JSON templates from a captured payload, with
    ``{{name}}`` placeholders: delivery_id, message_id, recipient, event_id, at, ts."""
    raw = json.loads((PAYLOADS / shape.name / fixture).read_text())
    event = raw[0] if isinstance(raw, list) else raw
    if shape.name == "postmark":
        for key in ("DeliveredAt", "ReceivedAt"):
            if key in event:
                event[key] = "{{at}}"
        bare = {k: v for k, v in event.items() if k != "Metadata"}
    else:
        event["sg_event_id"] = "{{event_id}}"
        event["timestamp"] = "__TS__"
        bare = {k: v for k, v in event.items() if k != "delivery_id"}

    def dump(obj: dict) -> str:
        return json.dumps(obj, separators=(",", ":")).replace('"__TS__"', "{{ts}}")

    return dump(event), dump(bare)


def event_vars(i: int, *, lo: int, n: int, kind: str, at: datetime) -> dict[str, str]:
    """Placeholders of event ``i``: delivery ``lo + i % n``; past n, the same deliveries
    again one second later (a new event all the same)."""
    delivery = lo + i % n
    when = at + timedelta(seconds=i // n)
    return {
        "delivery_id": str(delivery),
        "message_id": f"bench-{delivery}@renotify.test",
        "recipient": f"m{delivery}@example.test",
        "event_id": f"{kind}-{i}",
        "at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ts": str(int(when.timestamp())),
    }


PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def body_of(shape: Shape, tpls: tuple[str, str], first: int, count: int, **kw) -> bytes:
    events = []
    for i in range(first, first + count):
        tpl = tpls[1] if i % BARE_EVERY == BARE_EVERY - 1 else tpls[0]
        values = event_vars(i, **kw)
        events.append(PLACEHOLDER.sub(lambda m, v=values: v[m.group(1)], tpl))
    return ("[" + ",".join(events) + "]" if shape.is_batch() else events[0]).encode()


def auth_header(env: dict[str, str]) -> str:
    secret = env["ANYMAIL_WEBHOOK_SECRET"].split(",")[0]
    return "Basic " + base64.b64encode(secret.encode()).decode()


# --- wrk: saturation, closed loop, exactly the N events ----------------------------------

# After load_driver.LUA_DRIVER (MARK, T, marker, filler_request). Thread k of T sends
# requests k, k+T, k+2T, ... of R = ceil(N / PER); request r holds events
# r*PER .. (r+1)*PER-1, built as body_of() builds them. A connection that has no real
# request left sends a filler; once a thread has had a response to each of its real
# requests it writes its "done" marker. The parent times until the last marker, then
# stops wrk with SIGINT. Threads never stop or pause on their own (see LUA_DRIVER).
LUA = r"""
local N, LO, PER, BARE = %(n)d, %(lo)d, %(per)d, %(bare)d
local PATH, AUTH, ARRAY = "%(path)s", "%(auth)s", %(array)s
local AT, TS, KIND = "%(at)s", "%(ts)s", "%(kind)s"
local TPL = [==[%(tpl)s]==]
local TPL_BARE = [==[%(tpl_bare)s]==]
local R, CYCLE = %(requests)d, %(cycle)d  -- requests to send; bodies reused if CYCLE > 0
local R_SET = math.ceil(N / PER)  -- requests in one pass over the set

local quota, next_r, real, bad = 0, 0, 0, 0
local verifying = false
local headers = {["Content-Type"] = "application/json", ["Authorization"] = AUTH}
local filler

local function finish()
  marker("done", real .. " " .. bad .. "\n")
end

function init(args)
  next_r = tid
  verifying = tid == 0  -- wrk calls thread 0's request() once to check it: not sent
  for r = tid, R - 1, T do quota = quota + 1 end
  filler = filler_request()
  if quota == 0 then finish() end
end

local vars = {}
local function event(i)
  local d = LO + i
  vars.delivery_id = tostring(d)
  vars.message_id = "bench-" .. d .. "@renotify.test"
  vars.recipient = "m" .. d .. "@example.test"
  vars.event_id = KIND .. "-" .. i
  vars.at = AT
  vars.ts = TS
  local tpl = (i %% BARE == BARE - 1) and TPL_BARE or TPL
  return (tpl:gsub("{{([%%w_]+)}}", vars))
end

local function body_of(r)
  r = r %% R_SET
  if not ARRAY then return event(r * PER) end
  local parts = {}
  for i = r * PER, math.min(N, (r + 1) * PER) - 1 do parts[#parts + 1] = event(i) end
  return "[" .. table.concat(parts, ",") .. "]"
end

local cache = {}
function request()
  if verifying or next_r >= R then
    verifying = false
    return filler
  end
  local r = next_r
  next_r = next_r + T
  if CYCLE == 0 then return wrk.format("POST", PATH, headers, body_of(r)) end
  local k = r %% CYCLE
  cache[k] = cache[k] or wrk.format("POST", PATH, headers, body_of(k))
  return cache[k]
end

function response(status, hdrs, body)
  if status == 204 then return end
  real = real + 1
  if status ~= 200 then bad = bad + 1 end
  if real == quota then finish() end
end
"""


@dataclass
class Saturation:
    seconds: float
    requests: int
    bad: int
    wrk_p50_ms: float
    wrk_p99_ms: float
    socket_errors: str


def wrk_run(
    shape: Shape,
    tpls,
    *,
    path: str,
    n: int,
    lo: int,
    env,
    threads: int,
    connections: int,
    requests: int = 0,
    cycle: int = 0,
) -> Saturation:
    """POST the set of ``n`` events once (or ``requests`` POSTs, going round the set;
    with ``cycle``, reusing the first ``cycle`` bodies: the no-op view's runs, where
    building 100-event bodies would cost the load generator more than the server)."""
    values = {
        "n": n,
        "lo": lo,
        "per": shape.per_post,
        "cycle": cycle,
        "requests": requests or -(-n // shape.per_post),
        "bare": BARE_EVERY,
        "path": path,
        "auth": auth_header(env),
        "array": "true" if shape.is_batch() else "false",
        "at": EVENT_AT.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ts": int(EVENT_AT.timestamp()),
        "kind": "main",
        "tpl": tpls[0],
        "tpl_bare": tpls[1],
    }
    run = load_driver.wrk_start(
        LUA, values, threads=threads, connections=connections, duration="900s",
        timeout="60s", port=PORT,
    )  # fmt: skip
    try:
        run.wait("done", within=900)
        markers = run.texts("done")
        seconds = time.perf_counter() - run.started
    finally:
        output = run.output()
    if len(markers) < threads:
        raise SystemExit(f"wrk did not finish ({len(markers)}/{threads} threads):\n{output}")
    run.remove()
    real = sum(int(m.split()[0]) for m in markers)
    bad = sum(int(m.split()[1]) for m in markers)
    return Saturation(
        seconds,
        real,
        bad,
        *load_driver.wrk_latency(output),
        load_driver.wrk_socket_errors(output),
    )


# --- Open loop at a fixed rate (this process) -------------------------------------------

answered_200 = load_driver.response_check(200)


def latency_requests(shape: Shape, path: str, *, count: int, first: int, lo: int, n: int, env):
    """``count`` POSTs of new events (the shape's "open" fixture), numbered from ``first``."""
    tpls = templates(shape, shape.extra)
    headers = {"Authorization": auth_header(env), "Content-Type": "application/json"}
    requests = []
    for k in range(count):
        body = body_of(
            shape,
            tpls,
            first + k * shape.per_post,
            shape.per_post,
            lo=lo,
            n=n,
            kind="open",
            at=OPEN_AT,
        )
        requests.append(load_driver.raw_request("POST", path, headers, body, port=PORT))
    return requests


# --- Processes (every one stopped by its pid) ---------------------------------------------


def server_env(url: str) -> dict[str, str]:
    return load_driver.server_env(url, redis_url=REDIS_URL, var_dir="webhooks_var")


def worker_start(env, log: Path, *, processes: int = 1) -> subprocess.Popen:
    """A Celery worker of ``processes`` pool processes (each runs one
    ``delivery_events_process`` at a time) with beat embedded, once it is ready."""
    proc = subprocess.Popen(
        [
            str(Path(harness.PYTHON).parent / "celery"),
            "-A",
            "config",
            "worker",
            "-B",
            "--concurrency",
            str(processes),
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
            "-n",
            "webhooksbench@%h",
            "-s",
            str(harness.OUT_DIR / "webhooks_var" / "celerybeat-schedule"),
        ],
        cwd=harness.ROOT,
        env=env,
        start_new_session=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"celery worker exited during start-up: see {log}")
        if "ready." in log.read_text():
            return proc
        time.sleep(0.2)
    harness.process_stop(proc)
    raise SystemExit("celery worker not ready within 60 s")


# --- Database ---------------------------------------------------------------------------------

DELIVERIES_SQL = """
INSERT INTO campaigns_delivery (campaign_id, member_id, wave, status, created_at, attempts,
    locale, sent_at, esp_message_id, error, soft_bounces)
SELECT %(campaign)s, id, 0, 'sent', now(), 1, locale, %(sent_at)s, '', '', 0
FROM accounts_member WHERE email_status = 'ok' AND unsubscribed_at IS NULL ORDER BY id LIMIT %(n)s
"""


def database_setup(url: str, n: int) -> int:
    """Members, a campaign and N sent deliveries with message ids; the first delivery id
    (the ids are contiguous)."""
    campaign_setup.database_prepare(url)
    with harness.connect(url) as conn:
        campaign_setup.members_seed(conn, reachable=n)
    campaign_setup.django_start(url, RENOTIFY_VAR_DIR=str(harness.OUT_DIR / "webhooks_var"))
    campaign = campaign_setup.campaign_create(state="completed", throttle_per_minute=6000)
    with harness.connect(url) as conn:
        conn.execute(DELIVERIES_SQL, {"campaign": campaign.pk, "sent_at": SENT_AT, "n": n})
        conn.execute(
            "UPDATE campaigns_delivery SET esp_message_id = 'bench-' || id || '@renotify.test'"
        )
        lo, hi, count = conn.execute(
            "SELECT min(id), max(id), count(*) FROM campaigns_delivery"
        ).fetchone()
        conn.commit()
        if count != n or hi - lo + 1 != n:
            raise SystemExit(f"expected {n} contiguous deliveries, got {count} in {lo}..{hi}")
        harness.vacuum_analyze(conn, "campaigns_delivery")
    return lo


def events_reset(url: str, *, keep_events: bool = False) -> None:
    """An empty events table (unless ``keep_events``) and every delivery back to "sent",
    settled and checkpointed."""
    with harness.connect(url) as conn:
        if not keep_events:
            conn.execute("TRUNCATE campaigns_deliveryevent RESTART IDENTITY")
        conn.execute(
            "UPDATE campaigns_delivery SET status = 'sent', delivered_at = NULL,"
            " opened_at = NULL, clicked_at = NULL, bounced_at = NULL, complained_at = NULL,"
            " soft_bounces = 0 WHERE status <> 'sent' OR delivered_at IS NOT NULL"
            " OR opened_at IS NOT NULL"
        )
        conn.commit()
        harness.vacuum_analyze(conn, "campaigns_delivery")
        harness.vacuum_analyze(conn, "campaigns_deliveryevent")
        harness.checkpoint(conn)


def event_count(url: str) -> int:
    with harness.connect(url) as conn:
        return harness.count_rows(conn, "campaigns_deliveryevent")


@dataclass
class Processing:
    events: int
    unprocessed: int
    orphans: int
    lag_seconds: float
    processed_per_s: float
    delivered: int
    busy_per_s: float  # events / (last processed_at - first processed_at)


def processing_wait(url: str, *, expected: int, timeout: float = 1200) -> Processing:
    """Wait until every stored event is processed (or ``timeout`` s), then measure."""
    deadline = time.monotonic() + timeout
    with harness.connect(url, autocommit=True) as conn:
        while True:
            (left,) = conn.execute(
                "SELECT count(*) FROM campaigns_deliveryevent WHERE processed_at IS NULL"
            ).fetchone()
            if left == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE processed_at IS NULL),"
            " count(*) FILTER (WHERE is_orphan),"
            " extract(epoch FROM max(processed_at) - max(received_at)),"
            " extract(epoch FROM max(processed_at) - min(received_at)),"
            " extract(epoch FROM max(processed_at) - min(processed_at))"
            " FROM campaigns_deliveryevent"
        ).fetchone()
        (delivered,) = conn.execute(
            "SELECT count(*) FROM campaigns_delivery WHERE delivered_at IS NOT NULL"
        ).fetchone()
    events, unprocessed, orphans, lag, span, busy = row
    if events != expected:
        harness.progress(f"warning: {events} events stored, {expected} expected")
    return Processing(
        events,
        unprocessed,
        orphans,
        float(lag or 0),
        harness.rate(events, float(span or 0)),
        delivered,
        harness.rate(events, float(busy or 0)),
    )


def tasks_received(log: Path) -> int:
    return len(re.findall(r"delivery_events_process\[[^\]]+\] received", log.read_text()))


# --- One shape --------------------------------------------------------------------------------


@dataclass
class Round:
    n: int
    per_post: int
    processors: int  # the worker's pool processes, each running one processor at a time
    noop: list[Saturation]  # just before and just after the webhook's run
    app: Saturation
    stored: int
    processing: Processing
    tasks: int
    noop_latency: load_driver.Latency
    app_latency: load_driver.Latency

    def stored_rate(self) -> float:
        return self.n / self.app.seconds

    def ceiling_rate(self) -> float:
        """The no-op view's events/s over both of its runs (same events per POST)."""
        requests = sum(run.requests for run in self.noop)
        return requests * self.per_post / sum(run.seconds for run in self.noop)


@dataclass
class ShapeResult:
    shape: Shape
    n: int
    rounds: list[Round] = field(default_factory=list)
    replay: Saturation | None = None
    replay_added: int = 0
    drains: dict[int, Processing] = field(default_factory=dict)


def shape_run(shape: Shape, args, *, url: str, lo: int, env, log: Path) -> ShapeResult:
    """Each round once per processor count, each with a worker of its own."""
    result = ShapeResult(shape, args.events)
    for number in range(args.rounds):
        for processors in args.processors:
            worker = worker_start(env, log, processes=processors)
            try:
                result.rounds.append(
                    round_run(shape, args, number, processors, url=url, lo=lo, env=env, log=log)
                )
            finally:
                harness.process_stop(worker)
    for processors in args.processors if args.drain else ():
        result.drains[processors] = drain_run(shape, processors, url=url, env=env, log=log)
    harness.progress(f"{shape.name}: replay of the main set")
    before_rows = event_count(url)
    result.replay = wrk_run(
        shape, templates(shape, shape.main), path=shape.path, **_load(args, lo, env)
    )
    result.replay_added = event_count(url) - before_rows
    return result


def _load(args, lo: int, env) -> dict:
    return {
        "n": args.events,
        "lo": lo,
        "env": env,
        "threads": args.threads,
        "connections": args.connections,
    }


def drain_run(shape: Shape, processors: int, *, url: str, env, log: Path) -> Processing:
    """Capacity, not arrival: every stored event made unprocessed again (and every
    delivery "sent"), then worked off from a standing start by ``processors``
    processors, each asked for once (``celery call``) after the worker is up; the rate
    is over the processors' own span (first to last processed_at)."""
    with harness.connect(url) as conn:
        conn.execute(
            "UPDATE campaigns_deliveryevent SET processed_at = NULL, delivery_id = NULL,"
            " is_orphan = false, is_machine = false, ledger_due_at = NULL"
        )
        conn.commit()
    events_reset(url, keep_events=True)
    expected = event_count(url)
    harness.progress(f"{shape.name}: backlog of {expected:,} events, {processors} processor(s)")
    worker = worker_start(env, log, processes=processors)
    try:
        for _ in range(processors):
            subprocess.run(
                [str(Path(harness.PYTHON).parent / "celery"), "-A", "config", "call",
                 "campaigns.tasks.delivery_events_process"],
                cwd=harness.ROOT, env=env, check=True, capture_output=True,
            )  # fmt: skip
        drained = processing_wait(url, expected=expected)
    finally:
        harness.process_stop(worker)
    harness.progress(f"  drained at {drained.busy_per_s:,.0f} events/s")
    return drained


def round_run(
    shape: Shape, args, number: int, processors: int, *, url: str, lo: int, env, log: Path
) -> Round:
    """From an empty events table: the no-op view, the set posted while the worker
    processes, the no-op view again, then the open-loop pair."""
    tpls = templates(shape, shape.main)
    load = _load(args, lo, env)
    noop = {**load, "path": load_driver.NOOP_PATH, "requests": args.noop_requests, "cycle": 64}
    events_reset(url)
    harness.progress(f"{shape.name} round {number + 1}/{args.rounds}, {processors} processor(s)")
    before = wrk_run(shape, tpls, **noop)
    tasks_before = tasks_received(log)
    app = wrk_run(shape, tpls, path=shape.path, **load)
    stored = event_count(url)
    processing = processing_wait(url, expected=args.events)
    tasks = tasks_received(log) - tasks_before
    after = wrk_run(shape, tpls, **noop)
    rnd = Round(
        args.events,
        shape.per_post,
        processors,
        [before, after],
        app,
        stored,
        processing,
        tasks,
        None,
        None,
    )
    harness.progress(
        f"  stored {rnd.stored_rate():,.0f} events/s ({stored:,} rows), ceiling"
        f" {rnd.ceiling_rate():,.0f}; processed {processing.processed_per_s:,.0f}/s,"
        f" lag {processing.lag_seconds:.1f} s, {processing.unprocessed} left"
    )
    rnd.noop_latency, rnd.app_latency = latency_pair(
        shape, number * 10 + processors, app.requests / app.seconds / 2, args, lo=lo, env=env
    )
    processing_wait(url, expected=args.events + rnd.app_latency.sent * shape.per_post)
    return rnd


def latency_pair(shape: Shape, number: int, rate: float, args, *, lo: int, env):
    """Open loop at ``rate`` requests/s: the no-op view, then the webhook (new events)."""
    count = max(1, int(rate * args.latency_seconds))
    first = (number + 1) * 10_000_000  # new events every round
    runs = []
    for path in (load_driver.NOOP_PATH, shape.path):
        requests = latency_requests(
            shape, path, count=count, first=first, lo=lo, n=args.events, env=env
        )
        runs.append(load_driver.fixed_rate_run(requests, rate, port=PORT, check=answered_200))
    noop, app = runs
    harness.progress(
        f"  at {rate:,.0f} requests/s: p50/p99 {app.p50_ms:.1f}/{app.p99_ms:.1f} ms"
        f" (no-op {noop.p50_ms:.1f}/{noop.p99_ms:.1f}), achieved {app.achieved_rate:,.0f}/s"
    )
    return noop, app


# --- Report -------------------------------------------------------------------------------------


def report(results: list[ShapeResult]) -> dict:
    from harness import median, rate, table

    rows, targets, saved = [], [], {}
    for res in results:
        s, rs = res.shape, res.rounds
        figures = {
            "events_per_post": s.per_post,
            "events": res.n,
            "stored_events_per_s": median([r.stored_rate() for r in rs]),
            "ceiling_events_per_s": median([r.ceiling_rate() for r in rs]),
            "share_of_ceiling": median([r.stored_rate() / r.ceiling_rate() for r in rs]),
            "processing": {
                str(count): _processing_figures([r for r in rs if r.processors == count])
                for count in sorted({r.processors for r in rs})
            },
            "backlog_drained_events_per_s": {
                str(count): drained.busy_per_s for count, drained in res.drains.items()
            },
            "half_rate_requests_per_s": median([r.app_latency.rate for r in rs]),
            "p50_ms": median([r.app_latency.p50_ms for r in rs]),
            "p99_ms": median([r.app_latency.p99_ms for r in rs]),
            "ceiling_p50_ms": median([r.noop_latency.p50_ms for r in rs]),
            "ceiling_p99_ms": median([r.noop_latency.p99_ms for r in rs]),
            "replay_rows_added": res.replay_added,
            "replay_events_per_s": rate(res.n, res.replay.seconds),
            "rounds": [_round_dict(r) for r in rs],
        }
        figures["targets"] = _targets(s, figures)
        saved[s.name] = figures
        rows += _figure_rows(s, figures)
        targets += [
            [name, t["measured"], "PASS" if t["pass"] else "MISS"]
            for name, t in figures["targets"].items()
        ]
    print(table(["figure (medians of rounds)", "value"], rows))
    print()
    print(table(["target", "measured", ""], targets))
    return {**saved, "targets": {k: v for f in saved.values() for k, v in f["targets"].items()}}


def _processing_figures(rs: list[Round]) -> dict:
    from harness import median

    return {
        "processed_events_per_s": median([r.processing.processed_per_s for r in rs]),
        "processing_lag_s": median([r.processing.lag_seconds for r in rs]),
        "max_processing_lag_s": max(r.processing.lag_seconds for r in rs),
        "unprocessed": max(r.processing.unprocessed for r in rs),
        "celery_tasks": median([r.tasks for r in rs]),
    }


def _targets(s: Shape, f: dict) -> dict:
    from harness import fmt_rate, target

    found = {
        f"{s.name} stored >= {s.target:,} events/s": target(
            fmt_rate(f["stored_events_per_s"]),
            f">= {s.target}",
            f["stored_events_per_s"] >= s.target,
        )
    }
    for count, p in f["processing"].items():
        found[
            f"{s.name} processed within {TARGET_LAG_SECONDS:.0f} s of the last POST,"
            f" {count} processor(s)"
        ] = target(
            f"{p['processing_lag_s']:.1f} s",
            f"<= {TARGET_LAG_SECONDS:.0f} s",
            p["processing_lag_s"] <= TARGET_LAG_SECONDS and p["unprocessed"] == 0,
        )
    found[f"{s.name} p99 < {TARGET_P99_MS:.0f} ms at half saturation"] = target(
        f"{f['p99_ms']:.1f} ms", f"< {TARGET_P99_MS:.0f} ms", f["p99_ms"] < TARGET_P99_MS
    )
    found[f"{s.name} replay adds 0 rows"] = target(
        str(f["replay_rows_added"]), "0", f["replay_rows_added"] == 0
    )
    return found


def _figure_rows(s: Shape, f: dict) -> list[list[str]]:
    from harness import fmt_rate

    rows = [
        [f"{s.name} ({s.per_post}/POST): stored events/s", fmt_rate(f["stored_events_per_s"])],
        ["  no-op ceiling events/s, same rounds", fmt_rate(f["ceiling_events_per_s"])],
        ["  stored / ceiling (median of rounds' ratios)", f"{f['share_of_ceiling']:.0%}"],
    ]
    for count, p in f["processing"].items():
        rows += [
            [
                f"  {count} processor(s): events/s, first receipt to last processed",
                fmt_rate(p["processed_events_per_s"]),
            ],
            [
                "    last processed_at - last received_at (max)",
                f"{p['processing_lag_s']:.1f} s ({p['max_processing_lag_s']:.1f} s)",
            ],
            ["    Celery tasks received during a round", f"{p['celery_tasks']:.0f}"],
        ]
    for count, busy in f["backlog_drained_events_per_s"].items():
        rows.append(
            [f"  {count} processor(s): a standing backlog drained, events/s", fmt_rate(busy)]
        )
    rows += [
        [
            f"  open loop at {f['half_rate_requests_per_s']:,.0f} req/s: p50 / p99",
            f"{f['p50_ms']:.1f} / {f['p99_ms']:.1f} ms",
        ],
        [
            "  no-op view at the same rate: p50 / p99",
            f"{f['ceiling_p50_ms']:.1f} / {f['ceiling_p99_ms']:.1f} ms",
        ],
        [
            "  replay of the set: rows added, events/s",
            f"{f['replay_rows_added']}, {fmt_rate(f['replay_events_per_s'])}",
        ],
    ]
    return rows


def _round_dict(r: Round) -> dict:
    from dataclasses import asdict

    return {
        "processors": r.processors,
        "stored_events_per_s": r.stored_rate(),
        "ceiling_events_per_s": r.ceiling_rate(),
        "rows_stored": r.stored,
        "app": asdict(r.app),
        "noop": [asdict(run) for run in r.noop],
        "processing": asdict(r.processing),
        "celery_tasks": r.tasks,
        "app_latency": asdict(r.app_latency),
        "noop_latency": asdict(r.noop_latency),
    }


# --- Main ---------------------------------------------------------------------------------------


def main() -> None:
    global PORT, REDIS_URL  # the helpers above read them; set once, before any use
    args = arguments()
    PORT, REDIS_URL = args.port, args.redis_url
    harness.OUT_DIR.mkdir(parents=True, exist_ok=True)
    url = campaign_setup.database_url(args.database)
    harness.progress(f"setting up {args.events:,} deliveries in {args.database}")
    lo = database_setup(url, args.events)
    env = server_env(url)
    log = harness.OUT_DIR / "webhooks-worker.log"
    shapes = [SHAPES[args.only]] if args.only else list(SHAPES.values())
    results = []
    load_driver.sigterm_unwinds()
    server = load_driver.server_start(
        "webhooks:wsgi_app()", port=PORT, env=env, workers=args.web_workers
    )
    try:
        for shape in shapes:
            results.append(shape_run(shape, args, url=url, lo=lo, env=env, log=log))
        if args.keep:
            worker = worker_start(env, log, processes=max(args.processors))
            try:
                input(f"gunicorn pid {server.pid}, worker pid {worker.pid}: Enter to stop ")
            finally:
                harness.process_stop(worker)
    finally:
        harness.process_stop(server)
    print(
        f"\ngunicorn {args.web_workers} sync workers, wrk -t{args.threads} -c{args.connections},"
        f" {args.rounds} round(s) per processor count, {os.cpu_count()} CPUs\n"
    )
    setup = {"web_workers": args.web_workers, "processors": args.processors}
    path = harness.save_results("webhooks", {**report(results), "setup": setup})
    print(f"\n(figures saved to {path.relative_to(harness.ROOT)})")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=sorted(SHAPES))
    parser.add_argument(
        "--processors",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2],
        help="the worker's pool processes, one round set each (default 1,2)",
    )
    parser.add_argument(
        "--drain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the rounds, time each processor count working off a standing backlog",
    )
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument(
        "--noop-requests", type=int, default=20_000, help="POSTs of each no-op run (two per round)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument(
        "--web-workers",
        type=int,
        default=load_driver.WORKERS,
        help=f"gunicorn sync workers ({load_driver.WORKERS})",
    )
    parser.add_argument("--database", default=DATABASE, help=f"its own database ({DATABASE})")
    parser.add_argument("--redis-url", default=REDIS_URL, help=f"broker and beat ({REDIS_URL})")
    parser.add_argument("--port", type=int, default=PORT, help=f"gunicorn's port ({PORT})")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave gunicorn and a worker up until Enter is pressed (for py-spy)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
