"""The app's processes as production runs them, started and stopped by pid, with the
peak memory of each kind.

- ``web``: gunicorn with the app's own settings file (``config/gunicorn.py``: its
  redacting access log), DEBUG off (``harness.django_env``), sync workers;
- ``worker``: ``celery -A config worker`` on the given queues (``bulk`` for sender
  chains and fan-outs, ``celery`` for ESP events, receipts and beat's sweeps) with a
  prefork pool of the given concurrency;
- ``beat``: ``celery -A config beat`` (RedBeat, with its lock in Redis);
- anything else the caller started (``adopt``: the sink's processes).

Every process starts in a session of its own; ``Rig.stop`` (also on an exception,
as a context manager) sends SIGTERM to each by pid, then SIGKILL to its group if it
has not gone within 20 s. A sampler thread reads, once a second, VmHWM (the peak
resident set the kernel keeps per process) and VmRSS of every process and of its
children (prefork children, gunicorn workers), so children that come and go are
counted too. ``Rig.peak_rss`` gives per kind the largest single process's peak and
the largest total of the kind's resident sets seen at one time.
"""

import socket
import subprocess
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import harness

BIN = Path(harness.PYTHON).parent
SAMPLE_SECONDS = 1.0


@dataclass
class Started:
    kind: str
    name: str
    popen: subprocess.Popen
    log: Path | None


def _status_kb(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) in kB of ``pid``; (0, 0) once it has gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0, 0  # the process has gone
    fields = dict(line.split(":", 1) for line in lines if ":" in line)

    def kb(key: str) -> int:
        return int(fields.get(key, "0 kB").split()[0])

    return kb("VmHWM"), kb("VmRSS")


def process_tree() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process on the machine."""
    tree: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # after the command's name
        tree[ppid].append(int(entry.name))
    return tree


def _descendants(pid: int, tree: dict[int, list[int]]) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(tree.get(current, ()))
    return found


def _port_free_check(port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise SystemExit(f"port {port} is in use by another process") from None


@dataclass
class Rig:
    """Processes started for one run; use as ``with Rig(log_dir) as rig:``."""

    log_dir: Path
    started: list[Started] = field(default_factory=list)
    # kind -> pid -> peak VmHWM (kB); kind -> largest sum of VmRSS seen at one time (kB)
    hwm: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    total_rss: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sampling: threading.Lock = field(default_factory=threading.Lock)
    _sampler: threading.Thread | None = None

    def __enter__(self) -> "Rig":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._sampler = threading.Thread(target=self._sample_forever, daemon=True)
        self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- Starting ------------------------------------------------------------------------

    def _spawn(self, kind: str, name: str, command: list[str], env: dict[str, str]) -> Started:
        log = self.log_dir / f"{name}.log"
        popen = subprocess.Popen(
            command,
            cwd=harness.ROOT,
            env=env,
            start_new_session=True,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        started = Started(kind, name, popen, log)
        with self._lock:
            self.started.append(started)
        return started

    def adopt(self, kind: str, popen: subprocess.Popen, name: str = "") -> None:
        """Sample (and stop) a process the caller started."""
        with self._lock:
            self.started.append(Started(kind, name or f"{kind}-{popen.pid}", popen, None))

    def web(
        self, *, env: dict[str, str], port: int, workers: int = 2, app: str = "config.wsgi"
    ) -> Started:
        """gunicorn with config/gunicorn.py serving ``app`` (``load_driver:wsgi_app()``
        adds the no-op view); ready once it answers HTTP at all."""
        _port_free_check(port)  # else the readiness probe could reach another server
        command = [
            str(BIN / "gunicorn"), "-c", str(harness.ROOT / "config" / "gunicorn.py"), app,
            "--workers", str(workers), "--bind", f"127.0.0.1:{port}", "--timeout", "120",
        ]  # fmt: skip
        started = self._spawn("web", f"web-{port}", command, env)
        self._wait(started, lambda: harness.http_status(port, "/bench/noop/") != 0)
        return started

    def worker(
        self,
        *,
        env: dict[str, str],
        queues: str,
        concurrency: int,
        name: str,
        kind: str = "",
        wrap=None,
    ) -> Started:
        """A Celery worker consuming ``queues`` (comma-separated) with ``concurrency``
        prefork processes; ready once it logs "ready.". ``wrap(command)`` runs it some
        other way that execs the command (``netns.Host.wrap``: in a network namespace),
        so the pid held is still the worker's."""
        command = [
            str(BIN / "celery"), "-A", "config", "worker", "-Q", queues,
            "--concurrency", str(concurrency), "--pool", "prefork", "--loglevel", "INFO",
            "--without-mingle", "--without-gossip", "-n", f"{name}@%h",
        ]  # fmt: skip
        if wrap is not None:
            command = wrap(command)
        started = self._spawn(kind or f"worker {queues}", name, command, env)
        self._wait(started, lambda: "ready." in started.log.read_text())
        return started

    def beat(self, *, env: dict[str, str], name: str = "beat") -> Started:
        """celery beat (RedBeat in REDIS_URL); ready once it logs that it is starting."""
        schedule = self.log_dir / f"{name}-schedule"
        command = [
            str(BIN / "celery"), "-A", "config", "beat", "--loglevel", "INFO",
            "-s", str(schedule),
        ]  # fmt: skip
        started = self._spawn("beat", name, command, env)
        self._wait(started, lambda: "beat: Starting" in started.log.read_text())
        return started

    def _wait(self, started: Started, ready, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not ready():
            if started.popen.poll() is not None:
                raise SystemExit(f"{started.name} exited during start-up: see {started.log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{started.name} not ready within {seconds:.0f} s: {started.log}")
            time.sleep(0.2)

    # --- Stopping --------------------------------------------------------------------------

    def stop_one(self, started: Started) -> None:
        self._sample_once()  # its last peak, before it goes
        harness.process_stop(started.popen)
        with self._lock:
            self.started = [s for s in self.started if s is not started]

    def stop(self, kind: str | None = None) -> None:
        """Stop every process (of ``kind``), newest first; the sampler too when all."""
        for started in reversed(list(self.started)):
            if kind is None or started.kind == kind:
                self.stop_one(started)
        if kind is None:
            self._stop.set()

    # --- Memory ----------------------------------------------------------------------------

    def _sample_forever(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample_once()

    def _sample_once(self) -> None:
        with self._sampling:  # the sampler thread and the caller's thread
            self._sample_locked()

    def _sample_locked(self) -> None:
        tree = process_tree()
        with self._lock:
            roots = [(s.kind, s.popen.pid) for s in self.started if s.popen.poll() is None]
        totals: dict[str, int] = defaultdict(int)
        for kind, root in roots:
            for pid in _descendants(root, tree):
                hwm, rss = _status_kb(pid)
                if hwm:
                    peaks = self.hwm[kind]
                    peaks[pid] = max(peaks.get(pid, 0), hwm)
                    totals[kind] += rss
        for kind, total in totals.items():
            self.total_rss[kind] = max(self.total_rss[kind], total)

    def peak_rss(self) -> dict[str, dict[str, float]]:
        """Per kind: the largest process's peak (MB), processes seen, and the largest sum
        of the kind's resident sets at one time (MB)."""
        self._sample_once()
        return {
            kind: {
                "max_process_mb": max(peaks.values()) / 1024,
                "processes": len(peaks),
                "peak_total_mb": self.total_rss[kind] / 1024,
            }
            for kind, peaks in self.hwm.items()
            if peaks
        }

    def reset_peaks(self, kind: str) -> None:
        """Forget ``kind``'s peaks (for a new phase; VmHWM itself cannot be reset, so
        start new processes for a phase whose own peak matters)."""
        with self._sampling:
            self.hwm.pop(kind, None)
            self.total_rss.pop(kind, None)
