"""Local processes the platform is made of: starting one in its own session, waiting for it to
be ready against a deadline (or failing with the tail of its log), stopping it as a group; free
loopback ports and generated passwords."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

LOOPBACK = "127.0.0.1"
BIN = Path(sys.executable).parent
# Nothing started here may phone home: MLflow's usage telemetry is off for every component.
QUIET = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


class ComponentError(RuntimeError):
    """A component failed to start or to become ready."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers themselves do: a port in TIME_WAIT after a restart is free to them.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def new_password() -> str:
    return secrets.token_urlsafe(24)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Proc:
    """A started component: its process, log file and how to reach it."""

    name: str
    popen: subprocess.Popen
    log: Path
    url: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 20.0) -> None:
        stop_pid(self.popen.pid, timeout, STOP_SIGNALS.get(self.name, signal.SIGTERM))
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1)


# How each component is asked to stop (SIGTERM unless named here), by its Proc name, for the
# tests' fixtures and `make demo-down` alike. PostgreSQL: its fast shutdown (pg_ctl's default), a
# clean checkpoint without waiting for every client to disconnect, as SIGTERM's smart shutdown
# does (20 s to the SIGKILL at every stop).
STOP_SIGNALS = {"postgresql": signal.SIGINT}


def stop_pid(pid: int, timeout: float = 20.0, sig: int = signal.SIGTERM) -> bool:
    """`sig` to the process group led by pid, then SIGKILL after timeout. False if already gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def pid_alive(pid: int) -> bool:
    try:
        # A zombie (exited, not reaped) counts as gone.
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def spawn(
    name: str,
    argv: list[str],
    log: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Start argv in its own session (so it outlives `make demo` and stops as a group)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **QUIET, **(env or {})},
            user=user,
            cwd=cwd,
            start_new_session=True,
        )
    return Proc(name=name, popen=popen, log=log)


def wait_until(proc: Proc, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ready() until it is true; fail early with the log if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise ComponentError(
                f"{proc.name} exited with code {proc.popen.returncode} before {what}; "
                f"last lines of {proc.log}:\n{log_tail(proc.log)}"
            )
        try:
            if ready():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    proc.stop()
    raise ComponentError(
        f"{proc.name} not {what} after {timeout:.0f}s; last lines of {proc.log}:\n{log_tail(proc.log)}"
    )


def http_ok(url: str, status: int = 200) -> Callable[[], bool]:
    return lambda: requests.get(url, timeout=2).status_code == status
