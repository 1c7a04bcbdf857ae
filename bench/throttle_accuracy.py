"""Benchmark: how exactly the shared throttle holds a campaign's limit across workers.

A campaign with a limit of L messages a minute (default 6,000) is fanned out to more
members than can be sent in the run, in a database of this script's own. Then W
worker processes (default 2) each call ``campaign_send_chunk(campaign_id=...)`` in a
loop, the body of the ``campaign_send`` Celery task without the broker around it,
until a deadline (default 200 s after they start; each finishes its current chunk).
The throttle is the production one: GCRA in Redis (REDIS_URL on a database of this
script's own), shared by the workers through Redis exactly as Celery workers share it.

Every message goes to ``TimestampSink``, which serialises it (``as_bytes``, as SMTP
would) and appends ``time.time()`` at that moment to a file per process: the times an
ESP would see. Then, over all sends merged:

- the largest number of sends in any 60-second window ``[t, t + 60)`` (windows that
  start at a send: the maximum is always at one), target <= L;
- the sustained rate: sends per minute between the first and the last send,
  target >= 95% of L; also the smallest full window, to show the pace never sags.

Worker processes are started with ``subprocess.Popen`` and always stopped by pid.

With ``--repeat R`` each round uses a new campaign; the verdicts are then on the
largest window of all rounds and on the median sustained rate.

Usage: .venv/bin/python bench/throttle_accuracy.py [--limit L] [--seconds S]
           [--workers W] [--rows N] [--repeat R]
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import campaign_setup
import harness
import redis
from django.core.mail.backends.base import BaseEmailBackend
from harness import median, verdict

DATABASE = "renotify_bench_throttle"
REDIS_URL = "redis://127.0.0.1:6379/5"
WINDOW = 60.0
TARGET_SUSTAINED_SHARE = 0.95
SCRIPT = str(Path(__file__).resolve())
OUT = harness.OUT_DIR / "throttle"
SENDS_FILE_ENV = "RENOTIFY_BENCH_SENDS_FILE"


class TimestampSink(BaseEmailBackend):
    """Serialises each message and appends the time it was "accepted", one line per
    send, to the file named by $RENOTIFY_BENCH_SENDS_FILE (kept open, line-buffered)."""

    _file = None

    def send_messages(self, email_messages) -> int:
        if TimestampSink._file is None:
            TimestampSink._file = open(os.environ[SENDS_FILE_ENV], "w", buffering=1)  # noqa: SIM115
        for message in email_messages:
            message.message().as_bytes(linesep="\r\n")
            TimestampSink._file.write(f"{time.time():.6f}\n")
        return len(email_messages)


# --- A worker process --------------------------------------------------------------------


def child(campaign_id: int, until: float) -> None:
    sys.path.insert(0, str(harness.ROOT))
    import django

    django.setup()
    from campaigns.services.sending import campaign_send_chunk

    chunks = sent = 0
    while time.time() < until:
        outcome = campaign_send_chunk(campaign_id=campaign_id)
        if not outcome.claimed:
            break
        chunks += 1
        sent += outcome.sent
    print(json.dumps({"chunks": chunks, "sent": sent}), flush=True)


# --- Analysis ----------------------------------------------------------------------------------


def windows(times: list[float]) -> tuple[int, float, int | None]:
    """(largest count in any [t, t + 60) window, its start, smallest count in a window
    that lies wholly between the first and the last send)."""
    largest, at, smallest = 0, times[0], None
    j = 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + WINDOW:
            j += 1
        if j - i > largest:
            largest, at = j - i, start
        if start + WINDOW <= times[-1] and (smallest is None or j - i < smallest):
            smallest = j - i
    return largest, at, smallest


def analyse(files: list[Path], limit: int) -> tuple[str, dict]:
    per_worker = [[float(line) for line in path.read_text().split()] for path in files]
    times = sorted(t for worker in per_worker for t in worker)
    if len(times) < 2:
        raise SystemExit("fewer than two sends were recorded")
    span = times[-1] - times[0]
    sustained = (len(times) - 1) / span * WINDOW
    largest, at, smallest = windows(times)
    share = sustained / limit
    lines = [
        f"{len(times):,} sends over {span:.1f} s by {len(files)} workers"
        f" ({', '.join(f'{len(w):,}' for w in per_worker)})",
        f"largest 60 s window: {largest:,} sends (starting {at - times[0]:.1f} s in)"
        f"   target <= {limit:,}: {verdict(largest <= limit)}",
        f"sustained rate: {sustained:,.0f}/min = {share:.1%} of the limit"
        f"   target >= {TARGET_SUSTAINED_SHARE:.0%}: {verdict(share >= TARGET_SUSTAINED_SHARE)}",
        "smallest full 60 s window: "
        + (f"{smallest:,} sends" if smallest is not None else "n/a (under 60 s of sends)"),
    ]
    results = {
        "limit_per_minute": limit,
        "workers": len(files),
        "sends": len(times),
        "sends_per_worker": [len(w) for w in per_worker],
        "span_seconds": span,
        "largest_window": largest,
        "largest_window_starts_after": at - times[0],
        "smallest_full_window": smallest,
        "sustained_per_minute": sustained,
        "sustained_share": share,
    }
    return "\n".join(lines), results


# --- The parent --------------------------------------------------------------------------------


def campaign_prepare(limit: int, audience: int) -> int:
    """A campaign in state "sending" with its deliveries, and a fresh throttle key."""
    from campaigns.services.fanout import campaign_fan_out

    campaign = campaign_setup.campaign_create(state="sending", throttle_per_minute=limit)
    added = campaign_fan_out(campaign=campaign)
    if added != audience:
        raise SystemExit(f"fan-out made {added} deliveries, expected {audience}")
    redis.Redis.from_url(REDIS_URL).delete(f"renotify:throttle:campaign-{campaign.pk}")
    return campaign.pk


def workers_run(url: str, campaign_id: int, workers: int, seconds: float) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    env = campaign_setup.django_env(
        url,
        REDIS_URL=REDIS_URL,
        EMAIL_BACKEND="throttle_accuracy.TimestampSink",
        PYTHONPATH=str(Path(SCRIPT).parent),
    )
    until = time.time() + seconds
    files = [OUT / f"sends-{n}.txt" for n in range(workers)]
    processes: list[subprocess.Popen] = []
    try:
        for path in files:
            command = [harness.PYTHON, SCRIPT, "--child", "--campaign", str(campaign_id)]
            command += ["--until", repr(until)]
            with path.with_suffix(".log").open("w") as log:
                processes.append(
                    subprocess.Popen(
                        command,
                        env={**env, SENDS_FILE_ENV: str(path)},
                        cwd=harness.ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        harness.progress(f"{workers} workers (pids {[p.pid for p in processes]}) for {seconds} s")
        for process in processes:
            # A worker finishes the chunk it holds after the deadline: allow for that.
            process.wait(timeout=max(1.0, until - time.time()) + 120)
            if process.returncode != 0:
                raise SystemExit(f"worker {process.pid} failed ({process.returncode}): see {OUT}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=6000, help="messages per minute")
    parser.add_argument("--seconds", type=float, default=200, help="how long the workers send")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--rows", type=int, help="audience (default: more than can be sent)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (default 1)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--campaign", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--until", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.campaign, args.until)
        return

    audience = args.rows or math.ceil(args.limit / WINDOW * (args.seconds + 60))
    url = campaign_setup.database_url(DATABASE)
    harness.progress(f"database {DATABASE}: recreate and migrate; {audience:,} members")
    campaign_setup.database_prepare(url)
    with harness.connect(url) as conn:
        campaign_setup.members_seed(conn, reachable=audience)
    campaign_setup.django_start(url, REDIS_URL=REDIS_URL)
    print(
        f"Throttle accuracy: limit {args.limit:,}/min, {args.workers} worker processes,"
        f" Redis throttle, {args.seconds:.0f} s per round, {args.repeat} round(s)"
    )
    rounds = []
    for round_no in range(args.repeat):
        campaign_id = campaign_prepare(args.limit, audience)
        files = workers_run(url, campaign_id, args.workers, args.seconds)
        text, results = analyse(files, args.limit)
        print(f"\nround {round_no + 1}:\n{text}")
        rounds.append(results)
    # Over the rounds: the largest window of all, the median sustained rate (the verdicts
    # printed for one round and for several alike).
    largest = max(r["largest_window"] for r in rounds)
    sustained = median([r["sustained_share"] for r in rounds])
    if args.repeat > 1:
        print(
            f"\nover {args.repeat} rounds: largest 60 s window {largest:,}"
            f"   target <= {args.limit:,}: {verdict(largest <= args.limit)};"
            f" median sustained rate {sustained:.1%} of the limit"
            f"   target >= {TARGET_SUSTAINED_SHARE:.0%}:"
            f" {verdict(sustained >= TARGET_SUSTAINED_SHARE)}"
        )
    targets = {
        "largest 60 s window (sends)": harness.target(
            largest, f"<= {args.limit:,}", largest <= args.limit
        ),
        "sustained rate / limit": harness.target(
            sustained, f">= {TARGET_SUSTAINED_SHARE:.2f}", sustained >= TARGET_SUSTAINED_SHARE
        ),
    }
    path = harness.save_results("throttle_accuracy", {"rounds": rounds, "targets": targets})
    print(f"\n(figures also in {path})")


if __name__ == "__main__":
    main()
