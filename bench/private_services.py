"""PostgreSQL and Redis of a benchmark's own, on spare ports, started, restarted and
stopped by pid.

The fault benchmark restarts its database and its Redis mid-run; it must never touch
the machine's shared servers (5432, 6379), so it starts these:

- ``PrivatePostgres``: ``initdb`` into a directory of its own (once; kept between
  runs), then the ``postgres`` server itself as a child process (not ``pg_ctl``, which
  would leave a daemon whose pid we only read from a file), listening on the addresses
  given (127.0.0.1 and, for worker hosts in network namespaces, the root namespace's
  veth address) with trust authentication: a throwaway server for the bench only. As
  root, the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
  ``fsync`` is off: a restart here is a clean stop (the OS never crashes), and the
  disk's flush speed is not what the benchmark measures.
  ``PrivatePostgres(..., settings=production_settings())`` runs it instead with the
  settings of ``deploy/postgresql.conf`` (autovacuum on, fsync on: what production
  runs), for the end-to-end benchmark: the machine's shared server may be tuned for
  tests (CI's has autovacuum off, and a million-delivery campaign's dead rows then slow
  every claim).
- ``PrivateRedis``: ``redis-server`` with an append-only file (as a production broker
  runs), so a restart keeps the queued tasks and RedBeat's schedule and lock; the
  clients still see their connections dropped.

``restart()`` stops the server (SIGINT: PostgreSQL's fast shutdown, which ends every
client's connection; SIGTERM for Redis), waits for it to exit, optionally waits a
while longer (the outage), and starts it again on the same port. Every server is
stopped on every exit path: ``Services`` is a context manager and also registers an
``atexit`` hook and SIGTERM/SIGHUP handlers, so an interrupted run leaves nothing.
"""

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import harness
import processes

PG_BIN = Path(os.environ.get("RENOTIFY_PG_BIN", "/usr/lib/postgresql/15/bin"))
INITDB = (str(PG_BIN / "initdb"), "-U", "postgres", "--auth=trust", "--encoding=UTF8")
SHARED_PORTS = {5432, 6379}  # the machine's own servers: never ours
PG_SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "max_wal_size": "2GB",
    "log_min_messages": "warning",
}
DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "postgresql.conf"


def production_settings(path: Path = DEPLOY_CONF) -> dict[str, str]:
    """The settings of ``deploy/postgresql.conf`` (``name = value``, comments dropped)."""
    settings = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            name, value = (part.strip() for part in line.split("=", 1))
            settings[name] = value.strip("'")
    return {**settings, "log_min_messages": "warning"}


def spare_port() -> int:
    """A TCP port nothing listens on now (on any address), not one of the shared ones."""
    while True:
        with socket.socket() as probe:
            probe.bind(("0.0.0.0", 0))
            port = probe.getsockname()[1]
        if port not in SHARED_PORTS:
            return port


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _stop_pid(proc: subprocess.Popen, sig: int, timeout: float = 60) -> None:
    """``sig`` to the process we started, by pid; its group is killed if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class PrivateServer:
    """What a private PostgreSQL and Redis share: where they keep their files, the
    addresses and spare port they listen on, their process and how often it restarted."""

    directory: Path
    listen: tuple[str, ...] = ("127.0.0.1",)
    port: int = field(default_factory=spare_port)
    proc: subprocess.Popen | None = None
    restarts: int = 0

    def __post_init__(self) -> None:
        self.directory = self.directory.resolve()  # a server runs in its own directory


@dataclass
class PrivatePostgres(PrivateServer):
    settings: dict[str, str] = field(default_factory=lambda: dict(PG_SETTINGS))

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str, host: str = "127.0.0.1") -> str:
        return f"postgres://postgres@{host}:{self.port}/{database}"

    def _user(self) -> dict:
        """Run as the ``postgres`` user when we are root (initdb and postgres refuse root)."""
        if os.geteuid() != 0:
            return {}
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise SystemExit(
                "running as root needs a 'postgres' user for the private server"
            ) from None
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _chown(self, path: Path) -> None:
        user = self._user()
        if user:
            shutil.chown(path, user["user"], user["group"])

    def _traversable_check(self) -> None:
        """The server's user must be able to reach its directory (a 0700 temporary
        directory above it would stop it, with an unhelpful initdb error)."""
        if not self._user():
            return
        for parent in self.directory.parents:
            if not parent.stat().st_mode & 0o001:
                raise SystemExit(f"{parent} is not searchable by the 'postgres' user: chmod o+x")

    def init(self) -> None:
        """initdb once (a kept directory of the same major version is reused)."""
        if (self.data / "PG_VERSION").exists():
            return
        if not (PG_BIN / "initdb").exists():
            raise SystemExit(f"PostgreSQL's initdb not found in {PG_BIN} (set RENOTIFY_PG_BIN)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._chown(self.directory)
        self._traversable_check()
        log = self.directory / "initdb.log"
        with log.open("w") as out:
            done = subprocess.run(
                [*INITDB, "-D", str(self.data)],
                stdout=out,
                stderr=subprocess.STDOUT,
                **self._user(),
            )
        if done.returncode != 0:
            raise SystemExit(f"initdb failed: see {log}")
        # Trust from anywhere: a throwaway server for the bench, on a private subnet.
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n"
        )

    def start(self) -> None:
        self.init()
        sockets = self.directory / "sockets"
        sockets.mkdir(exist_ok=True)
        self._chown(sockets)
        settings = {
            **self.settings,
            "port": str(self.port),
            "listen_addresses": ",".join(self.listen),
            "unix_socket_directories": str(sockets),
        }
        command = [str(PG_BIN / "postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        log = (self.directory / "server.log").open("a")
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self._user()
        )
        self._wait_ready()

    def _wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"private PostgreSQL exited: see {self.directory / 'server.log'}")
            ready = subprocess.run(
                [str(PG_BIN / "pg_isready"), "-q", "-h", self.listen[0], "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise SystemExit(f"private PostgreSQL not ready within {seconds:.0f} s")

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc, signal.SIGINT)  # fast shutdown: clients are disconnected

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far: the postmaster with the backends it has
        reaped (children's time, from /proc) and those still running."""
        if self.proc is None:
            return 0.0
        total = _cpu_ticks(self.proc.pid, with_children=True)
        for backend in processes.process_tree().get(self.proc.pid, ()):
            total += _cpu_ticks(backend, with_children=False)
        return total / os.sysconf("SC_CLK_TCK")

    def restart(self, *, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def database_create(self, name: str) -> str:
        """Drop and create database ``name``; its URL."""
        with harness.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces); [] once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _cpu_ticks(pid: int, *, with_children: bool) -> int:
    # After the name: state, ppid, ..., utime (11), stime (12), cutime (13), cstime (14).
    fields = _stat_fields(pid)
    if not fields:
        return 0
    ticks = int(fields[11]) + int(fields[12])
    return ticks + (int(fields[13]) + int(fields[14]) if with_children else 0)


@dataclass
class PrivateRedis(PrivateServer):
    def url(self, db: int = 0, host: str = "127.0.0.1") -> str:
        return f"redis://{host}:{self.port}/{db}"

    def start(self) -> None:
        if not shutil.which("redis-server"):
            raise SystemExit("redis-server not found on PATH (apt-get install redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            "redis-server", "--port", str(self.port), "--bind", *self.listen,
            "--protected-mode", "no", "--dir", str(self.directory), "--save", "",
            "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, start_new_session=True)
        deadline = time.monotonic() + 30
        while not _tcp_open(self.listen[0], self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"private Redis did not start: see {self.directory}/redis.log")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc, signal.SIGTERM)

    def restart(self, *, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def flush(self) -> None:
        import redis

        redis.Redis.from_url(self.url()).flushall()


@dataclass
class Services:
    """A private PostgreSQL and Redis under ``directory``; ``with Services(...) as s:``."""

    directory: Path
    listen: tuple[str, ...] = ("127.0.0.1",)
    postgres: PrivatePostgres = field(init=False)
    redis: PrivateRedis = field(init=False)

    def __post_init__(self) -> None:
        self.postgres = PrivatePostgres(self.directory / "postgres", self.listen)
        self.redis = PrivateRedis(self.directory / "redis", self.listen)

    def __enter__(self) -> "Services":
        atexit.register(self.stop)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _exit_on_signal)
        try:
            self.postgres.start()
            shutil.rmtree(self.redis.directory, ignore_errors=True)  # a fresh Redis per run
            self.redis.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()


@contextmanager
def postgres_running(directory: Path, settings: dict[str, str]) -> Iterator[PrivatePostgres]:
    """A private PostgreSQL with ``settings`` for the ``with`` block, stopped on every
    exit path (as ``Services``)."""
    server = PrivatePostgres(directory, settings=settings)
    atexit.register(server.stop)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _exit_on_signal(signum, frame) -> None:
    # SystemExit unwinds the with-blocks and runs atexit: every server is stopped.
    raise SystemExit(f"stopped by signal {signum}")


if __name__ == "__main__":
    # A quick check: start both, restart both, stop both.
    with Services(harness.OUT_DIR / "faults" / "services-check") as services:
        url = services.postgres.database_create("renotify_faults_check")
        print("postgres", url, "redis", services.redis.url())
        services.postgres.restart(down_seconds=1)
        services.redis.restart(down_seconds=1)
        with harness.connect(url) as conn:
            print("after restarts:", conn.execute("SELECT 1").fetchone())
