"""Benchmark: ESP webhook ingestion through the real HTTP stack, and its processing.

gunicorn (2 sync workers) serves the app's own WSGI application on 127.0.0.1:PORT,
with one extra no-op view (``/bench/noop/``, the ceiling: the same POST through the
same gunicorn and Django middleware, answered 200 without parsing or storing). A
Celery worker (concurrency 1, embedded beat) on a Redis database of this script's
own processes the stored events, as in production. The database is this script's
own (``renotify_bench_webhooks``): 100,000 members and one delivery each, sent, with
``esp_message_id`` set.

For each ESP shape, built from the captured payloads in tests/webhook_payloads/:

- postmark: one event per POST (``/anymail/postmark/tracking/``), a "Delivery"
  event per delivery;
- sendgrid: 100 events per POST (``/anymail/sendgrid/tracking/``), a "delivered"
  event per delivery.

One event in ten carries no ``delivery_id`` metadata and is matched by message id.

Each round (alternating which goes first) from an empty events table:

1. saturation, closed loop (wrk, one request per connection as gunicorn's sync
   worker closes it): the whole set of N events to the no-op view (ceiling), then
   to the webhook. events/s = N / wall time from wrk's start until the last
   response; stored rows are counted in the database.
2. processing: waits until no event is left unprocessed; lag = last
   ``processed_at`` - last ``received_at``; events/s processed = N / (last
   ``processed_at`` - first ``received_at``); Celery tasks the worker received.
3. latency, open loop (this process, asyncio, fixed arrival rate, latency measured
   from each request's scheduled time so a slow response cannot hide the queue
   behind it): half the round's webhook saturation rate, first to the no-op view
   then to the webhook, with new events ("Open"/"open" events, not yet stored).

After the rounds, the whole main set is POSTed again (replay): rows added must be 0.
Medians of the rounds are printed, and the median of each round's webhook/ceiling
ratio. Figures are printed, never asserted.

Usage: .venv/bin/python bench/webhooks.py [--events N] [--rounds R] [--only SHAPE]
           [--latency-seconds S] [--connections C] [--keep]

Served by gunicorn as ``webhooks:wsgi_app()`` (see ``wsgi_app``). Needs wrk
(``apt-get install wrk``).
"""

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

DATABASE = "renotify_bench_webhooks"
PORT = 8765
REDIS_URL = "redis://127.0.0.1:6379/13"
WORKERS = 2
NOOP_PATH = "/bench/noop/"
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
    """The app's WSGI application (config.wsgi, system checks included), with one more
    URL: a no-op view through the same middleware. POST answers 200, GET 204 (wrk's
    filler requests, see LUA)."""
    from importlib import import_module

    from django.http import HttpResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    from config.wsgi import application  # sets Django up: config.urls needs the models

    @csrf_exempt
    def noop(request):
        request.body  # noqa: B018  (read it, as the webhook does)
        return HttpResponse(status=200 if request.method == "POST" else 204)

    # The URL resolver is built on the first request, after this.
    import_module("config.urls").urlpatterns.append(path(NOOP_PATH.lstrip("/"), noop))
    return application


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

# Thread k of T sends requests k, k+T, k+2T, ... of R = ceil(N / PER); request r holds
# events r*PER .. (r+1)*PER-1, built as body_of() builds them. A connection that has no
# real request left sends a filler (GET of the no-op view, answered 204); once a
# thread has had a response to each of its real requests it writes a marker file. The
# parent times until the last marker, then stops wrk with SIGINT. Threads never stop
# or pause on their own: a connection left open without a request would hold one of
# gunicorn's two sync workers until it closes (seconds of stall for everyone else).
LUA = r"""
local N, LO, PER, T, BARE = %(n)d, %(lo)d, %(per)d, %(threads)d, %(bare)d
local PATH, AUTH, MARK, ARRAY = "%(path)s", "%(auth)s", "%(mark)s", %(array)s
local AT, TS, KIND = "%(at)s", "%(ts)s", "%(kind)s"
local TPL = [==[%(tpl)s]==]
local TPL_BARE = [==[%(tpl_bare)s]==]
local R, CYCLE = %(requests)d, %(cycle)d  -- requests to send; bodies reused if CYCLE > 0
local R_SET = math.ceil(N / PER)  -- requests in one pass over the set

local counter = 1
function setup(thread)
  thread:set("tid", counter - 1)
  counter = counter + 1
end

local quota, next_r, real, bad = 0, 0, 0, 0
local verifying = false
local headers = {["Content-Type"] = "application/json", ["Authorization"] = AUTH}
local filler

local function finish()
  local f = io.open(MARK .. "/done-" .. tid, "w")
  f:write(real .. " " .. bad .. "\n")
  f:close()
end

function init(args)
  next_r = tid
  verifying = tid == 0  -- wrk calls thread 0's request() once to check it: not sent
  for r = tid, R - 1, T do quota = quota + 1 end
  filler = wrk.format("GET", "%(noop)s", {["X-Bench"] = "filler"}, nil)
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
    mark = tempfile.mkdtemp(prefix="webhooks-wrk-")
    script = Path(mark) / "load.lua"
    script.write_text(
        LUA
        % {
            "n": n,
            "lo": lo,
            "per": shape.per_post,
            "cycle": cycle,
            "requests": requests or -(-n // shape.per_post),
            "threads": threads,
            "bare": BARE_EVERY,
            "path": path,
            "auth": auth_header(env),
            "mark": mark,
            "array": "true" if shape.is_batch() else "false",
            "at": EVENT_AT.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ts": int(EVENT_AT.timestamp()),
            "kind": "main",
            "tpl": tpls[0],
            "tpl_bare": tpls[1],
            "noop": NOOP_PATH,
        }
    )
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        "900s",
        "--timeout",
        "60s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{PORT}",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        markers = _markers_wait(Path(mark), threads, proc, deadline=started + 900)
        seconds = time.perf_counter() - started
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0]
    if len(markers) < threads:
        raise SystemExit(f"wrk did not finish ({len(markers)}/{threads} threads):\n{output}")
    real = sum(int(m.split()[0]) for m in markers)
    bad = sum(int(m.split()[1]) for m in markers)
    return Saturation(seconds, real, bad, *_wrk_latency(output), _wrk_errors(output))


def _markers_wait(mark: Path, threads: int, proc, *, deadline: float) -> list[str]:
    while time.perf_counter() < deadline and proc.poll() is None:
        done = list(mark.glob("done-*"))
        if len(done) == threads:
            time.sleep(0.01)  # let the last writer close its file
            return [p.read_text() for p in done]
        time.sleep(0.005)
    return [p.read_text() for p in mark.glob("done-*")]


def _wrk_latency(output: str) -> tuple[float, float]:
    """wrk's closed-loop latency percentiles (fillers included: a handful at the end)."""
    found = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    return _ms(found.get("50", "0ms")), _ms(found.get("99", "0ms"))


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def _wrk_errors(output: str) -> str:
    found = re.search(r"Socket errors: (.*)", output)
    return found.group(1) if found else ""


# --- Open loop at a fixed rate (this process) -------------------------------------------


@dataclass
class Latency:
    rate: float
    sent: int
    achieved_rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int


def answered_200(response: bytes) -> bool:
    return response.split(b" ", 2)[1:2] == [b"200"]


async def _one(request: bytes, scheduled: float, results: list, limit, port: int, check):
    loop = asyncio.get_running_loop()
    async with limit:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            response = await reader.read()  # gunicorn's sync worker closes: read to EOF
            writer.close()
            ok = check(response)
        except OSError:
            ok = False
    results.append((loop.time() - scheduled, ok))


async def _fixed_rate(requests: list[bytes], rate: float, port: int, check) -> tuple[list, float]:
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(512)  # a bound, far above what the server holds
    results: list = []
    tasks = []
    start = loop.time() + 0.1
    for i, request in enumerate(requests):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_one(request, scheduled, results, limit, port, check)))
    await asyncio.gather(*tasks)
    return results, loop.time() - start


def fixed_rate_run(
    requests: list[bytes], rate: float, *, port: int = PORT, check=answered_200
) -> Latency:
    """Open loop: ``requests`` sent at ``rate`` per second to 127.0.0.1:``port``, each on a
    new connection; latency from each request's scheduled time; ``check`` judges a reply."""
    results, seconds = asyncio.run(_fixed_rate(requests, rate, port, check))
    latencies = sorted(ms * 1000 for ms, _ in results)
    return Latency(
        rate=rate,
        sent=len(results),
        achieved_rate=len(results) / seconds,
        p50_ms=_percentile(latencies, 50),
        p99_ms=_percentile(latencies, 99),
        max_ms=latencies[-1],
        errors=sum(1 for _, ok in results if not ok),
    )


def _percentile(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def latency_requests(shape: Shape, path: str, *, count: int, first: int, lo: int, n: int, env):
    """``count`` POSTs of new events (the shape's "open" fixture), numbered from ``first``."""
    tpls = templates(shape, shape.extra)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n"
        f"Authorization: {auth_header(env)}\r\nContent-Type: application/json\r\n"
    )
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
        requests.append(
            f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        )
    return requests


# --- Processes (every one stopped by its pid) ---------------------------------------------


def server_env(url: str) -> dict[str, str]:
    import campaign_setup
    import harness

    return campaign_setup.django_env(
        url,
        ALLOWED_HOSTS="127.0.0.1",
        REDIS_URL=REDIS_URL,
        RENOTIFY_VAR_DIR=str(harness.OUT_DIR / "webhooks_var"),
        PYTHONPATH=str(Path(__file__).resolve().parent),
    )


def gunicorn_start(env) -> subprocess.Popen:
    import harness

    return harness.gunicorn_start(
        "webhooks:wsgi_app()", port=PORT, workers=WORKERS, env=env, ready_path=NOOP_PATH
    )


def worker_start(env, log: Path) -> subprocess.Popen:
    import harness

    proc = subprocess.Popen(
        [
            str(Path(harness.PYTHON).parent / "celery"),
            "-A",
            "config",
            "worker",
            "-B",
            "--concurrency",
            "1",
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
    process_stop(proc)
    raise SystemExit("celery worker not ready within 60 s")


def process_stop(proc: subprocess.Popen) -> None:
    import harness

    harness.process_stop(proc)


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
    import campaign_setup
    import harness

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


def events_reset(url: str) -> None:
    """An empty events table and every delivery back to "sent", settled and checkpointed."""
    import harness

    with harness.connect(url) as conn:
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
    import harness

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


def processing_wait(url: str, *, expected: int, timeout: float = 1200) -> Processing:
    """Wait until every stored event is processed (or ``timeout`` s), then measure."""
    import harness

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
            " extract(epoch FROM max(processed_at) - min(received_at))"
            " FROM campaigns_deliveryevent"
        ).fetchone()
        (delivered,) = conn.execute(
            "SELECT count(*) FROM campaigns_delivery WHERE delivered_at IS NOT NULL"
        ).fetchone()
    events, unprocessed, orphans, lag, span = row
    if events != expected:
        harness.progress(f"warning: {events} events stored, {expected} expected")
    return Processing(
        events,
        unprocessed,
        orphans,
        float(lag or 0),
        harness.rate(events, float(span or 0)),
        delivered,
    )


def tasks_received(log: Path) -> int:
    return len(re.findall(r"delivery_events_process\[[^\]]+\] received", log.read_text()))


# --- One shape --------------------------------------------------------------------------------


@dataclass
class Round:
    n: int
    per_post: int
    noop: list[Saturation]  # just before and just after the webhook's run
    app: Saturation
    stored: int
    processing: Processing
    tasks: int
    noop_latency: Latency
    app_latency: Latency

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


def shape_run(shape: Shape, args, *, url: str, lo: int, env, log: Path) -> ShapeResult:
    tpls = templates(shape, shape.main)
    result = ShapeResult(shape, args.events)
    load = {
        "n": args.events,
        "lo": lo,
        "env": env,
        "threads": args.threads,
        "connections": args.connections,
    }
    noop = {**load, "path": NOOP_PATH, "requests": args.noop_requests, "cycle": 64}
    for number in range(args.rounds):
        events_reset(url)
        _progress(f"{shape.name} round {number + 1}/{args.rounds}")
        before = wrk_run(shape, tpls, **noop)
        tasks_before = tasks_received(log)
        app = wrk_run(shape, tpls, path=shape.path, **load)
        stored = event_count(url)
        processing = processing_wait(url, expected=args.events)
        tasks = tasks_received(log) - tasks_before
        after = wrk_run(shape, tpls, **noop)
        rnd = Round(
            args.events, shape.per_post, [before, after], app, stored, processing, tasks, None, None
        )
        _progress(
            f"  stored {rnd.stored_rate():,.0f} events/s ({stored:,} rows), ceiling"
            f" {rnd.ceiling_rate():,.0f}; lag {processing.lag_seconds:.1f} s,"
            f" {processing.unprocessed} left"
        )
        rnd.noop_latency, rnd.app_latency = latency_pair(
            shape, number, app.requests / app.seconds / 2, args, lo=lo, env=env
        )
        processing_wait(url, expected=args.events + rnd.app_latency.sent * shape.per_post)
        result.rounds.append(rnd)
    _progress(f"{shape.name}: replay of the main set")
    before_rows = event_count(url)
    result.replay = wrk_run(shape, tpls, path=shape.path, **load)
    result.replay_added = event_count(url) - before_rows
    return result


def latency_pair(shape: Shape, number: int, rate: float, args, *, lo: int, env):
    """Open loop at ``rate`` requests/s: the no-op view, then the webhook (new events)."""
    count = max(1, int(rate * args.latency_seconds))
    first = (number + 1) * 10_000_000  # new events every round
    runs = []
    for path in (NOOP_PATH, shape.path):
        requests = latency_requests(
            shape, path, count=count, first=first, lo=lo, n=args.events, env=env
        )
        runs.append(fixed_rate_run(requests, rate))
    noop, app = runs
    _progress(
        f"  at {rate:,.0f} requests/s: p50/p99 {app.p50_ms:.1f}/{app.p99_ms:.1f} ms"
        f" (no-op {noop.p50_ms:.1f}/{noop.p99_ms:.1f}), achieved {app.achieved_rate:,.0f}/s"
    )
    return noop, app


def _progress(message: str) -> None:
    import harness

    harness.progress(message)


# --- Report -------------------------------------------------------------------------------------


def report(results: list[ShapeResult]) -> dict:
    from harness import fmt_rate, median, rate, table, verdict

    rows, targets, saved = [], [], {}
    for res in results:
        s, rs = res.shape, res.rounds
        app_rate = median([r.stored_rate() for r in rs])
        noop_rate = median([r.ceiling_rate() for r in rs])
        share = median([r.stored_rate() / r.ceiling_rate() for r in rs])
        processed = median([r.processing.processed_per_s for r in rs])
        lag = median([r.processing.lag_seconds for r in rs])
        p99 = median([r.app_latency.p99_ms for r in rs])
        figures = {
            "events_per_post": s.per_post,
            "events": res.n,
            "stored_events_per_s": app_rate,
            "ceiling_events_per_s": noop_rate,
            "share_of_ceiling": share,
            "processed_events_per_s": processed,
            "processing_lag_s": lag,
            "max_processing_lag_s": max(r.processing.lag_seconds for r in rs),
            "celery_tasks": median([r.tasks for r in rs]),
            "half_rate_requests_per_s": median([r.app_latency.rate for r in rs]),
            "p50_ms": median([r.app_latency.p50_ms for r in rs]),
            "p99_ms": p99,
            "ceiling_p50_ms": median([r.noop_latency.p50_ms for r in rs]),
            "ceiling_p99_ms": median([r.noop_latency.p99_ms for r in rs]),
            "replay_rows_added": res.replay_added,
            "replay_events_per_s": rate(res.n, res.replay.seconds),
            "rounds": [_round_dict(r) for r in rs],
        }
        saved[s.name] = figures
        rows += _figure_rows(s, figures)
        ok_processed = lag <= TARGET_LAG_SECONDS and all(r.processing.unprocessed == 0 for r in rs)
        targets += [
            [
                f"{s.name} stored >= {s.target:,} events/s",
                fmt_rate(app_rate),
                verdict(app_rate >= s.target),
            ],
            [
                f"{s.name} processed within {TARGET_LAG_SECONDS:.0f} s of the last POST",
                f"{lag:.1f} s",
                verdict(ok_processed),
            ],
            [
                f"{s.name} p99 < {TARGET_P99_MS:.0f} ms at half saturation",
                f"{p99:.1f} ms",
                verdict(p99 < TARGET_P99_MS),
            ],
            [f"{s.name} replay adds 0 rows", str(res.replay_added), verdict(res.replay_added == 0)],
        ]
    print(table(["figure (medians of rounds)", "value"], rows))
    print()
    print(table(["target", "measured", ""], targets))
    return saved


def _figure_rows(s: Shape, f: dict) -> list[list[str]]:
    from harness import fmt_rate

    return [
        [f"{s.name} ({s.per_post}/POST): stored events/s", fmt_rate(f["stored_events_per_s"])],
        ["  no-op ceiling events/s, same rounds", fmt_rate(f["ceiling_events_per_s"])],
        ["  stored / ceiling (median of rounds' ratios)", f"{f['share_of_ceiling']:.0%}"],
        [
            "  processed events/s (first receipt to last processed)",
            fmt_rate(f["processed_events_per_s"]),
        ],
        [
            "  last processed_at - last received_at (max)",
            f"{f['processing_lag_s']:.1f} s ({f['max_processing_lag_s']:.1f} s)",
        ],
        ["  Celery tasks received during a round", f"{f['celery_tasks']:.0f}"],
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


def _round_dict(r: Round) -> dict:
    from dataclasses import asdict

    return {
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
    import campaign_setup
    import harness

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=sorted(SHAPES))
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument(
        "--noop-requests", type=int, default=20_000, help="POSTs of each no-op run (two per round)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave gunicorn and the worker up until Enter is pressed (for py-spy)",
    )
    args = parser.parse_args()

    harness.OUT_DIR.mkdir(parents=True, exist_ok=True)
    url = campaign_setup.database_url(DATABASE)
    harness.progress(f"setting up {args.events:,} deliveries in {DATABASE}")
    lo = database_setup(url, args.events)
    env = server_env(url)
    log = harness.OUT_DIR / "webhooks-worker.log"
    shapes = [SHAPES[args.only]] if args.only else list(SHAPES.values())
    results = []
    # SIGTERM unwinds like Ctrl-C, so that the finally blocks stop what was started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server = gunicorn_start(env)
    try:
        worker = worker_start(env, log)
        try:
            for shape in shapes:
                results.append(shape_run(shape, args, url=url, lo=lo, env=env, log=log))
            if args.keep:
                input(f"gunicorn pid {server.pid}, worker pid {worker.pid}: Enter to stop ")
        finally:
            process_stop(worker)
    finally:
        process_stop(server)
    print(
        f"\ngunicorn {WORKERS} sync workers, wrk -t{args.threads} -c{args.connections},"
        f" {args.rounds} round(s), {os.cpu_count()} CPUs\n"
    )
    path = harness.save_results("webhooks", report(results))
    print(f"\n(figures saved to {path.relative_to(harness.ROOT)})")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
