"""`python -m services.model_api.serve`: workers with a listening socket each share the
connections, a dead worker stops the server, bad settings and a taken port are clear errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import local_platform as c
from benchmarks.measure import connections_per_process, group_pids

pytestmark = pytest.mark.integration
REGISTRY_DOWN = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MODEL_API_RETRY_SECONDS": "60"}


@pytest.fixture
def api(tmp_path):
    port = c.free_port()
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    proc = c.model_api_start(
        port, tmp_path / "api.log", {**REGISTRY_DOWN, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}, 2
    )
    yield proc, port
    proc.stop()


def listening(port: int) -> int:
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        int(r.split()[1].rsplit(":", 1)[1], 16) == port and r.split()[3] == "0A" for r in rows
    )


def test_connections_are_spread_over_the_workers(api):
    proc, port = api
    # /health answers as soon as one worker is up; the other may still be importing the app.
    c.wait_until(proc, lambda: listening(port) == 2, 60, "listening in both workers")
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    try:
        deadline = time.monotonic() + 20
        while sum(counts := connections_per_process(proc.pid, port)) < 16:
            assert time.monotonic() < deadline, counts
            time.sleep(0.1)
        # Kernel hashing: all 16 on one of two sockets has a chance of 2 in 65,536.
        busy = [n for n in counts if n]
        assert len(busy) == 2, counts
        assert requests.get(f"{proc.url}/health", timeout=5).json() == {"status": "ok"}
    finally:
        for client in clients:
            client.close()


def worker_pids(supervisor: int) -> list[int]:
    """The spawned workers: the supervisor's own children (not multiprocessing's resource
    tracker, nor whatever a worker may start in turn, which is in the same group)."""
    pids = []
    for pid in group_pids(supervisor):
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue  # gone meanwhile
        if ppid == supervisor and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            pids.append(pid)
    return pids


def test_a_dead_worker_stops_the_server(api):
    proc, _ = api
    workers = worker_pids(proc.pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    assert proc.popen.wait(timeout=40) == 1
    assert "exited with code -9; stopping the others" in proc.log.read_text()
    assert not any(c.pid_alive(pid) for pid in workers)


def test_sigterm_stops_every_worker_cleanly(api):
    proc, _ = api
    workers = worker_pids(proc.pid)
    assert len(workers) == 2
    proc.popen.send_signal(signal.SIGTERM)  # only the supervisor, as a container runtime does
    assert proc.popen.wait(timeout=40) == 0
    assert not any(c.pid_alive(pid) for pid in workers)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"UVICORN_WORKERS": "0"}, "UVICORN_WORKERS='0': must be an integer from 1 to 64"),
        ({"UVICORN_PORT": "http"}, "UVICORN_PORT='http': must be an integer from 1 to 65535"),
        (
            {"MODEL_API_PREDICTION_LOG": "ftp://x/y"},
            "MODEL_API_PREDICTION_LOG='ftp://x/y': must be an s3:// or gs:// prefix, a folder, or off",
        ),
        (
            {"MODEL_API_REFRESH_SECONDS": "0"},
            "MODEL_API_REFRESH_SECONDS='0': Input should be greater than 0",
        ),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    out = subprocess.run(
        [sys.executable, "-m", "services.model_api.serve"],
        env={**os.environ, **REGISTRY_DOWN, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.strip() == f"error: {message}"


def test_a_taken_port_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused_to_serve_on(port)


def refused_to_serve_on(port: int) -> None:
    """A second `serve` on `port` exits 2 with the one line naming the address."""
    out = subprocess.run(
        [sys.executable, "-m", "services.model_api.serve"],
        env={**os.environ, **REGISTRY_DOWN, "UVICORN_PORT": str(port), "UVICORN_WORKERS": "2"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port}: another server already listens there"
    )


def test_a_second_server_on_a_port_already_serving_refuses_to_start(api):
    """Both bind with SO_REUSEPORT, so the kernel would let a second one in and split the
    traffic between two (maybe different) models: the second refuses instead."""
    proc, port = api
    c.wait_until(proc, lambda: listening(port) == 2, 60, "listening in both workers")
    refused_to_serve_on(port)
    assert listening(port) == 2  # the first one's two workers, alone


def test_metrics_start_from_zero_after_a_restart(tmp_path):
    """prometheus_client's multiprocess files outlive the processes: without emptying the
    directory, a restarted server reported the old counters (and dead workers' series)."""
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {**REGISTRY_DOWN, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    # /ready, which the start-up wait does not ask (503: no registry here).
    count = 'model_api_requests_total{method="GET",route="/ready",status="503"}'
    for attempt in range(2):
        port = c.free_port()
        proc = c.model_api_start(port, tmp_path / f"api-{attempt}.log", env, 2)
        try:
            for _ in range(5):
                assert requests.get(f"{proc.url}/ready", timeout=5).status_code == 503
            metrics = requests.get(f"{proc.url}/metrics", timeout=5).text
            [line] = [m for m in metrics.splitlines() if m.startswith(count)]
            assert float(line.rsplit(" ", 1)[1]) == 5.0, (attempt, line)
        finally:
            proc.stop()
