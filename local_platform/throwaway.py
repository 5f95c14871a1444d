"""A whole throwaway platform (PostgreSQL, an object store, TLS, the MLflow server and its users)
for the tests and the benchmarks, stopped and removed when they are done."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from infra.vm_launcher import environ
from local_platform.balancer import DRAIN_SECONDS, Balancer, balancer_start, roll
from local_platform.postgres import pg_ensure_databases, pg_init, pg_start
from local_platform.processes import LOOPBACK, Proc, free_port, new_password
from local_platform.stores import (
    ensure_bucket,
    gcs_emulator_start,
    gcs_store_env,
    moto_start,
    s3_store_env,
)
from local_platform.tls import make_tls
from local_platform.tracking import MlflowCredentials, mlflow_start


@dataclass(frozen=True)
class Platform:
    tracking_uri: str
    s3_endpoint: str
    bucket: str
    admin: MlflowCredentials
    users: dict[str, MlflowCredentials]
    """The workload users (infra.mlflow_server.IDENTITIES), by name."""
    backend_uri: str = ""
    """The tracking database (the password is db_password), for what runs beside the server
    on the VM: backups, `mlflow gc`."""
    db_password: str = ""
    group: TrackingGroup | None = None
    """With replicas: the servers behind the load balancer, which tracking_uri is."""

    @property
    def ca_cert(self) -> Path:
        return self.admin.ca_cert

    def env(self, user: str | None = None) -> dict[str, str]:
        """A client's environment: the admin's, or a workload user's."""
        return (self.users[user] if user else self.admin).env(self.tracking_uri)


@dataclass
class TrackingGroup:
    """Replicated tracking servers behind a local load balancer (local_platform.balancer)."""

    balancer: Balancer
    servers: dict[str, Proc]
    """Slot -> the server in it."""
    start: Callable[[], Proc]
    """Start one more server as the others were (a free port); it waits until healthy."""

    def roll(
        self, say: Callable[[str], None] = lambda _: None, drain_seconds: float = DRAIN_SECONDS
    ) -> None:
        """Replace every server, one at a time, as the clouds' rolling updates do."""
        self.servers = roll(self.balancer, self.servers, self.start, say, drain_seconds)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop(timeout=3)
        if self.balancer.proc:
            self.balancer.proc.stop(timeout=3)


def workload_users(password: Callable[[str], str], ca_cert: Path) -> dict[str, MlflowCredentials]:
    from infra.mlflow_server import IDENTITIES

    return {
        i.username: MlflowCredentials(i.username, password(i.username), ca_cert) for i in IDENTITIES
    }


@contextlib.contextmanager
def throwaway_platform(
    bucket: str = "test-artifacts", store: str = "s3", replicas: int = 1
) -> Iterator[Platform]:
    """PostgreSQL, an object store (moto_server for `s3`, the GCS emulator for `gcs`) and the MLflow
    server exactly as rendered for the VM, auth and HTTPS on, on free loopback ports with state in
    a temporary directory; all stopped and deleted on exit. `s3_endpoint` is the store's URL.
    With `replicas` of 2 or more, that many servers behind a local load balancer (`group`)."""
    root = Path(tempfile.mkdtemp(prefix="mlops-platform-"))
    root.chmod(0o755)  # the unprivileged PostgreSQL user must reach its data directory
    procs: list[Proc] = []
    group: TrackingGroup | None = None
    try:
        cluster = pg_init(root / "pgdata", root / "pg-superuser")
        pg = pg_start(cluster, free_port(), root / "postgresql.log")
        procs.append(pg)
        db_password = new_password()
        pg_ensure_databases(
            pg.extra["port"], cluster.superuser_password, "mlflow", db_password,
            ["mlflow", "mlflow_auth"],
        )  # fmt: skip
        if store == "s3":
            objects = moto_start(free_port(), root / "moto.log")
            ensure_bucket(objects.url, bucket)
            store_env, scheme = s3_store_env(objects.url), "s3"
        else:
            objects = gcs_emulator_start(free_port(), root / "gcs.log")
            store_env, scheme = gcs_store_env(objects.url), "gs"
            with environ(store_env):
                from google.cloud import storage

                storage.Client().create_bucket(bucket)
        procs.append(objects)
        tls = make_tls(root / "tls")
        admin = MlflowCredentials("admin", new_password(), tls.ca_cert)
        users = workload_users(lambda _: new_password(), tls.ca_cert)
        balancer_port = free_port() if replicas > 1 else None
        started = iter(range(1, 1000))

        def start() -> Proc:
            n = next(started)
            return mlflow_start(
                port=free_port(),
                db_port=pg.extra["port"],
                db_password=db_password,
                admin=admin,
                users={name: u.password for name, u in users.items()},
                secret_key=secret_key,
                artifacts_destination=f"{scheme}://{bucket}/mlflow",
                store_env=store_env,
                tls=tls,
                workdir=root / "mlflow",
                log=root / (f"mlflow-server-{n}.log" if balancer_port else "mlflow-server.log"),
                workers=1,
                behind=balancer_port,
            )

        secret_key = new_password()
        if balancer_port:
            balancer = balancer_start(balancer_port, replicas, tls.ca_cert, root / "balancer",
                                      root / "balancer.log")  # fmt: skip
            group = TrackingGroup(balancer, {}, start)
            for slot in balancer.slots[:replicas]:
                server = start()
                group.servers[slot] = server
                balancer.enter(slot, int(server.url.rsplit(":", 1)[1]))
            tracking_uri = balancer.proc.url
        else:
            server = start()
            procs.append(server)
            tracking_uri = server.url
        backend = f"postgresql+psycopg2://mlflow@{LOOPBACK}:{pg.extra['port']}/mlflow"
        yield Platform(tracking_uri, objects.url, bucket, admin, users, backend, db_password,
                       group)  # fmt: skip
    finally:
        if group:
            group.stop()
        for proc in reversed(procs):
            # Throwaway: no waiting for a client's idle keep-alive connection to the server.
            proc.stop(timeout=3)
        shutil.rmtree(root, ignore_errors=True)
