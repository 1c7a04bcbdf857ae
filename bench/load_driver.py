"""The HTTP load driver of the benchmarks that serve the app with gunicorn (``webhooks``,
``notice_pages``): the server (the app plus a no-op view, its environment, gunicorn),
closed-loop saturation runs with wrk and a Lua script of the caller's, wrk's output,
and open-loop runs at a fixed arrival rate from this process.

How the runs are timed, and why, is in bench/README.md ("The load driver").
Nothing here imports Django at import time: gunicorn imports the calling script (and
so this module) before the app is set up.
"""

import asyncio
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import campaign_setup
import harness

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"
WORKERS = 2  # gunicorn sync workers
NOOP_PATH = "/bench/noop/"


# --- The server -------------------------------------------------------------------------------


def wsgi_app(routes: Callable[[], list] = list):
    """The app's WSGI application (config.wsgi, system checks included), with the no-op
    view and ``routes()`` appended to its URLs, behind the same middleware. ``routes`` is
    called once Django is set up (its views may need the models)."""
    from importlib import import_module

    from config.wsgi import application  # sets Django up: config.urls needs the models

    # The URL resolver is built on the first request, after this.
    import_module("config.urls").urlpatterns.extend([_noop_route(), *routes()])
    return application


def _noop_route():
    """The no-op view: POST answers 200 (the ceiling of a POST through the same gunicorn
    and middleware), GET 204 (wrk's fillers and the readiness probe)."""
    from django.http import HttpResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    @csrf_exempt
    def noop(request):
        request.body  # noqa: B018  (read it, as a webhook does)
        return HttpResponse(status=200 if request.method == "POST" else 204)

    return path(NOOP_PATH.lstrip("/"), noop)


def server_env(url: str, *, redis_url: str, var_dir: str, **extra: str) -> dict[str, str]:
    """The server's environment: the production-like settings on database ``url``, Redis
    at ``redis_url``, files in var/bench/``var_dir``, and bench/ on the path so that
    gunicorn can import the calling script."""
    return campaign_setup.django_env(
        url,
        ALLOWED_HOSTS=HOST,
        REDIS_URL=redis_url,
        RENOTIFY_VAR_DIR=str(harness.OUT_DIR / var_dir),
        PYTHONPATH=str(BENCH_DIR),
        **extra,
    )


def server_start(
    app: str, *, port: int, env: dict[str, str], log=None, workers: int = WORKERS
) -> subprocess.Popen:
    """gunicorn (``workers`` sync workers) serving ``app`` ("script:wsgi_app()"), once the
    no-op view answers."""
    return harness.gunicorn_start(
        app, port=port, workers=workers, env=env, ready_path=NOOP_PATH, log=log
    )


def sigterm_unwinds() -> None:
    """SIGTERM unwinds like Ctrl-C, so that the finally blocks stop what was started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


# --- Saturation: wrk, closed loop -------------------------------------------------------------

# The driver's part of every wrk script, before the caller's. Each thread knows its
# ``tid``; ``marker(name, text)`` writes MARK/<name>-<tid>, which Wrk.wait counts; a
# connection with no real request left sends ``filler_request()`` (a GET of the no-op
# view, answered 204) rather than idle: a connection left open without a request would
# hold one of gunicorn's sync workers until it closes, stalling everyone else.
# ``STOP`` is the file Wrk.stop_ask creates.
LUA_DRIVER = r"""
local MARK, T = [==[%(mark)s]==], %(threads)d
local STOP = MARK .. "/stop"

threads = {}  -- every thread, for done() to read their globals (thread:get)
local counter = 1
function setup(thread)
  thread:set("tid", counter - 1)
  table.insert(threads, thread)
  counter = counter + 1
end

local function marker(name, text)
  local f = io.open(MARK .. "/" .. name .. "-" .. tid, "w")
  f:write(text)
  f:close()
end

local function filler_request()
  return wrk.format("GET", [==[%(noop)s]==], {["User-Agent"] = "filler"}, nil)
end
"""


class Wrk:
    """One wrk run against 127.0.0.1:``port`` (started by ``wrk_start``), its script
    LUA_DRIVER followed by the caller's ``lua``, a %-template filled from ``values`` plus
    ``mark``, ``threads`` and ``noop``. Its threads report through marker files in a
    directory of the run's own."""

    def __init__(self, lua: str, values: dict, *, threads: int, workdir: Path | None):
        self.threads = threads
        self.mark = Path(tempfile.mkdtemp(prefix="wrk-", dir=workdir))
        self.script = self.mark / "load.lua"
        self.script.write_text(
            (LUA_DRIVER + lua)
            % {**values, "mark": self.mark, "threads": threads, "noop": NOOP_PATH}
        )
        self.started = 0.0
        self.proc: subprocess.Popen | None = None

    def start(self, *, connections: int, duration: str, timeout: str, port: int) -> None:
        command = [
            "wrk", "-t", str(self.threads), "-c", str(connections), "-d", duration,
            "--timeout", timeout, "--latency", "-s", str(self.script), f"http://{HOST}:{port}",
        ]  # fmt: skip
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def wait(self, name: str, *, within: float) -> bool:
        """Until every thread has written its ``name`` marker (True), or wrk has exited or
        ``within`` seconds have passed (False)."""
        deadline = time.perf_counter() + within
        while time.perf_counter() < deadline and self.proc.poll() is None:
            if len(list(self.mark.glob(f"{name}-*"))) == self.threads:
                return True
            time.sleep(0.005)
        return False

    def texts(self, name: str) -> list[str]:
        """What the threads wrote in their ``name`` markers (those there are)."""
        time.sleep(0.01)  # let the last writer close its file
        return [p.read_text() for p in self.mark.glob(f"{name}-*")]

    def stop_ask(self) -> None:
        """Tell the threads (the script reads STOP) to send no more real requests."""
        (self.mark / "stop").touch()

    def output(self) -> str:
        """wrk's output, once it has stopped (SIGINT if it still runs: wrk then prints its
        summary, and the script's done() its own lines)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.communicate(timeout=60)[0]

    def remove(self) -> None:
        shutil.rmtree(self.mark, ignore_errors=True)


def wrk_start(
    lua: str,
    values: dict,
    *,
    threads: int,
    connections: int,
    duration: str,
    timeout: str,
    port: int,
    workdir: Path | None = None,
) -> Wrk:
    """wrk started with ``threads`` threads and ``connections`` connections, for at most
    ``duration`` (wrk's -d, e.g. "900s"); ``timeout`` is wrk's per-request timeout."""
    run = Wrk(lua, values, threads=threads, workdir=workdir)
    run.start(connections=connections, duration=duration, timeout=timeout, port=port)
    return run


def lua_string(value: str | None) -> str:
    return "nil" if value is None else f"[==[{value}]==]"


def lua_table(values: dict[str, str]) -> str:
    pairs = (f"[ {lua_string(k)} ] = {lua_string(v)}" for k, v in values.items())
    return "{" + ", ".join(pairs) + "}"


def wrk_latency(output: str) -> tuple[float, float]:
    """wrk's closed-loop latency percentiles, p50 and p99 in ms (fillers included: a
    handful at the end)."""
    found = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    return duration_ms(found.get("50", "0ms")), duration_ms(found.get("99", "0ms"))


def duration_ms(text: str) -> float:
    """A duration as wrk prints it ("812.00us", "3.25ms", "1.02s", "1.5m") in ms."""
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def wrk_socket_errors(output: str) -> str:
    """wrk's "Socket errors:" line ("connect 0, read 2, write 0, timeout 0"), or ""."""
    found = re.search(r"Socket errors: (.*)", output)
    return found.group(1) if found else ""


def wrk_socket_error_count(output: str) -> int:
    return sum(int(v) for v in re.findall(r"\d+", wrk_socket_errors(output)))


# --- Latency: a fixed arrival rate, open loop (this process) ----------------------------------


@dataclass
class Latency:
    rate: float
    sent: int
    achieved_rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int


def raw_request(method: str, path: str, headers: dict[str, str], body: bytes, *, port: int):
    """One HTTP/1.1 request as bytes, asking the server to close the connection (gunicorn's
    sync worker does anyway)."""
    head = {"Host": f"{HOST}:{port}", **headers, "Connection": "close"}
    if body:
        head["Content-Length"] = str(len(body))
    lines = "".join(f"{name}: {value}\r\n" for name, value in head.items())
    return f"{method} {path} HTTP/1.1\r\n{lines}\r\n".encode() + body


def response_check(expect: int, location: str | None = None) -> Callable[[bytes], bool]:
    """Judges a raw response: status ``expect`` and, if given, ``location`` in the
    Location header."""
    status_wanted = [str(expect).encode()]
    wanted = location.encode() if location else None

    def check(response: bytes) -> bool:
        head = response.split(b"\r\n\r\n", 1)[0]
        if head.split(b" ", 2)[1:2] != status_wanted:
            return False
        if wanted is None:
            return True
        return any(
            line.lower().startswith(b"location:") and wanted in line for line in head.split(b"\r\n")
        )

    return check


async def _one(request: bytes, scheduled: float, results: list, limit, port: int, check):
    loop = asyncio.get_running_loop()
    async with limit:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
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
    requests: list[bytes], rate: float, *, port: int, check: Callable[[bytes], bool]
) -> Latency:
    """Open loop: ``requests`` sent at ``rate`` per second to 127.0.0.1:``port``, each on a
    new connection; latency from each request's scheduled time; ``check`` judges a reply."""
    results, seconds = asyncio.run(_fixed_rate(requests, rate, port, check))
    latencies = sorted(ms * 1000 for ms, _ in results)
    return Latency(
        rate=rate,
        sent=len(results),
        achieved_rate=len(results) / seconds,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1],
        errors=sum(1 for _, ok in results if not ok),
    )


def percentile(sorted_values: list[float], p: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]
