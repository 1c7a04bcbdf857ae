"""A fake ESP for the benchmarks: Postmark's send API in front, its webhooks behind.

The app sends to it through django-anymail's real Postmark backend over HTTP
(``ANYMAIL_POSTMARK_API_URL``). Every accepted message is

- answered as Postmark's ``/email`` endpoint answers (a fresh ``MessageID``);
- logged, one line per message, in the sink's directory (``sent-<index>.tsv``:
  delivery_id, campaign_id, the Message-ID header, the ESP id it answered, the
  notice link's token), so duplicates and missing messages can be counted exactly
  afterwards (``SinkLog``) and the links used for the member-action phase;
- turned into the ESP events an ESP would post back (``events_for``: a delivery for
  every message, opens and clicks for some, a few bounces and complaints: about 2.4
  events a message), queued, and posted to the app's ``/anymail/<esp>/tracking/``
  with basic auth by a feeder in the same process, in one of two shapes: Postmark's
  (one event per POST) or SendGrid's (a JSON array, up to 100 events per POST).
  A share of the events can be posted twice and a share held back (out of order).

Several processes share one port (SO_REUSEPORT: the kernel spreads connections over
them) so that the sink is not the bottleneck (``Sink``); each writes its counters to
``stats-<index>.json`` twice a second, which ``Sink.stats`` adds up. With one process
the counters are also at ``GET /stats`` (``?reset`` zeroes them): ``send_loop`` uses that.

Run alone, it measures one sink process's capacity (wrk POSTing a realistic message):
    .venv/bin/python bench/esp_sink.py [--seconds S] [--processes N]
"""

import argparse
import asyncio
import base64
import heapq
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import harness

SCRIPT = str(Path(__file__).resolve())
PAYLOADS = harness.ROOT / "tests" / "webhook_payloads"
NOTICE_LINK = re.compile(r"/n/([A-Za-z0-9_:\-]+)/")
SHAPES = {
    "postmark": ("/anymail/postmark/tracking/", 1),
    "sendgrid": ("/anymail/sendgrid/tracking/", 100),
}
FLUSH_SECONDS = 0.5  # logs flushed and stats files written this often
BATCH_LINGER = 1.0  # a partial batch waits at most this long for more events
RETRY_SECONDS = 2.0  # an event the app refused (or could not take) is posted again after this


# --- The events a message produces (deterministic per delivery) --------------------------

# (kind, share per 10,000 messages). A bounced message gets only its bounce; the others a
# delivery, then opens, a click and, rarely, a complaint: the app's circuit breaker pauses a
# campaign above 0.1% complaints (judged from 500 sends on), so a benchmark of a small
# campaign raises RENOTIFY_BREAKER_COMPLAINT_RATE rather than trip it by chance.
BOUNCE_PER_10K = 150
EXTRA_EVENTS = (("open", 7000), ("open", 4500), ("click", 2500), ("complaint", 2))
# Seconds after the send at which each kind is posted (an ESP reports a delivery first).
DELAY = {"delivery": 0.0, "bounce": 0.0, "open": 0.5, "click": 1.0, "complaint": 1.5}


def _mix(value: int, salt: int) -> int:
    """A cheap, well-spread hash of a delivery id, per purpose (``salt``)."""
    x = (value * 0x9E3779B1 + salt * 0x85EBCA77) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    return x ^ (x >> 12)


def event_kinds(delivery_id: int) -> list[str]:
    if _mix(delivery_id, 1) % 10_000 < BOUNCE_PER_10K:
        return ["bounce"]
    kinds = ["delivery"]
    for salt, (kind, per_10k) in enumerate(EXTRA_EVENTS, start=2):
        if _mix(delivery_id, salt) % 10_000 < per_10k:
            kinds.append(kind)
    return kinds


def events_per_message() -> float:
    """The expected number of events per message under ``event_kinds``."""
    extra = sum(per_10k for _, per_10k in EXTRA_EVENTS) / 10_000
    bounced = BOUNCE_PER_10K / 10_000
    return bounced + (1 - bounced) * (1 + extra)


@dataclass(frozen=True)
class Sent:
    """What the sink keeps of one accepted message."""

    delivery_id: int
    campaign_id: int
    message_id: str  # the Message-ID header
    esp_id: str  # the MessageID the sink answered (the app stores it)
    recipient: str
    token: str  # the notice link's token ('' if the body had none)


def _fixture(esp: str, name: str) -> dict:
    raw = json.loads((PAYLOADS / esp / name).read_text())
    return raw[0] if isinstance(raw, list) else raw


# The captured payloads of tests/webhook_payloads, per shape and kind.
FIXTURES = {
    "postmark": {
        "delivery": "delivery.json",
        "open": "open.json",
        "click": "click.json",
        "bounce": "bounce_hard.json",
        "complaint": "spam_complaint.json",
    },
    "sendgrid": {
        "delivery": "delivered.json",
        "open": "open.json",
        "click": "click.json",
        "bounce": "bounce.json",
        "complaint": "spamreport.json",
    },
}
_TEMPLATES: dict[tuple[str, str], dict] = {}
# Postmark's time fields, per record type (whichever the captured payload has).
POSTMARK_TIMES = ("DeliveredAt", "ReceivedAt", "BouncedAt")


def _template(shape: str, kind: str) -> dict:
    key = (shape, kind)
    if key not in _TEMPLATES:
        _TEMPLATES[key] = _fixture(shape, FIXTURES[shape][kind])
    return _TEMPLATES[key]


def event_payload(shape: str, kind: str, sent: Sent, *, at: datetime, seq: int) -> dict:
    """One ESP event for ``sent`` as ``shape`` posts it, from the captured payload.
    ``seq`` numbers the message's events (SendGrid's event ids are unique per event)."""
    event = dict(_template(shape, kind))
    metadata = {"delivery_id": str(sent.delivery_id), "campaign_id": str(sent.campaign_id)}
    if shape == "postmark":
        event["MessageID"] = sent.esp_id
        event["Recipient" if "Recipient" in event else "Email"] = sent.recipient
        event["Metadata"] = metadata
        for name in POSTMARK_TIMES:
            if name in event:
                event[name] = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        event.update(metadata)
        event["email"] = sent.recipient
        event["anymail_id"] = sent.esp_id
        event["timestamp"] = int(at.timestamp())
        event["sg_event_id"] = f"{sent.esp_id}-{seq}"
    return event


def events_for(shape: str, sent: Sent, *, at: datetime) -> list[tuple[str, dict]]:
    """(kind, payload) of every event ``sent`` produces, a second apart: two opens of
    one message are two events (an ESP without event ids is told apart by its time)."""
    return [
        (kind, event_payload(shape, kind, sent, at=at + timedelta(seconds=seq), seq=seq))
        for seq, kind in enumerate(event_kinds(sent.delivery_id))
    ]


def post_body(shape: str, events: list[dict]) -> bytes:
    """The body of one webhook POST: one event (Postmark), or an array (SendGrid)."""
    if SHAPES[shape][1] == 1:
        (event,) = events
        return json.dumps(event, separators=(",", ":")).encode()
    return json.dumps(events, separators=(",", ":")).encode()


# --- The sent log: exact counts per delivery ---------------------------------------------


def sent_line(sent: Sent) -> str:
    return (
        f"{sent.delivery_id}\t{sent.campaign_id}\t{sent.message_id}\t{sent.esp_id}"
        f"\t{sent.recipient}\t{sent.token}\n"
    )


class SinkLog:
    """Reads what the sink processes logged (``sent-*.tsv`` in ``directory``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def lines(self):
        for path in sorted(self.directory.glob("sent-*.tsv")):
            with path.open() as f:
                for line in f:
                    if line.endswith("\n"):  # a line being written is read next time
                        yield line

    def records(self):
        for line in self.lines():
            d, c, message_id, esp_id, recipient, token = line.rstrip("\n").split("\t")
            yield Sent(int(d), int(c), message_id, esp_id, recipient, token)

    def counts(self, campaign_id: int | None = None) -> Counter[int]:
        """Messages per delivery id (of one campaign's messages, if given)."""
        counts: Counter[int] = Counter()
        for line in self.lines():
            delivery, campaign, _ = line.split("\t", 2)
            if campaign_id is None or int(campaign) == campaign_id:
                counts[int(delivery)] += 1
        return counts

    def message_id_counts(self) -> Counter[str]:
        """Messages per Message-ID header."""
        return Counter(line.split("\t", 3)[2] for line in self.lines())


def tally(counts: Counter[int], expected: set[int] | range) -> dict[str, int]:
    """Duplicates (copies beyond the first) and missing (expected, never received) of
    ``counts`` (``SinkLog.counts``) against the delivery ids that should have come."""
    return {
        "messages": sum(counts.values()),
        "distinct": len(counts),
        "duplicates": sum(n - 1 for n in counts.values() if n > 1),
        "missing": sum(1 for d in expected if d not in counts),
        "unexpected": sum(1 for d in counts if d not in expected),
    }


# --- The server (one process) --------------------------------------------------------------


@dataclass
class FeedOptions:
    """Where and how the webhook feeder posts (no ``url``: events are counted, not sent)."""

    url: str = ""  # e.g. http://127.0.0.1:8000 (the app)
    shape: str = "sendgrid"
    auth: str = ""  # "user:password" for basic auth
    duplicate_share: float = 0.0  # events posted a second time (later)
    reorder_share: float = 0.0  # events held back up to reorder_seconds
    reorder_seconds: float = 10.0
    connections: int = 2  # POSTs in flight per sink process


class FakePostmark:
    """Answers every POST as Postmark's /email endpoint does; GET /stats reports (and
    with ?reset zeroes) this process's counters. With a directory, each message is
    logged and its events fed back (``Feeder``)."""

    def __init__(
        self, directory: Path | None = None, index: int = 0, feed: FeedOptions | None = None
    ):
        self.stats = {"requests": 0, "bytes": 0, "connections": 0}
        self.directory, self.index = directory, index
        self.log = (directory / f"sent-{index}.tsv").open("a") if directory else None
        self.feeder = Feeder(feed, self.stats) if feed is not None else None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counted = False  # connections that only ask for /stats are not counted
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, _, header_lines = head.decode("latin-1").partition("\r\n")
                path = request_line.split(" ")[1]
                length = 0
                for line in header_lines.split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                if not counted and not path.startswith("/stats"):
                    self.stats["connections"] += 1
                    counted = True
                writer.write(self._response(path, body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its connection
        finally:
            writer.close()

    def _response(self, path: str, body: bytes) -> bytes:
        if path.startswith("/stats"):
            answer = dict(self.stats)
            if "reset" in path:
                self.stats.update(dict.fromkeys(self.stats, 0))
        else:
            self.stats["requests"] += 1
            self.stats["bytes"] += len(body)
            message = json.loads(body)
            answer = {
                "To": message.get("To", ""),
                "SubmittedAt": "2027-01-15T10:00:00.0000000Z",
                "MessageID": str(uuid.uuid4()),
                "ErrorCode": 0,
                "Message": "OK",
            }
            if self.log is not None:
                self._accept(message, answer["MessageID"])
        data = json.dumps(answer).encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data
        )

    def _accept(self, message: dict, esp_id: str) -> None:
        metadata = message.get("Metadata") or {}
        headers = {h["Name"].lower(): h["Value"] for h in message.get("Headers") or []}
        link = NOTICE_LINK.search(message.get("TextBody") or "")
        sent = Sent(
            delivery_id=int(metadata.get("delivery_id") or 0),
            campaign_id=int(metadata.get("campaign_id") or 0),
            message_id=headers.get("message-id", ""),
            esp_id=esp_id,
            recipient=message.get("To", ""),
            token=link.group(1) if link else "",
        )
        self.log.write(sent_line(sent))
        # Other mail (objection receipts) is logged too; only a delivery gets events here.
        if self.feeder is not None and sent.delivery_id:
            self.feeder.add(sent)

    async def flush_forever(self) -> None:
        """Logs to disk and counters to stats-<index>.json, twice a second."""
        path = self.directory / f"stats-{self.index}.json"
        while True:
            self.log.flush()
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({**self.stats, "pid": os.getpid(), "at": time.time()}))
            tmp.replace(path)  # atomic: a reader never sees half a file
            await asyncio.sleep(FLUSH_SECONDS)


class Feeder:
    """Posts each message's events to the app as they come due (an ESP's webhooks).

    Events wait in a heap until due, then in ``ready`` until a poster takes them: a
    full POST's worth at once, or fewer once the oldest has waited BATCH_LINGER.
    ``connections`` posters share them; an event the app does not answer 200 to (or a
    refused connection) is posted again after RETRY_SECONDS, as an ESP retries."""

    def __init__(self, options: FeedOptions, stats: dict) -> None:
        self.options = options
        self.path, self.per_post = SHAPES[options.shape]
        self.stats = stats
        self.stats.update(
            events_queued=0, events_posted=0, posts=0, post_errors=0, duplicates_queued=0,
            last_post_at=0.0,
        )  # fmt: skip
        self.heap: list[tuple[float, int, dict]] = []
        self.ready: deque[tuple[float, dict]] = deque()
        self.seq = 0
        host_port = options.url.split("://", 1)[-1].rstrip("/")
        self.host, _, port = host_port.partition(":")
        self.port = int(port or 80)
        secret = base64.b64encode(options.auth.encode()).decode()
        self.headers = (
            f"POST {self.path} HTTP/1.1\r\nHost: {host_port}\r\n"
            f"Authorization: Basic {secret}\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n"
        )

    def _push(self, due: float, event: dict) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (due, self.seq, event))

    def add(self, sent: Sent) -> None:
        now_wall, now = datetime.now(UTC), time.monotonic()
        options = self.options
        for seq, (kind, event) in enumerate(events_for(options.shape, sent, at=now_wall)):
            key = _mix(sent.delivery_id, 100 + seq) % 10_000  # this event's own dice
            due = now + DELAY[kind]
            if key < options.reorder_share * 10_000:
                due += options.reorder_seconds * (key % 97) / 96  # held back: out of order
            self._push(due, event)
            self.stats["events_queued"] += 1
            if _mix(key, 7) % 10_000 < options.duplicate_share * 10_000:
                self._push(due + 1.0 + key % 5, event)  # the same body: the same event
                self.stats["duplicates_queued"] += 1

    def _due(self, now: float) -> None:
        while self.heap and self.heap[0][0] <= now:
            due, _, event = heapq.heappop(self.heap)
            self.ready.append((due, event))

    def _take(self, now: float) -> list[dict]:
        """A POST's worth of ready events, or [] if a batch should wait for more."""
        self._due(now)
        if not self.ready:
            return []
        if len(self.ready) < self.per_post and now - self.ready[0][0] < BATCH_LINGER:
            return []
        count = min(self.per_post, len(self.ready))
        return [self.ready.popleft()[1] for _ in range(count)]

    async def post_forever(self) -> None:
        await asyncio.gather(*(self._poster() for _ in range(self.options.connections)))

    async def _poster(self) -> None:
        while True:
            events = self._take(time.monotonic())
            if not events:
                await asyncio.sleep(0.05)
            elif not self.options.url:
                self.stats["events_posted"] += len(events)  # no app: counted, not sent
            else:
                await self._post(events)

    async def _post(self, events: list[dict]) -> None:
        body = post_body(self.options.shape, events)
        request = (self.headers + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        status = 0
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            writer.write(request)
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), timeout=120)
            status = int(status_line.split()[1]) if status_line else 0
            await reader.read()  # to the server's close
            writer.close()
        except (OSError, TimeoutError, ValueError, IndexError):
            status = 0
        self.stats["posts"] += 1
        if status == 200:
            self.stats["events_posted"] += len(events)
            self.stats["last_post_at"] = time.time()
            return
        self.stats["post_errors"] += 1
        retry_at = time.monotonic() + RETRY_SECONDS
        for event in events:
            self._push(retry_at, event)


def listening_socket(port: int, host: str = "127.0.0.1") -> socket.socket:
    """A socket on ``host``:``port`` that other sink processes may bind too."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def serve(
    port: int, directory: Path | None, index: int, feed: FeedOptions | None, host: str
) -> None:
    async def main() -> None:
        sink = FakePostmark(directory, index, feed)
        server = await asyncio.start_server(sink.handle, sock=listening_socket(port, host))
        tasks = []
        if directory is not None:
            tasks.append(asyncio.create_task(sink.flush_forever()))
        if sink.feeder is not None:
            tasks.append(asyncio.create_task(sink.feeder.post_forever()))
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- The parent's side -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def esp_stats(port: int, *, reset: bool = False) -> dict[str, int]:
    """One sink process's counters over HTTP (exact only when one process serves)."""
    url = f"http://127.0.0.1:{port}/stats{'?reset' if reset else ''}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def esp_start(port: int) -> subprocess.Popen:
    """One plain sink process (no log, no events): send_loop's fake Postmark."""
    process = subprocess.Popen(
        [harness.PYTHON, SCRIPT, "--serve", "--port", str(port)], start_new_session=True
    )
    _wait_ready(port, [process])
    return process


def _wait_ready(port: int, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            esp_stats(port)
            return
        except OSError:
            if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
                for p in processes:
                    esp_stop(p)
                raise SystemExit("the fake ESP did not start") from None
            time.sleep(0.1)


def esp_stop(process: subprocess.Popen) -> None:
    harness.process_stop(process)


@dataclass
class Sink:
    """``processes`` sink processes on one port, logging to ``directory`` and feeding the
    app's webhooks as ``feed`` says. Use as a context manager (stopped by pid)."""

    directory: Path
    processes: int = 2
    feed: FeedOptions | None = None
    port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen] = field(default_factory=list)
    # 0.0.0.0: also reachable from workers in network namespaces (bench/netns.py), on
    # the root namespace's veth addresses.
    bind: str = "127.0.0.1"

    def start(self) -> "Sink":
        self.directory.mkdir(parents=True, exist_ok=True)
        for old in [*self.directory.glob("sent-*.tsv"), *self.directory.glob("stats-*.json")]:
            old.unlink()
        for index in range(self.processes):
            command = [
                harness.PYTHON, SCRIPT, "--serve", "--port", str(self.port),
                "--dir", str(self.directory), "--index", str(index), "--bind", self.bind,
            ]  # fmt: skip
            if self.feed is not None:
                command += ["--feed", json.dumps(self.feed.__dict__)]
            self.procs.append(subprocess.Popen(command, start_new_session=True))
        _wait_ready(self.port, self.procs)
        return self

    def stop(self) -> None:
        for proc in self.procs:
            esp_stop(proc)

    def __enter__(self) -> "Sink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stats(self) -> dict[str, float]:
        """Every process's counters added up (as of their last flush, <= 0.5 s ago)."""
        total: Counter = Counter()
        last_post = 0.0
        for path in self.directory.glob("stats-*.json"):
            try:
                figures = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being replaced: read again next time
            last_post = max(last_post, figures.pop("last_post_at", 0.0))
            figures.pop("pid", None), figures.pop("at", None)
            total.update(figures)
        return {**total, "last_post_at": last_post}

    def events_backlog(self) -> int:
        s = self.stats()
        return int(
            s.get("events_queued", 0) + s.get("duplicates_queued", 0) - s.get("events_posted", 0)
        )

    def log(self) -> SinkLog:
        return SinkLog(self.directory)


# --- Alone: one sink process's capacity ------------------------------------------------------

WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%s]==]
"""


def sample_message() -> dict:
    """A message like the app's (the bench notice's size), as anymail's Postmark backend
    posts it."""
    text = "Hello,\n\n" + "Some notice text about AI training. " * 120
    text += "\nRead it: https://renotify.test/n/MTIzNDU2:1tXyZ:abcdefghijklmnopqrstuvwxyz/\n"
    return {
        "From": "Privacy team <privacy@localhost>",
        "To": "member@example.test",
        "Subject": "How we will use your data to train AI models: your choice",
        "TextBody": text,
        "HtmlBody": "<html><body>" + text.replace("\n", "<br>") * 2 + "</body></html>",
        "Headers": [
            {"Name": "Message-ID", "Value": "<d123456.c1@renotify.test>"},
            {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
        ],
        "Metadata": {"delivery_id": "123456", "campaign_id": "1"},
        "Tag": "campaign-1",
    }


def capacity(processes: int, seconds: int) -> float:
    """Messages/s the sink takes from wrk (logging and making events, none posted)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "post.lua"
        lua.write_text(WRK_LUA % json.dumps(sample_message()))
        with Sink(Path(tmp) / "sink", processes=processes, feed=FeedOptions()) as sink:
            done = subprocess.run(
                ["wrk", "-t2", "-c16", f"-d{seconds}s", "-s", str(lua), sink.api_url + "email"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            time.sleep(2 * FLUSH_SECONDS)
            stats = sink.stats()
    harness.progress(done.stdout.strip().splitlines()[-2])
    return stats["requests"] / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--feed", help=argparse.SUPPRESS)
    parser.add_argument("--bind", default="127.0.0.1", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        feed = FeedOptions(**json.loads(args.feed)) if args.feed else None
        serve(args.port, Path(args.dir) if args.dir else None, args.index, feed, args.bind)
        return
    rate = capacity(args.processes, args.seconds)
    print(f"sink, {args.processes} process(es): {rate:,.0f} messages/s accepted (wrk -t2 -c16)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
