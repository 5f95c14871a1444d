"""The tracking servers' load balancer, locally: HAProxy (Debian's package) in TCP mode on the port
clients use, passing TLS through to the servers as the clouds' network load balancers do, and
checking each server's /health over HTTPS (trusting the local CA) every half second.

It has a fixed set of slots, one more than the replicas (the cloud's surge of one): a slot is a
server's place, empty (maintenance) or holding a server's port. Its runtime socket moves a slot
through a rolling replacement (`roll`): a new server into the empty slot, wait until HAProxy
finds it healthy, drain the old one (no new connections; those open finish), wait for them to
close, stop it, empty its slot.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from local_platform.processes import LOOPBACK, ComponentError, Proc, spawn, wait_until

BACKEND = "tracking"
CHECK_INTERVAL_MS = 500
DRAIN_SECONDS = 5.0
"""How long a drained server's open connections may take to close before it is stopped anyway.
A busy client's keep-alive connection never goes idle, so waiting longer only delays: stopping
the server finishes its requests in flight and closes the connections, and the client opens a
new one (to the new server) and retries (MLflow's client retries every method)."""


def haproxy_bin() -> str:
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise ComponentError(
            "haproxy is not installed: `apt-get install haproxy` (scripts/ensure-test-tools "
            "installs it as root)"
        )
    return found


def config(port: int, slots: list[str], ca_cert: Path, sock: Path) -> str:
    """HAProxy's configuration: every slot empty (in maintenance) until `enter`."""
    servers = "\n".join(f"  server {slot} {LOOPBACK}:1 disabled" for slot in slots)
    return f"""\
global
  stats socket {sock} mode 600 level admin

defaults
  mode tcp
  timeout connect 2s
  timeout client 10m
  timeout server 10m
  timeout check 2s

frontend tracking
  bind {LOOPBACK}:{port}
  default_backend {BACKEND}

backend {BACKEND}
  balance leastconn
  option httpchk
  http-check send meth GET uri /health ver HTTP/1.1 hdr Host {LOOPBACK}:{port}
  http-check expect status 200
  default-server check check-ssl verify required ca-file {ca_cert} inter {CHECK_INTERVAL_MS}ms fall 2 rise 2
{servers}
"""


@dataclass
class Balancer:
    sock: Path
    slots: list[str]
    proc: Proc | None = None
    """None when another process started it (make demo-roll after make demo)."""

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.sock))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """Each slot's row of `show stat`: status (UP, DOWN, DRAIN, MAINT, ...), scur (open
        connections), addr."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            r["svname"]: r for r in rows if r["pxname"] == BACKEND and r["svname"] in self.slots
        }

    def empty_slot(self) -> str:
        stats = self.stats()
        for slot in self.slots:
            if stats[slot]["status"].startswith("MAINT"):
                return slot
        raise ComponentError(f"the load balancer has no empty slot: {stats}")

    def enter(self, slot: str, port: int, timeout: float = 30.0) -> None:
        """Put a server (listening on `port`) in `slot` and wait until HAProxy finds it healthy."""
        self.command(f"set server {BACKEND}/{slot} addr {LOOPBACK} port {port}")
        self.command(f"set server {BACKEND}/{slot} state ready")
        self.wait(slot, lambda row: row["status"] == "UP", timeout, "healthy")

    def drain(self, slot: str, timeout: float = DRAIN_SECONDS) -> None:
        """No new connection to `slot`; wait (up to timeout) for its open ones to close."""
        self.command(f"set server {BACKEND}/{slot} state drain")
        # Past the timeout, stopping the server closes what is left; its clients retry.
        with contextlib.suppress(ComponentError):
            self.wait(slot, lambda row: row["scur"] == "0", timeout, "without connections")

    def empty(self, slot: str) -> None:
        self.command(f"set server {BACKEND}/{slot} state maint")

    def ports(self) -> dict[str, int]:
        """Slot -> port of the servers in service (not empty)."""
        return {
            slot: int(row["addr"].rsplit(":", 1)[1])
            for slot, row in self.stats().items()
            if not row["status"].startswith("MAINT")
        }

    def wait(self, slot: str, ok: Callable[[dict], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok(self.stats()[slot]):
                return
            time.sleep(0.1)
        raise ComponentError(f"load balancer: {slot} not {what} after {timeout:.0f}s: "
                             f"{self.stats()[slot]}")  # fmt: skip


def balancer_start(port: int, replicas: int, ca_cert: Path, workdir: Path, log: Path) -> Balancer:
    """HAProxy on `port` with replicas + 1 empty slots (s1, s2, ...)."""
    workdir.mkdir(parents=True, exist_ok=True)
    slots = [f"s{i}" for i in range(1, replicas + 2)]
    sock = workdir / "haproxy.sock"
    sock.unlink(missing_ok=True)
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(config(port, slots, ca_cert, sock))
    proc = spawn("tracking-balancer", [haproxy_bin(), "-db", "-f", str(cfg)], log)
    proc.url = f"https://{LOOPBACK}:{port}"
    proc.extra = {"socket": str(sock), "slots": slots}
    wait_until(proc, sock.exists, 10, "listening on its runtime socket")
    return Balancer(sock, slots, proc)


def roll(
    balancer: Balancer, servers: dict[str, Proc], start: Callable[[], Proc],
    say: Callable[[str], None] = lambda _: None, drain_seconds: float = DRAIN_SECONDS,
) -> dict[str, Proc]:  # fmt: skip
    """Replace every server in `servers` (slot -> its process) one at a time, as the clouds'
    rolling updates do: start a new one, wait until the balancer finds it healthy, drain the old
    one, stop it. Returns the new slot -> process."""
    now = dict(servers)
    for old_slot in list(servers):
        new = start()
        slot = balancer.empty_slot()
        port = int(new.url.rsplit(":", 1)[1])
        balancer.enter(slot, port)
        say(f"{slot}: a new server (port {port}) is healthy and in service")
        balancer.drain(old_slot, drain_seconds)
        now.pop(old_slot).stop(timeout=30)
        balancer.empty(old_slot)
        say(f"{old_slot}: drained and stopped")
        now[slot] = new
    return now
