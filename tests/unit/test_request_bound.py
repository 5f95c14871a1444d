"""The tracking server's request bound (infra/server_site/sitecustomize.py), in processes started
as the server's are: with its site directory on PYTHONPATH."""

from __future__ import annotations

import os
import subprocess
import sys

from infra.mlflow_server import LOCAL_SITE_DIR, request_threads

# 12 blocking calls handed to threads at once, as a worker hands Flask its requests: how many
# ran at the same time.
PROBE = """
import threading, time, anyio, anyio.to_thread
running, most, lock = 0, 0, threading.Lock()
def work():
    global running, most
    with lock:
        running += 1; most = max(most, running)
    time.sleep(0.05)
    with lock:
        running -= 1
async def main():
    async with anyio.create_task_group() as group:
        for _ in range(12):
            group.start_soon(anyio.to_thread.run_sync, work)
anyio.run(main)
print(most, getattr(anyio.to_thread.run_sync, "bounded_to", None))
"""


def probe(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_SERVER_REQUEST_THREADS"}
    env["PYTHONPATH"] = str(LOCAL_SITE_DIR)
    if value is not None:
        env["MLOPS_SERVER_REQUEST_THREADS"] = value
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_a_server_process_runs_at_most_the_bound_in_threads_at_once():
    """Python imports sitecustomize from the server's PYTHONPATH by itself: no server code asks."""
    done = probe("3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "3"]


def test_without_the_variable_nothing_changes():
    done = probe(None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["12", "None"]  # anyio's own default allows 40


def test_a_bad_bound_stops_the_process_and_names_the_variable():
    for value in ("0", "-2", "five", ""):
        done = probe(value)
        assert done.returncode != 0 and done.stdout == ""
        assert "MLOPS_SERVER_REQUEST_THREADS must be a whole number from 1" in done.stderr, value


def test_the_bound_lets_every_request_hold_two_connections_of_its_pool():
    """MLflow's log_batch holds two of a pool's connections at once."""
    for pool_size, overflow in ((1, 1), (2, 1), (5, 5), (5, 10)):
        threads = request_threads(pool_size, overflow)
        assert threads >= 1 and 2 * threads <= pool_size + overflow
    assert request_threads(5, 10) == 7
