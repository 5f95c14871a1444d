"""The tracking server never opens more database connections than its database allows. Each
server process (every worker and the master) has three SQLAlchemy pools (tracking, registry,
auth); the rendered pool settings times the processes must fit the database's max_connections
with room to spare, for every stack file on both clouds."""

from __future__ import annotations

import json

import pytest

from infra.config import default_max_connections
from infra.mlflow_server import ENGINES_PER_PROCESS, RESERVED_CONNECTIONS, pool_for
from tests.infra.test_gcp_platform import SQL

RDS = "aws:rds/instance:Instance"


def servers_at_once(declared, surge: int = 1) -> int:
    """From the stack file: its trackingReplicas, and during a rolling update `surge` more (one
    on AWS, one per zone, two, on GCP)."""
    import yaml

    from tests.infra.conftest import ROOT

    config = yaml.safe_load((ROOT / f"Pulumi.{declared.stack}.yaml").read_text())["config"]
    replicas = int(config.get("mlops-platform:trackingReplicas", 1))
    return 1 if replicas == 1 else replicas + surge


def server_spec(declared) -> dict:
    return json.loads(declared.vm_files()["/etc/mlflow/server.json"])


def worst_case(spec: dict) -> int:
    """From what the VM runs: --workers, and the pool settings in the server's environment."""
    argv, env = spec["argv"], spec["env"]
    workers = int(argv[argv.index("--workers") + 1])
    assert int(env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"]) >= 1  # 0 would mean SQLAlchemy's 10
    return (workers + 1) * ENGINES_PER_PROCESS * per_pool(env)


def per_pool(env: dict) -> int:
    """Connections one of a process's pools may open, from the server's environment."""
    return int(env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]) + int(
        env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"]
    )


def requests_at_once(spec: dict) -> tuple[int, int]:
    """(requests a worker runs at once, connections in each of its pools), from what the VM runs."""
    env = spec["env"]
    return int(env["MLOPS_AUTH_REQUEST_THREADS"]), per_pool(env)


def test_aws_workers_never_run_a_pool_dry(declared):
    """MLflow's log_batch holds two of a pool's connections at once: a worker running more
    requests at once than half its pool can have every connection held by a request waiting
    for its second, until the pool's 30 s timeout."""
    threads, per_pool = requests_at_once(server_spec(declared))
    assert threads >= 1 and 2 * threads <= per_pool


def test_gcp_workers_never_run_a_pool_dry(declared_gcp):
    """As on AWS."""
    threads, per_pool = requests_at_once(server_spec(declared_gcp))
    assert threads >= 1 and 2 * threads <= per_pool


def test_aws_server_fits_its_rds_instance(declared):
    limit = default_max_connections("aws", declared.one(RDS)["inputs"]["instanceClass"])
    assert limit is not None
    assert (
        worst_case(server_spec(declared)) * servers_at_once(declared)
        <= limit - RESERVED_CONNECTIONS
    )


def test_gcp_server_fits_its_cloud_sql_tier(declared_gcp):
    limit = default_max_connections("gcp", declared_gcp.one(SQL)["inputs"]["settings"]["tier"])
    assert limit is not None
    servers = servers_at_once(declared_gcp, surge=2)
    assert worst_case(server_spec(declared_gcp)) * servers <= limit - RESERVED_CONNECTIONS


@pytest.mark.parametrize("max_connections", [25, 50, 84, 100, 400, 5000])
@pytest.mark.parametrize("workers", [1, 2, 4, 8])
@pytest.mark.parametrize("servers", [1, 3, 4])
def test_pools_fit_whatever_the_size_or_say_why_not(max_connections, workers, servers):
    """`servers`: the replicas and the one a rolling update adds (trackingReplicas 2, 3)."""
    processes = servers * (workers + 1)
    try:
        pool_size, overflow = pool_for(max_connections, workers, servers)
    except ValueError as exc:
        assert f"the database allows {max_connections} connections" in str(exc)
        assert (max_connections - RESERVED_CONNECTIONS) // (processes * 3) < 2
        return
    assert pool_size >= 1 and 1 <= overflow <= 10
    total = processes * ENGINES_PER_PROCESS * (pool_size + overflow)
    assert total <= max_connections - RESERVED_CONNECTIONS
    # and no less than that allows (up to SQLAlchemy's 5 + 10): a log_batch takes two at once
    budget = (max_connections - RESERVED_CONNECTIONS) // (processes * ENGINES_PER_PROCESS)
    assert pool_size + overflow == min(budget, 15)
