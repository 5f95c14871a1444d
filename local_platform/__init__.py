"""The platform as local processes, for `make demo`, the tests and the benchmarks: the same MLflow
server command as on the VM (rendered by infra.mlflow_server), PostgreSQL, an object store and
the model API, each started, waited for against a deadline (failing with the tail of its log) and
stopped as a process group.

    processes   starting, waiting for and stopping a process; ports, passwords
    postgres    which PostgreSQL runs, as whom, with SSL when asked; its cluster and databases
    stores      moto_server as S3, the GCS emulator, and the environment that reaches them
    tls         the local CA and the tracking server's certificate
    tracking    the MLflow tracking server and its users
    model_api   the model API against a tracking server
    streaming   the Kinesis streams and dead-letter queue on moto, the stream consumer
    throwaway   a whole platform for a test or a benchmark, removed afterwards
    demo        `make demo`'s platform in .local/ (scripts/local_platform.py is its command line)

Its public names are re-exported here: `import local_platform as lp; lp.free_port()`.
"""

from local_platform.balancer import Balancer, balancer_start, roll
from local_platform.model_api import model_api_start
from local_platform.postgres import (
    PG_CHOICE_ENV,
    PG_CHOICES,
    PG_COPY_PREFIX,
    PgCluster,
    PgServer,
    blocked_for,
    choose_pg,
    data_major,
    describe,
    embedded_pg,
    pg_datadir,
    pg_describe,
    pg_ensure_databases,
    pg_init,
    pg_runnable,
    pg_server,
    pg_start,
    pg_user,
    system_pg,
)
from local_platform.processes import (
    BIN,
    LOOPBACK,
    QUIET,
    STOP_SIGNALS,
    ComponentError,
    Proc,
    free_port,
    http_ok,
    log_tail,
    new_password,
    pid_alive,
    port_is_free,
    spawn,
    stop_pid,
    wait_until,
)
from local_platform.stores import (
    FAKE_AWS,
    aws_client,
    ensure_bucket,
    gcs_emulator_start,
    gcs_store_env,
    moto_start,
    s3_client,
    s3_store_env,
)
from local_platform.streaming import Streams, ensure_streams, round_trip, stream_consumer_start
from local_platform.throwaway import Platform, throwaway_platform, workload_users
from local_platform.tls import TlsFiles, make_tls
from local_platform.tracking import MlflowCredentials, https_ok, mlflow_start

__all__ = [
    "BIN", "FAKE_AWS", "LOOPBACK", "PG_CHOICES", "PG_CHOICE_ENV", "PG_COPY_PREFIX", "QUIET",
    "STOP_SIGNALS", "Balancer", "ComponentError", "balancer_start", "roll", "MlflowCredentials", "PgCluster", "PgServer", "Platform",
    "Proc", "Streams", "TlsFiles", "aws_client", "blocked_for", "choose_pg", "data_major", "describe", "embedded_pg",
    "ensure_bucket", "free_port", "gcs_emulator_start", "gcs_store_env", "http_ok", "https_ok",
    "log_tail", "make_tls", "mlflow_start", "model_api_start", "moto_start", "new_password",
    "pg_datadir", "pg_describe", "pg_ensure_databases", "pg_init", "pg_runnable", "pg_server",
    "ensure_streams", "pg_start", "pg_user", "pid_alive", "port_is_free", "s3_client",
    "round_trip", "s3_store_env", "spawn", "stop_pid", "stream_consumer_start", "system_pg", "throwaway_platform", "wait_until", "workload_users",
]  # fmt: skip
