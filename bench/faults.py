"""Benchmark: a campaign sent while things break, then checked for nothing lost and
nothing sent twice.

For each broker (``--broker redis|rabbitmq``; both by default, one after the other,
each in a child process of its own): a private PostgreSQL and Redis
(``private_services``), SCALE members (100,000), the app's processes as production runs
them (``processes.Rig``: gunicorn for the ESP webhooks, Celery workers on both queues,
two beat processes for the whole run), mail through anymail's Postmark backend into the
fake ESP (``esp_sink``), which posts each message's events back in SendGrid's batched
shape with 10% of them twice and 10% held back (out of order). With ``--hosts 2`` the
workers run in two network namespaces (``netns``) and reach everything over the root
namespace's veth addresses.

During the send, at random moments (``--seed``): SIGKILL a worker's whole process group
five times (restarting it each time), restart Redis once and PostgreSQL once. Then it
waits until quiet; deliveries the reconciler marked ``unknown`` are resent as an
operator would (``deliveries_resend``), and it waits until quiet again. Checks: every
delivery terminal; the sink's count per delivery exactly one, except the resent
``unknown`` ones (counted); ``manage.py verify_ledger``; the reach report equal to the
sink's and the webhooks' counts. What it prints and the targets: bench/README.md.

Usage: SCALE=100000 .venv/bin/python bench/faults.py [--broker redis|rabbitmq|both]
           [--hosts 1|2] [--seed N] [--kills 5] [--timeout S]
"""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import campaign_setup
import esp_sink
import harness
import netns
import private_services
import processes
from harness import table, verdict

SCRIPT = str(Path(__file__).resolve())
BROKERS = ("redis", "rabbitmq")
DATABASE = "renotify_faults"
RABBITMQ_VHOST = "renotify_faults_bench"
RABBITMQ_PORT = 5672
WEB_PORT_DEFAULT = 0  # a spare port
THROTTLE = 10_000_000  # per minute: the throttle never waits
DUPLICATE_SHARE = 0.10
REORDER_SHARE = 0.10
TARGET_MINUTES = 15.0
QUIET_SECONDS = 10.0  # nothing changes for this long: quiet
# Kills fall between these shares of the messages sent; the restarts at fixed shares.
KILL_WINDOW = (0.05, 0.90)
REDIS_RESTART_AT = 0.35
POSTGRES_RESTART_AT = 0.60
DOWN_SECONDS = 3.0  # how long each restarted server stays down
NOT_TERMINAL = ("pending", "claimed", "sending", "unknown")  # unknown: once resent


def scale() -> int:
    return int(os.environ.get("SCALE", "100000"))


# --- The app's environment ---------------------------------------------------------------


def app_env(
    *, db_url: str, redis_url: str, broker_url: str, sink_url: str, var_dir: Path, web: str
) -> dict[str, str]:
    return campaign_setup.django_env(
        db_url,
        ALLOWED_HOSTS="127.0.0.1",
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=broker_url,
        RENOTIFY_VAR_DIR=str(var_dir),
        SITE_URL=web,
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend",
        ANYMAIL_POSTMARK_SERVER_TOKEN="bench-server-token",
        ANYMAIL_POSTMARK_API_URL=sink_url,
        # A lost sender's claims come back after a minute, not five: the run stays short.
        RENOTIFY_LEASE_SECONDS="60",
        # The sink's events hold 0.2% complaints (esp_sink.EXTRA_EVENTS), over the
        # breaker's 0.1%: the breaker would pause the campaign, which is not under test.
        RENOTIFY_BREAKER_COMPLAINT_RATE="0.01",
        # The sink posts opens and clicks a second or so after the send, which the app
        # judges a machine's (RENOTIFY_MACHINE_SECONDS): 0 counts them as people's, so
        # the report's opened and clicked can be compared with the events posted.
        RENOTIFY_MACHINE_SECONDS="0",
        PYTHONPATH=str(Path(SCRIPT).parent),
        LOG_LEVEL="INFO",
    )


def rabbitmq_vhost_reset() -> None:
    """A vhost of the benchmark's own on the shared RabbitMQ, emptied by re-creating it."""
    for args in (
        ["delete_vhost", RABBITMQ_VHOST],
        ["add_vhost", RABBITMQ_VHOST],
        ["set_permissions", "-p", RABBITMQ_VHOST, "guest", ".*", ".*", ".*"],
    ):
        done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True)
        if done.returncode != 0 and args[0] != "delete_vhost":
            raise SystemExit(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")


def rabbitmq_relay(rig: processes.Rig, gateways: list[str]) -> None:
    """The shared RabbitMQ listens on 127.0.0.1 only: a socat relay on each namespace's
    gateway address carries the workers' connections to it (one process each, by pid)."""
    for gateway in gateways:
        relay = subprocess.Popen(
            [
                "socat",
                f"TCP-LISTEN:{RABBITMQ_PORT},bind={gateway},reuseaddr,fork",
                f"TCP:127.0.0.1:{RABBITMQ_PORT}",
            ],
            start_new_session=True,
        )
        rig.adopt("relay", relay, f"relay-{gateway}")


# --- Faults ---------------------------------------------------------------------------------


@dataclass
class Fault:
    at_share: float  # of the messages expected
    what: str  # "kill", "redis", "postgres"
    done_at: float | None = None  # seconds since the send started
    sent_then: int = 0
    outcome: str = ""


def faults_plan(rng: random.Random, kills: int) -> list[Fault]:
    plan = [Fault(rng.uniform(*KILL_WINDOW), "kill") for _ in range(kills)]
    plan += [Fault(REDIS_RESTART_AT, "redis"), Fault(POSTGRES_RESTART_AT, "postgres")]
    return sorted(plan, key=lambda f: f.at_share)


@dataclass
class Workers:
    """The Celery workers: one per host (two in the root namespace with ``--hosts 1``),
    each consuming both queues; ``kill`` SIGKILLs one's process group and starts it
    again."""

    rig: processes.Rig
    envs: list[dict[str, str]]
    wraps: list
    started: list = field(default_factory=list)
    generation: Counter = field(default_factory=Counter)
    exited: list[str] = field(default_factory=list)  # on their own, then started again

    def start_all(self) -> None:
        self.started = [self._start(i) for i in range(len(self.envs))]

    def _start(self, i: int):
        self.generation[i] += 1
        return self.rig.worker(
            env=self.envs[i],
            queues="celery,bulk",
            concurrency=2,
            name=f"w{i + 1}-{self.generation[i]}",
            kind="worker",
            wrap=self.wraps[i],
        )

    def supervise(self) -> None:
        """Start again a worker that exited on its own, as systemd's Restart=always does
        (deploy/systemd): a Redis restart can end one in kombu's reconnect."""
        for i, worker in enumerate(self.started):
            if worker.popen.poll() is not None:
                self.exited.append(f"w{i + 1} pid {worker.popen.pid}")
                harness.progress(f"w{i + 1} exited on its own; started again")
                self.rig.stop_one(worker)
                self.started[i] = self._start(i)

    def kill(self, rng: random.Random) -> str:
        i = rng.randrange(len(self.started))
        victim = self.started[i]
        os.killpg(victim.popen.pid, signal.SIGKILL)  # the worker and its pool, mid-task
        victim.popen.wait()
        self.rig.stop_one(victim)  # forget it (already gone)
        started = time.monotonic()
        self.started[i] = self._start(i)
        return f"w{i + 1} pid {victim.popen.pid} killed; back in {time.monotonic() - started:.1f} s"


def fault_apply(fault: Fault, *, rng, workers: Workers, services) -> str:
    started = time.monotonic()
    if fault.what == "kill":
        return workers.kill(rng)
    server = services.redis if fault.what == "redis" else services.postgres
    server.restart(down_seconds=DOWN_SECONDS)
    return f"down {DOWN_SECONDS:.0f} s, back after {time.monotonic() - started:.1f} s"


# --- Reading the database ---------------------------------------------------------------------


def query(url: str, statement: str, params=()) -> list[tuple]:
    with harness.connect(url) as conn:
        return conn.execute(statement, params).fetchall()


def statuses(url: str) -> dict[str, int]:
    return dict(query(url, "SELECT status, count(*) FROM campaigns_delivery GROUP BY status"))


def unfinished(url: str) -> int:
    counts = statuses(url)
    return sum(counts.get(s, 0) for s in ("pending", "claimed", "sending"))


def events_pending(url: str) -> int:
    return query(url, "SELECT count(*) FROM campaigns_deliveryevent WHERE processed_at IS NULL")[0][
        0
    ]


def quiet_wait(url: str, sink: esp_sink.Sink, *, deadline: float, supervise) -> bool:
    """Until nothing is left to send, post or process, and it stays so for QUIET_SECONDS."""
    quiet_since, last = None, None
    while time.monotonic() < deadline:
        supervise()
        try:
            state = (unfinished(url), sink.events_backlog(), events_pending(url), statuses(url))
        except Exception as error:  # the database restarting: look again
            harness.progress(f"waiting: {type(error).__name__}")
            time.sleep(2)
            continue
        busy = state[0] + state[1] + state[2]
        if busy == 0 and state == last:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= QUIET_SECONDS:
                return True
        else:
            quiet_since = None
        last = state
        time.sleep(1)
    return False


# --- The run (one broker, a child process) -----------------------------------------------------


def run(args) -> dict:
    rng = random.Random(args.seed)
    members = scale()
    base = harness.OUT_DIR / "faults" / args.broker
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)  # the private PostgreSQL runs as 'postgres'
    results: dict = {"broker": args.broker, "hosts": args.hosts, "members": members}
    with (
        netns.Hosts(args.hosts if args.hosts > 1 else 0, base / "hosts") as made,
        private_services.Services(base / "services", ("127.0.0.1", *made.gateways)) as services,
        processes.Rig(base / "logs") as rig,
    ):
        harness.progress(f"{args.broker}: database, {members:,} members")
        db_url = services.postgres.database_create(DATABASE)
        harness.database_migrate(db_url)
        with harness.connect(db_url) as conn:
            campaign_setup.members_seed(conn, reachable=members)
        if args.broker == "rabbitmq":
            rabbitmq_vhost_reset()
            if made.hosts:
                rabbitmq_relay(rig, made.gateways)

        def broker(address: str) -> str:
            if args.broker == "rabbitmq":
                return f"amqp://guest:guest@{address}:{RABBITMQ_PORT}/{RABBITMQ_VHOST}"
            return services.redis.url(0, address)

        web_port = private_services.spare_port()
        sink = esp_sink.Sink(base / "sink", processes=2, bind="0.0.0.0")
        root_env = app_env(
            db_url=db_url,
            redis_url=services.redis.url(),
            broker_url=broker("127.0.0.1"),
            sink_url=sink.api_url,
            var_dir=base / "var-root",
            web=f"http://127.0.0.1:{web_port}",
        )
        sink.feed = esp_sink.FeedOptions(
            url=f"http://127.0.0.1:{web_port}",
            shape="sendgrid",
            auth=root_env["ANYMAIL_WEBHOOK_SECRET"].split(",")[0],
            duplicate_share=DUPLICATE_SHARE,
            reorder_share=REORDER_SHARE,
        )
        sink.start()
        for proc in sink.procs:
            rig.adopt("sink", proc)

        def host_env(address: str, var_dir: Path) -> dict[str, str]:
            return {
                **root_env,
                "DATABASE_URL": services.postgres.url(DATABASE, address),
                "REDIS_URL": services.redis.url(0, address),
                "CELERY_BROKER_URL": broker(address),
                "ANYMAIL_POSTMARK_API_URL": f"http://{address}:{sink.port}/",
                "RENOTIFY_VAR_DIR": str(var_dir),
            }

        if made.hosts:
            envs = [host_env(h.gateway, h.var_dir) for h in made.hosts]
            wraps = [h.wrap for h in made.hosts]
        else:
            envs = [host_env("127.0.0.1", base / f"var-w{i}") for i in (1, 2)]
            wraps = [None, None]
        harness.progress("web, workers, two beats")
        rig.web(env=root_env, port=web_port, workers=2, app="load_driver:wsgi_app()")
        workers = Workers(rig, envs, wraps)
        workers.start_all()
        rig.beat(env=root_env, name="beat-1")
        rig.beat(env=root_env, name="beat-2")

        campaign_setup.django_start(db_url, **{k: v for k, v in root_env.items()})
        campaign = campaign_setup.campaign_create(state="scheduled", throttle_per_minute=THROTTLE)
        from django.db import connection

        connection.close()  # the database restarts mid-run; reconnect when next needed
        from campaigns import enqueue

        enqueue.task_publish("campaigns.tasks.campaigns_start_due")  # as beat would
        started = time.monotonic()
        plan = faults_plan(rng, args.kills)
        results["faults"] = faults_run(
            plan, sink, members, rng, workers, services, started, args.timeout
        )
        send_seconds = time.monotonic() - started
        harness.progress("waiting until quiet")
        deadline = started + args.timeout
        quiet = quiet_wait(db_url, sink, deadline=deadline, supervise=workers.supervise)
        resent = resend_unknown(db_url)
        if resent:
            harness.progress(f"{len(resent)} unknown deliveries resent; waiting until quiet")
            quiet = (
                quiet_wait(db_url, sink, deadline=deadline, supervise=workers.supervise) and quiet
            )
        results.update(
            quiet=quiet,
            send_seconds=send_seconds,
            total_seconds=time.monotonic() - started,
            resent=len(resent),
        )
        results["beats_alive"] = sum(
            1 for s in rig.started if s.kind == "beat" and s.popen.poll() is None
        )
        results["workers_exited"] = workers.exited
        results["log_findings"] = log_findings(rig.log_dir)
        results["checks"] = checks(db_url, root_env, sink, campaign.pk, resent)
        results["reach"] = results["checks"].pop("reach")
        results["processes"] = rig.peak_rss()
    return results


def faults_run(plan, sink, expected, rng, workers, services, started, timeout) -> list[dict]:
    """Apply each fault once the sink has taken its share of the messages."""
    done = []
    for fault in plan:
        while sink.stats().get("requests", 0) < fault.at_share * expected:
            if time.monotonic() - started > timeout:
                raise SystemExit(f"{fault.what} never due: sending stalled? see the logs")
            workers.supervise()
            time.sleep(0.2)
        fault.sent_then = int(sink.stats().get("requests", 0))
        fault.done_at = time.monotonic() - started
        harness.progress(f"{fault.done_at:6.1f} s: {fault.what} at {fault.sent_then:,} sent")
        fault.outcome = fault_apply(fault, rng=rng, workers=workers, services=services)
        done.append(fault.__dict__.copy())
    return done


# Errors worth a line in the report, found in the workers' and beats' logs.
LOG_FINDINGS = {
    "deadlock detected": "PostgreSQL deadlocks (a task failed; its work redone)",
    "beat raised exception": "beat processes that died",
    "Signal handler <function acquire_distributed_beat_lock": "beat lock acquisitions failed",
}


def log_findings(log_dir: Path) -> dict[str, int]:
    found: Counter = Counter()
    for path in log_dir.glob("*.log"):
        text = path.read_text(errors="replace")
        for needle, label in LOG_FINDINGS.items():
            found[label] += text.count(needle)
    return {label: found[label] for label in LOG_FINDINGS.values()}


def resend_unknown(url: str) -> list[int]:
    """What an operator does with ``unknown`` deliveries: resend them (the service)."""
    from campaigns.models import Delivery, DeliveryStatus
    from campaigns.services.reconcile import deliveries_resend

    unknown = list(
        Delivery.objects.filter(status=DeliveryStatus.UNKNOWN).values_list("pk", flat=True)
    )
    if unknown:
        deliveries_resend(deliveries=Delivery.objects.filter(pk__in=unknown), by=None)
    return unknown


# --- Checks ------------------------------------------------------------------------------------


def checks(url: str, env: dict[str, str], sink: esp_sink.Sink, campaign_id: int, resent) -> dict:
    from campaigns.models import Campaign
    from campaigns.selectors import campaign_reach

    counts = sink.log().counts()
    deliveries = dict(query(url, "SELECT id, status FROM campaigns_delivery"))
    resent_set = set(resent)
    sent_statuses = {"sent", "delivered", "opened", "clicked", "bounced", "complained", "deferred"}
    missing = [d for d, s in deliveries.items() if s in sent_statuses and counts[d] == 0]
    duplicates = [d for d, n in counts.items() if n > 1 and d not in resent_set]
    resent_twice = sum(1 for d in resent_set if counts[d] > 1)
    unexpected = [d for d in counts if d not in deliveries]
    not_terminal = {s: n for s, n in statuses(url).items() if s in NOT_TERMINAL}
    verify = subprocess.run(
        [harness.PYTHON, "manage.py", "verify_ledger"], cwd=harness.ROOT, env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    # What the ESP's events say, per delivery that reached the sink (esp_sink.event_kinds).
    kinds: Counter = Counter()
    for delivery_id in counts:
        of_one = set(esp_sink.event_kinds(delivery_id))
        if "click" in of_one:
            of_one.add("open")  # a click implies an open (the app's milestones too)
        kinds.update(of_one)
    reach = campaign_reach(campaign=Campaign.objects.get(pk=campaign_id), responses=False)
    expected = {
        "sent": len(counts),
        "delivered": kinds["delivery"],
        "bounced_hard": kinds["bounce"],
        "opened": kinds["open"],
        "clicked": kinds["click"],
        "complained": kinds["complaint"],
    }
    stats = sink.stats()
    stored = query(url, "SELECT count(*) FROM campaigns_deliveryevent")[0][0]
    # The ESP's events moved these past "sent", but their sender never recorded the send
    # (killed between the ESP's answer and its UPDATE): no sent_at, no ESP message id.
    unrecorded = query(
        url,
        "SELECT count(*) FROM campaigns_delivery WHERE sent_at IS NULL"
        " AND status IN ('delivered', 'opened', 'clicked', 'bounced', 'complained')",
    )[0][0]
    return {
        "deliveries": len(deliveries),
        "not_terminal": not_terminal,
        "sink_messages": sum(counts.values()),
        "missing": len(missing),
        "duplicates": len(duplicates),
        "resent_received_twice": resent_twice,
        "unexpected": len(unexpected),
        "ledger_ok": verify.returncode == 0,
        "ledger_output": verify.stdout.strip().splitlines()[:3],
        "reach": {"report": {k: reach.totals.get(k, 0) for k in expected}, "sink": expected},
        "events_unique": int(stats.get("events_queued", 0)),
        "events_posted": int(stats.get("events_posted", 0)),
        "events_stored": stored,
        "sent_unrecorded": unrecorded,
    }


# --- Report ------------------------------------------------------------------------------------


def targets_of(r: dict) -> dict:
    c, reach = r["checks"], r["reach"]
    minutes = r["total_seconds"] / 60
    return {
        "every delivery terminal": {
            "measured": sum(c["not_terminal"].values()), "target": "== 0",
            "pass": not c["not_terminal"],
        },
        "missing in the sink": {
            "measured": c["missing"], "target": "== 0", "pass": c["missing"] == 0,
        },
        "sent twice (not a resent unknown)": {
            "measured": c["duplicates"], "target": "== 0", "pass": c["duplicates"] == 0,
        },
        "ledger verifies": {"measured": c["ledger_ok"], "target": "True", "pass": c["ledger_ok"]},
        "reach report == sink and webhooks": {
            "measured": reach["report"] == reach["sink"], "target": "True",
            "pass": reach["report"] == reach["sink"],
        },
        "events stored == unique events posted": {
            "measured": c["events_stored"], "target": f"== {c['events_unique']:,}",
            "pass": c["events_stored"] == c["events_unique"],
        },
        "minutes, start to quiet": {
            "measured": round(minutes, 1), "target": f"< {TARGET_MINUTES:.0f}",
            "pass": minutes < TARGET_MINUTES and r["quiet"],
        },
    }  # fmt: skip


def report(r: dict) -> str:
    lines = [
        f"\n== broker {r['broker']}, {r['hosts']} host(s), {r['members']:,} members ==",
        "faults injected:",
        table(
            ["when (s)", "fault", "sent then", "outcome"],
            [
                [f"{f['done_at']:.1f}", f["what"], f"{f['sent_then']:,}", f["outcome"]]
                for f in r["faults"]
            ],
        ),
        "",
        f"sent in {r['send_seconds']:.0f} s (faults done); quiet after {r['total_seconds']:.0f} s;"
        f" {r['resent']} unknown deliveries resent ({r['checks']['resent_received_twice']}"
        " of them reached the sink twice)",
        "delivered by the ESP's account but never recorded as sent by their (killed)"
        f" sender: {r['checks']['sent_unrecorded']:,} (no sent_at: the report's 'sent'"
        " leaves them out)",
        f"workers that exited on their own and were started again (as systemd would):"
        f" {len(r['workers_exited'])} {r['workers_exited'] or ''}",
        f"beat processes still running at the end: {r['beats_alive']} of 2; from the"
        " logs: " + ", ".join(f"{label}: {n}" for label, n in r["log_findings"].items()),
        "reach report vs the sink's and the webhooks' counts:",
        table(
            ["figure", "report", "sink/webhooks"],
            [[k, v, r["reach"]["sink"][k]] for k, v in r["reach"]["report"].items()],
        ),
        "",
        "checks:",
        table(
            ["check", "measured", "target", "result"],
            [
                [name, t["measured"], t["target"], verdict(t["pass"])]
                for name, t in r["targets"].items()
            ],
        ),
    ]  # fmt: skip
    return "\n".join(lines)


# --- Entry points ------------------------------------------------------------------------------


def child(args) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop what we started
    r = run(args)
    r["targets"] = targets_of(r)
    print(report(r), flush=True)
    path = harness.OUT_DIR / f"faults-{args.broker}.json"
    path.write_text(json.dumps(r, indent=2, default=str) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=[*BROKERS, "both"], default="both")
    parser.add_argument("--hosts", type=int, choices=[1, 2], default=1)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=1500, help="seconds per broker")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    brokers = BROKERS if args.broker == "both" else (args.broker,)
    results, failed = {}, []
    for name in brokers:
        (harness.OUT_DIR / f"faults-{name}.json").unlink(missing_ok=True)
        command = [harness.PYTHON, SCRIPT, "--child", "--broker", name, "--hosts", str(args.hosts)]
        command += ["--seed", str(args.seed), "--kills", str(args.kills)]
        command += ["--timeout", str(args.timeout)]
        if subprocess.run(command, cwd=harness.ROOT).returncode != 0:
            failed.append(name)
            continue
        results[name] = json.loads((harness.OUT_DIR / f"faults-{name}.json").read_text())
    targets = {
        f"{name}: {target}": value
        for name, r in results.items()
        for target, value in r["targets"].items()
    }
    path = harness.save_results("faults", {"runs": results, "targets": targets})
    print(f"(figures also in {path})")
    if failed:
        sys.exit(f"faults: the run failed for {', '.join(failed)}")


if __name__ == "__main__":
    main()
