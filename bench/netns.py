"""Worker "hosts" as network namespaces of the script's own, each joined to the root
namespace by a veth pair on a private subnet.

Host k gets namespace ``rn<tag>h<k>`` (tag: this process's pid, so two runs never
collide) and the subnet ``10.231.<k>.0/24``: the root end of its veth pair is
``10.231.<k>.1``, the host's end ``10.231.<k>.2``. A process started in the namespace
(``Host.wrap(command)``: ``ip netns exec <name> ...``, which execs the command, so the
pid we hold is the command's own) sees only its loopback and its veth: it reaches
PostgreSQL, the broker and the ESP sink through ``Host.gateway`` (the root namespace's
end), where the private servers listen, never through 127.0.0.1. Each host also has a
var directory of its own (``RENOTIFY_VAR_DIR``): nothing is shared through the
filesystem (no outbox, no filesystem broker, no file cache).

``Hosts`` (a context manager) makes them and removes every namespace and veth it made
on every exit path (``atexit`` as well). Needs root (``ip netns add``).
"""

import atexit
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.231"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Host:
    index: int
    name: str  # the namespace
    gateway: str  # the root namespace's address on this host's link
    address: str  # the host's own address
    var_dir: Path

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        return {**base, "RENOTIFY_VAR_DIR": str(self.var_dir)}


@dataclass
class Hosts:
    """``count`` namespaces; ``with Hosts(2, var_root) as hosts: hosts.hosts[0]...``."""

    count: int
    var_root: Path
    tag: str = field(default_factory=lambda: str(os.getpid()))
    hosts: list[Host] = field(default_factory=list)

    @property
    def gateways(self) -> tuple[str, ...]:
        """The root namespace's addresses, where the private servers must listen."""
        return tuple(host.gateway for host in self.hosts)

    def __enter__(self) -> "Hosts":
        if self.count == 0:
            return self  # everything in the root namespace
        if os.geteuid() != 0:
            raise SystemExit("--hosts 2 needs root (ip netns add); run with --hosts 1")
        if not shutil.which("ip"):
            raise SystemExit("the 'ip' command (iproute2) is needed for --hosts 2")
        atexit.register(self.remove)
        try:
            for index in range(1, self.count + 1):
                self._make(index)
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def _make(self, index: int) -> None:
        name = f"rn{self.tag}h{index}"
        root_end, host_end = f"{name}r", f"{name}n"  # interface names: at most 15 chars
        gateway, address = f"{SUBNET}.{index}.1", f"{SUBNET}.{index}.2"
        host = Host(index, name, gateway, address, self.var_root / f"host{index}")
        ip("netns", "add", name)
        self.hosts.append(host)  # from here on, remove() cleans it up
        ip("link", "add", root_end, "type", "veth", "peer", "name", host_end)
        ip("link", "set", host_end, "netns", name)
        ip("addr", "add", f"{gateway}/24", "dev", root_end)
        ip("link", "set", root_end, "up")
        inside = ["netns", "exec", name, "ip"]
        ip(*inside, "addr", "add", f"{address}/24", "dev", host_end)
        ip(*inside, "link", "set", host_end, "up")
        ip(*inside, "link", "set", "lo", "up")
        ip(*inside, "route", "add", "default", "via", gateway)
        host.var_dir.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        """Delete every namespace (its veth end goes with it, and so the pair)."""
        for host in self.hosts:
            ip("link", "del", f"{host.name}r", check=False)
            ip("netns", "del", host.name, check=False)
        self.hosts.clear()

    def reachable(self, host: Host, port: int) -> bool:
        """Whether ``host`` reaches ``gateway:port`` (a server listening there)."""
        probe = (
            "import socket,sys;"
            f"socket.create_connection(('{host.gateway}', {port}), timeout=3);sys.exit(0)"
        )
        done = subprocess.run(host.wrap(["python3", "-c", probe]), capture_output=True)
        return done.returncode == 0


if __name__ == "__main__":
    # A quick check: two hosts, each reaching the root namespace but not its loopback.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, Hosts(2, Path(tmp)) as made:
        for h in made.hosts:
            out = subprocess.run(
                h.wrap(["ip", "-brief", "addr"]), capture_output=True, text=True
            ).stdout
            print(h.name, h.address, "->", h.gateway, "|", " ".join(out.split()))
    print("left behind:", [n for n in ip("netns", "list").stdout.split() if n.startswith("rn")])
