"""Replicated tracking servers replaced one at a time (issue 35, proved locally): two MLflow
servers behind HAProxy passing TLS through, as the clouds' network load balancers do, and three
rolls of both (start a new one, wait until the balancer finds it healthy, drain the old one, stop
it) while a client logs a metric every 100 ms: no request fails, and every metric is stored
once."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from infra.vm_launcher import environ
from local_platform import throwaway_platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def replicated():
    with throwaway_platform(replicas=2) as platform:
        yield platform


def test_two_servers_answer_behind_the_balancer(replicated):
    from mlflow import MlflowClient

    group = replicated.group
    assert set(group.balancer.ports()) == set(group.servers) == {"s1", "s2"}
    assert {row["status"] for row in group.balancer.stats().values()} == {"UP", "MAINT"}
    with environ(replicated.env()):
        client = MlflowClient(replicated.tracking_uri)
        assert client.create_experiment("behind-the-balancer")
    # Each new connection goes to the server with the fewest: both take some.
    for _ in range(6):
        health = requests.get(f"{replicated.tracking_uri}/health", timeout=5,
                              verify=str(replicated.ca_cert))  # fmt: skip
        assert health.status_code == 200
    assert all(int(row["stot"]) > 0 for slot, row in group.balancer.stats().items()
               if slot in group.servers)  # fmt: skip


def test_three_rolls_fail_no_request_and_store_every_metric_once(replicated):
    from mlflow import MlflowClient

    group = replicated.group
    with environ(replicated.env()):
        client = MlflowClient(replicated.tracking_uri)
        run = client.create_run(client.create_experiment("rolling"))
        logged, failed = [], []
        stop = threading.Event()

        def log_every_100_ms():
            step = 0
            while not stop.is_set():
                try:
                    client.log_metric(run.info.run_id, "tick", float(step), step=step)
                    logged.append(step)
                except Exception as exc:  # what a training run in flight would see
                    failed.append(f"step {step}: {exc.__class__.__name__}: {exc}")
                step += 1
                time.sleep(0.1)

        logger = threading.Thread(target=log_every_100_ms)
        logger.start()
        before = dict(group.servers)
        rolls = []
        try:
            for _ in range(3):
                began = time.monotonic()
                # A short drain: the client's busy connection is then cut sooner, its retry
                # exercised on every server stopped.
                group.roll(say=lambda msg, t=began: print(f"{time.monotonic() - t:5.1f}s {msg}"),
                           drain_seconds=1.0)  # fmt: skip
                rolls.append(time.monotonic() - began)
        finally:
            stop.set()
            logger.join(timeout=60)
        history = client.get_metric_history(run.info.run_id, "tick")
    assert failed == []
    assert len(logged) > 100  # the rolls took seconds: many metrics went through them
    assert sorted(m.step for m in history) == logged  # each once, none lost
    # Every server was replaced, and the old ones are gone.
    assert not set(map(id, group.servers.values())) & set(map(id, before.values()))
    assert all(p.popen.poll() is not None for p in before.values())
    print(f"rolls took {', '.join(f'{r:.0f}s' for r in rolls)}; {len(logged)} metrics")
